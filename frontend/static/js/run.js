// The run page: live progress over Server-Sent Events, then the accuracy dashboard.

import { api } from "./api.js";
import { renderDashboard } from "./dashboard.js";
import { h, replace } from "./dom.js";
import { ACTIVE_STATUSES, duration, MODE_NAMES, plural, stageName, STATUS_NAMES } from "./format.js";
import { closable, confirmDialog, toast } from "./ui.js";

const app = document.getElementById("run-app");
const runId = Number(app.dataset.runId);
const progressCard = document.getElementById("progress-card");
const errorBox = document.getElementById("run-error");
const dashboard = document.getElementById("dashboard");
const cancelButton = document.getElementById("cancel-run");
const cellDialog = closable(document.getElementById("cell-dialog"));
const QUEUED_HINT_S = 20;

let finished = false;
let source = null;
let pollTimer = null;
let latest = null;
const openedAt = Date.now();

function renderStatus(run) {
  const badge = document.getElementById("run-status");
  badge.dataset.status = run.status;
  replace(badge, STATUS_NAMES[run.status] || run.status);
  // What was trained once it is known (metrics.model), else what was asked for.
  const trained = run.metrics?.model;
  const asked = run.options?.head && run.mode !== "finetune" ? ` · head ${run.options.head}` : "";
  const head = trained ? ` · ${trained.head}` : asked;
  replace(document.getElementById("run-subtitle"),
    `${MODE_NAMES[run.mode] || run.mode} · ${(run.backbones || [run.backbone]).join(" + ")}${head}`,
    run.duration_s && !ACTIVE_STATUSES.has(run.status) ? ` · ${duration(run.duration_s)}` : "");
  cancelButton.hidden = !ACTIVE_STATUSES.has(run.status);
  cancelButton.disabled = Boolean(run.cancel_requested);
  if (run.cancel_requested && ACTIVE_STATUSES.has(run.status)) replace(cancelButton, "Cancelling…");
}

function renderProgress(run) {
  const active = ACTIVE_STATUSES.has(run.status);
  progressCard.hidden = !active;
  if (!active) return;
  const pct = Math.round((run.progress || 0) * 100);
  const bar = document.getElementById("run-progress");
  bar.setAttribute("aria-valuenow", String(pct));
  bar.setAttribute("aria-valuetext", `${pct}% · ${stageName(run.stage)}`);
  bar.querySelector(".progress-fill").style.width = `${pct}%`;
  // Before the first measurable step (waiting, loading the network) the bar moves without a number.
  bar.classList.toggle("is-indeterminate", run.status === "queued" || (run.progress || 0) < 0.01);
  replace(document.getElementById("progress-title"), run.status === "queued" ? "Queued" : `Training · ${pct}%`);
  let stage = stageName(run.stage);
  if (run.status === "queued") {
    stage = "Waiting for a worker to pick this run up.";
    if ((Date.now() - openedAt) / 1000 > QUEUED_HINT_S) {
      stage += " If it stays queued, check that a worker is running (autodl serve starts one).";
    }
  }
  replace(document.getElementById("progress-stage"), stage);
  latest = run;
  renderTimes();
}

function renderTimes() {
  // Redrawn every second so a long stage still shows that time is passing.
  if (!latest || !ACTIVE_STATUSES.has(latest.status)) return;
  const detail = [];
  if (latest.images_total) detail.push(`${latest.images_done.toLocaleString()} of ${plural(latest.images_total, "image")}`);
  if (latest.started_at) detail.push(`running for ${duration((Date.now() - Date.parse(latest.started_at)) / 1000)}`);
  replace(document.getElementById("progress-detail"), detail.join(" · "));
  replace(document.getElementById("progress-eta"), latest.eta_s ? `about ${duration(latest.eta_s)} left` : "");
}

setInterval(renderTimes, 1000);

function renderEnd(run) {
  if (run.status === "failed") {
    replace(errorBox, h("strong", {}, "Training failed. "), run.error || "The worker stopped without saying why.",
      h("span", { class: "muted" }, " You can change the settings and train again from the project page."));
    errorBox.hidden = false;
  } else if (run.status === "cancelled") {
    errorBox.className = "notice";
    replace(errorBox, "This run was cancelled.");
    errorBox.hidden = false;
  }
}

async function update(run) {
  renderStatus(run);
  renderProgress(run);
  if (ACTIVE_STATUSES.has(run.status) || finished) return;
  finished = true;
  source?.close();
  clearTimeout(pollTimer);
  renderEnd(run);
  if (run.status === "succeeded" && run.metrics) {
    dashboard.hidden = false;
    replace(dashboard, h("p", { class: "muted" }, "Loading the results…"));
    try {
      await renderDashboard(dashboard, run, { plotlyUrl: app.dataset.plotlyUrl, cellDialog });
    } catch (error) {
      replace(dashboard, h("p", { class: "notice notice-error" }, error.message));
    }
  }
}

async function poll() {
  try {
    await update(await api(`/runs/${runId}`));
  } catch (error) {
    toast(error.message, "error");
  }
  if (!finished) pollTimer = setTimeout(poll, 2000);
}

function follow() {
  source = new EventSource(`/api/runs/${runId}/events`);
  const onData = (event) => {
    const run = JSON.parse(event.data);
    if (run.status === "deleted") {
      source.close();
      replace(errorBox, "This run was deleted.");
      errorBox.hidden = false;
      return;
    }
    update(run);
  };
  source.addEventListener("run", onData);
  source.addEventListener("end", (event) => {
    source.close();
    onData(event);
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; if the browser gave up, fall back to polling.
    if (source.readyState === EventSource.CLOSED && !finished) poll();
  });
}

cancelButton.addEventListener("click", async () => {
  const ok = await confirmDialog({ title: "Cancel this run?", message: "Training stops; nothing is saved from this run.", confirmLabel: "Cancel run" });
  if (!ok) return;
  try {
    await update(await api(`/runs/${runId}/cancel`, { method: "POST" }));
  } catch (error) {
    toast(error.message, "error");
  }
});

// A picture dropped beside the "try the model" zone must not navigate away from the page.
for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());

api(`/runs/${runId}`).then((run) => {
  update(run);
  if (ACTIVE_STATUSES.has(run.status)) follow();
}).catch((error) => toast(error.message, "error"));
