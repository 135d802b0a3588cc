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

export function runRow(run, { current = false, best = false } = {}) {
  const accuracy = run.metrics?.accuracy;
  return h("tr", { class: current ? "is-current" : null, dataset: { runId: run.id } },
    h("td", {}, h("a", { href: `/runs/${run.id}` }, `#${run.id}`), current ? h("span", { class: "muted small" }, " (this run)") : null),
    h("td", {}, MODE_NAMES[run.mode] || run.mode),
    h("td", { class: "mono" }, (run.backbones || [run.backbone]).join(" + ")),
    h("td", {}, statusBadge(run)),
    h("td", { class: "num" }, accuracy === undefined || accuracy === null ? "—" : percent(accuracy),
      best ? h("span", { class: "best-tag", title: "Best accuracy in this project" }, "best") : null),
    h("td", { class: "num" }, run.duration_s ? duration(run.duration_s) : "—"),
    h("td", { class: "muted", title: run.created_at }, ago(run.started_at || run.created_at)));
}

export function bestRunId(runs) {
  let best = null;
  for (const run of runs) {
    const accuracy = run.metrics?.accuracy;
    if (run.status === "succeeded" && accuracy !== undefined && (best === null || accuracy > best.metrics.accuracy)) best = run;
  }
  return best?.id ?? null;
}

/** Keep a runs table filled; polls while any run is queued or running. */
export class RunsTable {
  constructor({ projectId, section, tbody, live, currentRunId = null, onChange }) {
    Object.assign(this, { projectId, section, tbody, live, currentRunId, onChange });
    this.timer = null;
    this.lastKey = "";
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

  render(runs) {
    const key = JSON.stringify(runs.map((r) => [r.id, r.status, r.progress, r.metrics?.accuracy ?? null]));
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.section.hidden = !runs.length;
    const best = runs.length > 1 ? bestRunId(runs) : null;
    replace(this.tbody, runs.map((run) => runRow(run, { current: run.id === this.currentRunId, best: run.id === best })));
    this.onChange?.(runs);
  }
}
