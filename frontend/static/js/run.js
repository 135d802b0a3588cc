// The run page: live progress over Server-Sent Events, then the accuracy dashboard.

import { api } from "./api.js";
import { renderDashboard } from "./dashboard.js";
import { h, replace } from "./dom.js";
import { ACTIVE_STATUSES, duration, MODE_NAMES, plural, renamedWords, stageName, STATUS_NAMES } from "./format.js";
import { runTitle } from "./runs.js";
import { closable, confirmDialog, promptDialog, toast } from "./ui.js";

const app = document.getElementById("run-app");
const runId = Number(app.dataset.runId);
const progressCard = document.getElementById("progress-card");
const errorBox = document.getElementById("run-error");
const dashboard = document.getElementById("dashboard");
const cancelButton = document.getElementById("cancel-run");
const renameButton = document.getElementById("rename-run");
const rerunButton = document.getElementById("rerun");
const deployButton = document.getElementById("deploy-run");
const deleteButton = document.getElementById("delete-run");
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
  // A label renamed since training: the model still answers with the name it learnt.
  const renamed = renamedWords(run);
  const hint = document.getElementById("run-renamed");
  hint.hidden = !renamed.length;
  replace(hint, renamed.length ? `Labels renamed since this run: ${renamed.join("; ")}. This model answers with the names it was trained with.` : "");
  const active = ACTIVE_STATUSES.has(run.status);
  cancelButton.hidden = !active;
  cancelButton.disabled = Boolean(run.cancel_requested);
  if (run.cancel_requested && active) replace(cancelButton, "Stopping…");
  rerunButton.hidden = active;
  deleteButton.hidden = active;
  deployButton.hidden = run.status !== "succeeded";
  replace(deployButton, run.deployed ? "Stop deploying" : "Deploy this model");
  deployButton.classList.toggle("btn-primary", !run.deployed);
  document.getElementById("run-deployed").hidden = !run.deployed;
  const title = runTitle(run).replace(` (#${run.id})`, "");
  replace(document.getElementById("run-title"), title);
  replace(document.getElementById("crumb-run"), title);
  document.title = `${title} · autodl`;
  current = run;
}

let current = null;

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
  let stage = stageName(run.stage) + (run.stage_detail ? ` · ${run.stage_detail}` : "");
  if (run.status === "queued") {
    stage = "Waiting for a worker to pick this run up.";
    if ((Date.now() - openedAt) / 1000 > QUEUED_HINT_S) {
      stage += " If it stays queued, check that a worker is running (autodl serve starts one).";
    }
  }
  replace(document.getElementById("progress-stage"), stage);
  if (run.eta_s !== latest?.eta_s) etaAt = Date.now();
  latest = run;
  renderTimes();
}

let etaAt = Date.now();

function renderTimes() {
  // Redrawn every second so a long stage still shows that time is passing.
  if (!latest || !ACTIVE_STATUSES.has(latest.status)) return;
  const detail = [];
  const unit = latest.unit === "steps" ? "training step" : "image";
  if (latest.images_total) detail.push(`${latest.images_done.toLocaleString()} of ${plural(latest.images_total, unit)}`);
  if (latest.started_at) detail.push(`running for ${duration((Date.now() - Date.parse(latest.started_at)) / 1000)}`);
  replace(document.getElementById("progress-detail"), detail.join(" · "));
  // The server's estimate of the whole run's time left (none until its pace is measured),
  // counted down between updates.
  let eta = "";
  if (latest.eta_s !== null && latest.eta_s !== undefined) {
    const left = Math.max(0, latest.eta_s - (Date.now() - etaAt) / 1000);
    eta = left < 5 ? "almost done" : `about ${duration(left)} left`;
  } else if (latest.status === "running") eta = "estimating time left…";
  replace(document.getElementById("progress-eta"), eta);
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

async function act(work) {
  try {
    return await work();
  } catch (error) {
    toast(error.message, "error");
    return null;
  }
}

renameButton.addEventListener("click", async () => {
  const name = await promptDialog({ title: "Rename this run", label: "Name", value: current?.name || "", confirmLabel: "Save" });
  if (name === null) return;
  const run = await act(() => api(`/runs/${runId}`, { method: "PATCH", json: { name } }));
  if (run) renderStatus(run);
});

rerunButton.addEventListener("click", async () => {
  const run = await act(() => api(`/runs/${runId}/rerun`, { method: "POST" }));
  if (run) window.location.assign(`/runs/${run.id}`);
});

deployButton.addEventListener("click", async () => {
  const method = current?.deployed ? "DELETE" : "POST";
  const run = await act(() => api(`/runs/${runId}/deploy`, { method }));
  if (!run) return;
  renderStatus(run);
  toast(run.deployed
    ? "Deployed: this model now answers the project’s prediction endpoint."
    : "Not deployed any more: the project’s prediction endpoint has no model.", "success");
  document.dispatchEvent(new CustomEvent("run-deployed", { detail: run }));
});

deleteButton.addEventListener("click", async () => {
  const ok = await confirmDialog({ title: `Delete ${runTitle(current || { id: runId })}?`,
    message: "Its results, model files and heatmaps are removed for good. The images stay in the project.",
    confirmLabel: "Delete run" });
  if (!ok) return;
  try {
    await api(`/runs/${runId}`, { method: "DELETE" });
    window.location.assign(`/projects/${app.dataset.projectId}`);
  } catch (error) {
    toast(error.message, "error");
  }
});

cancelButton.addEventListener("click", async () => {
  const ok = await confirmDialog({ title: "Stop this run?", message: "Training stops; nothing is saved from this run.", confirmLabel: "Stop training", cancelLabel: "Keep training" });
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
