// Runs of a project: the table on the project page (live while any run is active) and the
// comparison table on the run page share these rows.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { ACTIVE_STATUSES, ago, duration, MODE_NAMES, percent, STATUS_NAMES } from "./format.js";

const POLL_MS = 2000;

export function statusBadge(run) {
  const text = STATUS_NAMES[run.status] || run.status;
  const active = run.status === "running";
  return h("span", { class: "status", dataset: { status: run.status } },
    active ? h("span", { class: "pulse", "aria-hidden": "true" }) : null,
    text,
    active && run.progress ? ` ${Math.round(run.progress * 100)}%` : "");
}

/** What a person calls a run: its name, or its number. */
export function runTitle(run) {
  return run.name ? `${run.name} (#${run.id})` : `Run #${run.id}`;
}

export function runRow(run, { current = false, best = false, selected = false, onSelect = null } = {}) {
  const accuracy = run.metrics?.accuracy;
  const comparable = run.status === "succeeded" && run.metrics;
  const pick = onSelect ? h("td", { class: "pick" }, h("input", {
    type: "checkbox", class: "run-pick", checked: selected, disabled: !comparable,
    "aria-label": `Compare ${runTitle(run)}`, title: comparable ? "Select to compare" : "Only finished runs can be compared",
    onchange: (event) => onSelect(run.id, event.target.checked),
  })) : null;
  return h("tr", { class: current ? "is-current" : null, dataset: { runId: run.id } },
    pick,
    h("td", { class: "run-name" }, h("a", { href: `/runs/${run.id}` }, run.name || `#${run.id}`),
      run.name ? h("span", { class: "muted small" }, ` #${run.id}`) : null,
      run.deployed ? h("span", { class: "deployed-tag", title: "Answers this project’s prediction endpoint" }, "deployed") : null,
      current ? h("span", { class: "muted small" }, " (this run)") : null),
    h("td", { class: "col-mode" }, MODE_NAMES[run.mode] || run.mode),
    h("td", { class: "mono col-backbone" }, (run.backbones || [run.backbone]).join(" + ")),
    h("td", {}, statusBadge(run)),
    h("td", { class: "num" }, accuracy === undefined || accuracy === null ? "—" : percent(accuracy),
      best ? h("span", { class: "best-tag", title: "Best accuracy in this project" }, "best") : null),
    h("td", { class: "num" }, run.duration_s ? duration(run.duration_s) : "—"),
    h("td", { class: "muted col-started", title: run.created_at, dataset: { ago: run.started_at || run.created_at } },
      ago(run.started_at || run.created_at)));
}

export function bestRunId(runs) {
  let best = null;
  for (const run of runs) {
    const accuracy = run.metrics?.accuracy;
    if (run.status === "succeeded" && accuracy !== undefined && (best === null || accuracy > best.metrics.accuracy)) best = run;
  }
  return best?.id ?? null;
}

export const MAX_COMPARED = 4;

// "2 minutes ago" keeps telling the truth while the page stays open.
setInterval(() => {
  for (const cell of document.querySelectorAll("[data-ago]")) cell.textContent = ago(cell.dataset.ago);
}, 30_000);

/** Keep a runs table filled; polls while any run is queued or running. With ``compareLink``,
 * a checkbox per finished run picks 2–4 of them for the side-by-side page. */
export class RunsTable {
  constructor({ projectId, section, tbody, live, currentRunId = null, onChange, compareLink = null }) {
    Object.assign(this, { projectId, section, tbody, live, currentRunId, onChange, compareLink });
    this.timer = null;
    this.lastKey = "";
    this.runs = [];
    this.selected = new Set(currentRunId ? [currentRunId] : []);
    compareLink?.addEventListener("click", (event) => {
      if (compareLink.classList.contains("is-disabled")) event.preventDefault();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.refresh();
    });
  }

  async refresh() {
    clearTimeout(this.timer);
    let runs;
    try {
      runs = await api(`/projects/${this.projectId}/runs`);
    } catch {
      this.timer = setTimeout(() => this.refresh(), POLL_MS * 3);
      return [];
    }
    this.render(runs);
    const active = runs.some((run) => ACTIVE_STATUSES.has(run.status));
    if (this.live) this.live.hidden = !active;
    if (active && !document.hidden) this.timer = setTimeout(() => this.refresh(), POLL_MS);
    return runs;
  }

  render(runs, force = false) {
    const key = JSON.stringify(runs.map((r) => [r.id, r.name, r.deployed, r.status, r.progress, r.metrics?.accuracy ?? null]));
    if (key === this.lastKey && !force) return;
    this.lastKey = key;
    this.runs = runs;
    this.section.hidden = !runs.length;
    const ids = new Set(runs.map((r) => r.id));
    for (const id of this.selected) if (!ids.has(id)) this.selected.delete(id);
    const best = runs.length > 1 ? bestRunId(runs) : null;
    const onSelect = this.compareLink ? (id, on) => this.select(id, on) : null;
    replace(this.tbody, runs.map((run) => runRow(run, {
      current: run.id === this.currentRunId, best: run.id === best, selected: this.selected.has(run.id), onSelect,
    })));
    this.renderCompareLink();
    this.onChange?.(runs);
  }

  select(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    if (this.selected.size > MAX_COMPARED) {
      this.selected.delete([...this.selected][0]);
      this.render(this.runs, true);
      return;
    }
    this.renderCompareLink();
  }

  renderCompareLink() {
    const link = this.compareLink;
    if (!link) return;
    const ids = [...this.selected].sort((a, b) => a - b);
    const ready = ids.length >= 2;
    link.href = ready ? `/projects/${this.projectId}/compare?runs=${ids.join(",")}` : "#";
    link.classList.toggle("is-disabled", !ready);
    link.setAttribute("aria-disabled", String(!ready));
    replace(link, ready ? `Compare ${ids.length} runs` : "Compare: tick 2–4 runs");
  }
}
