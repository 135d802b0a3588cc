// The project page: labels and counts, uploads, the labelling gallery, runs and the Train dialog.

import { api } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { dateTime, MODE_NAMES, percent, plural, SPLIT_NAMES } from "./format.js";
import { Gallery } from "./gallery.js";
import { HealthCard } from "./health.js";
import { UploadHistory } from "./history.js";
import { RunsTable } from "./runs.js";
import { TrainDialog } from "./train.js";
import { closable, confirmDialog, copyButton, promptDialog, showError, toast } from "./ui.js";
import { filesFromDrop, filesFromInput, UploadJob } from "./upload.js";

const app = document.getElementById("project-app");
const projectId = Number(app.dataset.projectId);
const FEW = 10;

let project = null;

const gallery = new Gallery({ projectId, onChanged: () => refreshProject() });
const health = new HealthCard({
  projectId,
  section: document.getElementById("health-card"),
  onChanged: () => Promise.all([refreshProject(), gallery.load()]),
});
const train = new TrainDialog({ projectId });
const runs = new RunsTable({
  projectId,
  section: document.getElementById("runs-section"),
  tbody: document.querySelector("#runs-table tbody"),
  live: document.getElementById("runs-live"),
  compareLink: document.getElementById("compare-runs"),
  onChange: () => refreshDeployed(),
});
const history = new UploadHistory({ projectId, section: document.getElementById("upload-history") });
let uploading = 0; // drops still sending: their labels are not short of pictures, only not done
closable(document.getElementById("image-viewer"));

async function refreshProject() {
  try {
    project = await api(`/projects/${projectId}`);
  } catch (error) {
    toast(error.message, "error");
    return;
  }
  renderHeader();
  renderDeployed();
  renderLabels();
  renderSplits();
  renderReadiness();
  gallery.setLabels(project.labels);
}

function renderHeader() {
  replace(document.getElementById("project-name"), project.name);
  replace(document.getElementById("crumb-project"), project.name);
  document.title = `${project.name} · autodl`;
  const parts = [plural(project.image_count, "image"), plural(project.labels.length, "label")];
  if (project.unlabeled) parts.push(`${project.unlabeled.toLocaleString()} unlabelled`);
  replace(document.getElementById("project-summary"), parts.join(" · "));
  document.getElementById("dropzone").classList.toggle("is-compact", project.image_count > 0);
}

let deployedKey = null;

function refreshDeployed() {
  // A run deployed or deleted elsewhere changes the card: re-read the project when runs change.
  const key = JSON.stringify(runs.runs.map((r) => [r.id, r.deployed]));
  if (deployedKey !== null && key !== deployedKey) refreshProject();
  deployedKey = key;
}

function renderDeployed() {
  const section = document.getElementById("deployed-card");
  const model = project.deployed;
  section.hidden = !model;
  if (!model) return;
  const url = `${window.location.origin}${model.predict_url}`;
  replace(section,
    h("div", { class: "card-head" },
      h("h2", { id: "deployed-title" }, "Deployed model"),
      h("a", { class: "btn btn-sm", href: `/runs/${model.run_id}` }, "Open its run")),
    h("p", {}, h("strong", { class: "deployed-name" }, model.name || `Run #${model.run_id}`), " · ",
      `${MODE_NAMES[model.mode] || model.mode} · `, h("span", { class: "mono" }, model.backbone),
      model.accuracy === null ? "" : ` · ${percent(model.accuracy)} accuracy`,
      h("span", { class: "muted small" }, ` · deployed ${dateTime(model.deployed_at)}`)),
    h("p", { class: "muted small" }, "Your apps send pictures to this address; it keeps working when you deploy another run."),
    h("div", { class: "endpoint" }, h("code", { id: "deployed-endpoint" }, `POST ${url}`), copyButton(`curl -H "Authorization: Bearer $AUTODL_TOKEN" -F file=@picture.jpg ${url}`, "Copy a curl command")));
}

function labelWarning(label) {
  if (uploading) return null;
  const needed = project.readiness.min_images_per_label;
  if (label.count < needed) {
    return h("p", { class: "label-warning is-bad" }, icon("alert"),
      `Needs at least ${needed} images to train (has ${label.count}).`);
  }
  if (label.count < FEW) {
    return h("p", { class: "label-warning is-warn" }, icon("alert"),
      `Only ${label.count} images: accuracy will be unreliable. Aim for ${FEW} or more.`);
  }
  return null;
}

function splitLine(splits) {
  const parts = ["train", "val", "test"].filter((s) => splits[s]).map((s) => `${splits[s]} ${SPLIT_NAMES[s].toLowerCase()}`);
  if (splits.unassigned) parts.push(`${splits.unassigned} unsplit`);
  return parts.join(" · ");
}

function labelItem(label, index) {
  const color = h("input", {
    type: "color", class: "swatch", value: label.color, "aria-label": `Colour of ${label.name}`,
    onchange: async (event) => {
      try {
        await api(`/projects/${projectId}/labels/${label.id}`, { method: "PATCH", json: { color: event.target.value } });
        await refreshProject();
        gallery.render();
      } catch (error) {
        toast(error.message, "error");
      }
    },
  });
  const rename = async () => {
    const name = await promptDialog({ title: "Rename label", label: "Label name", value: label.name, maxLength: 100 });
    if (!name || name === label.name) return;
    try {
      await api(`/projects/${projectId}/labels/${label.id}`, { method: "PATCH", json: { name } });
      toast(`Label renamed to “${name}”.`, "success");
      await Promise.all([refreshProject(), gallery.load()]);
    } catch (error) {
      toast(error.message, "error");
    }
  };
  const remove = async () => {
    const ok = await confirmDialog({
      title: "Delete this label?",
      message: `The ${plural(label.count, "image")} labelled “${label.name}” stay in the project, without a label.`,
      confirmLabel: "Delete label",
    });
    if (!ok) return;
    try {
      await api(`/projects/${projectId}/labels/${label.id}`, { method: "DELETE" });
      toast("Label deleted.", "success");
      await Promise.all([refreshProject(), gallery.load()]);
    } catch (error) {
      toast(error.message, "error");
    }
  };
  const active = gallery.filter.label === label.name;
  return h("li", { class: `label-item${active ? " is-active" : ""}`, dataset: { labelId: label.id } },
    h("div", { class: "label-row" },
      color,
      h("button", { type: "button", class: "label-name", "aria-pressed": String(active),
        title: `Show only “${label.name}”`,
        onclick: () => gallery.setFilter({ label: active ? "" : label.name }).then(renderLabels) },
      h("span", { class: "label-text" }, label.name)),
      index < 9 ? h("kbd", { title: `Press ${index + 1} to label the selection` }, String(index + 1)) : null,
      h("span", { class: "label-count" }, label.count.toLocaleString()),
      h("span", { class: "label-actions" },
        h("button", { type: "button", class: "btn btn-ghost btn-icon btn-xs", onclick: rename, "aria-label": `Rename ${label.name}` }, icon("pencil")),
        h("button", { type: "button", class: "btn btn-ghost btn-icon btn-xs", onclick: remove, "aria-label": `Delete ${label.name}` }, icon("trash")))),
    label.count ? h("p", { class: "label-splits muted small" }, splitLine(label.splits)) : null,
    labelWarning(label));
}

function renderLabels() {
  if (!project) return;
  const list = document.getElementById("label-list");
  const unlabeledActive = gallery.filter.label === "\u0000unlabeled";
  const items = project.labels.map(labelItem);
  if (!project.labels.length) {
    items.push(h("li", { class: "label-empty muted small" },
      "No labels yet. Upload folders named after your labels, or add one below."));
  }
  items.push(h("li", { class: `label-item label-unlabeled${unlabeledActive ? " is-active" : ""}` },
    h("div", { class: "label-row" },
      h("span", { class: "swatch swatch-none", "aria-hidden": "true" }),
      h("button", { type: "button", class: "label-name", "aria-pressed": String(unlabeledActive),
        onclick: () => gallery.setFilter({ label: unlabeledActive ? "" : "\u0000unlabeled" }).then(renderLabels) },
      h("span", { class: "label-text" }, "Unlabelled")),
      h("span", { class: "label-count" }, project.unlabeled.toLocaleString()))));
  replace(list, items);
  replace(document.getElementById("labels-total"), plural(project.labels.length, "label"));
}

function renderSplits() {
  const s = project.splits;
  const rows = [["train", s.train], ["val", s.val], ["test", s.test], ["unassigned", s.unassigned]];
  const total = project.image_count || 1;
  replace(document.getElementById("split-counts"), rows.map(([key, n]) =>
    h("div", { class: "split-row" },
      h("dt", {}, key === "unassigned" ? "Not split yet" : SPLIT_NAMES[key]),
      h("dd", {}, h("span", { class: "split-bar" }, h("span", { class: `split-fill split-${key}`, style: { width: `${(100 * n) / total}%` } })),
        h("span", { class: "split-n" }, n.toLocaleString())))));
}

function renderReadiness() {
  // The server applies the rule a run applies when it starts.
  const { ready, blocker } = project.readiness;
  document.getElementById("train-button").disabled = !ready || uploading > 0;
  showError(document.getElementById("train-hint"), uploading ? null : blocker);
}

async function uploadItems(items) {
  if (!items.length) {
    toast("No files found in what was dropped.", "info");
    return;
  }
  let pending = null;
  uploading += 1;
  gallery.setUploading(true);
  health.setUploading(true);
  if (project) {
    // No "upload some pictures" or "needs at least 2 images" while they are on their way.
    renderLabels();
    renderReadiness();
  }
  const job = new UploadJob({
    projectId,
    items,
    container: document.getElementById("uploads"),
    onBatchDone: () => {
      // Refresh counts while a long upload runs, at most every 1.5 s.
      // The gallery too, so the pictures show up while the rest is still sending.
      if (!pending) pending = setTimeout(() => { pending = null; refreshProject(); gallery.load(); }, 1500);
    },
    onFinished: async () => {
      clearTimeout(pending);
      pending = null;
      uploading = Math.max(0, uploading - 1);
      gallery.setUploading(uploading > 0);
      health.setUploading(uploading > 0);
      await Promise.all([refreshProject(), gallery.load(), health.refresh(), history.refresh()]);
    },
  });
  await job.start();
}

function setUpDropping() {
  const overlay = document.getElementById("drop-overlay");
  const dropzone = document.getElementById("dropzone");
  let depth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    overlay.hidden = false;
    dropzone.classList.add("is-over");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) {
      overlay.hidden = true;
      dropzone.classList.remove("is-over");
    }
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", async (event) => {
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    dropzone.classList.remove("is-over");
    if (!event.dataTransfer) return;
    const items = await filesFromDrop(event.dataTransfer);
    await uploadItems(items);
  });

  const fileInput = document.getElementById("file-input");
  const folderInput = document.getElementById("folder-input");
  document.getElementById("pick-files").addEventListener("click", () => fileInput.click());
  document.getElementById("pick-folder").addEventListener("click", () => folderInput.click());
  for (const input of [fileInput, folderInput]) {
    input.addEventListener("change", async () => {
      const items = filesFromInput(input);
      input.value = "";
      await uploadItems(items);
    });
  }
}

document.getElementById("add-label").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.target.elements.name;
  const name = input.value.trim();
  const errorBox = document.getElementById("label-error");
  if (!name) return;
  try {
    await api(`/projects/${projectId}/labels`, { method: "POST", json: { name } });
    input.value = "";
    showError(errorBox, null);
    await refreshProject();
  } catch (error) {
    showError(errorBox, error.message);
  }
});

document.getElementById("rename-project").addEventListener("click", async () => {
  const name = await promptDialog({ title: "Rename project", label: "Project name", value: project?.name || "" });
  if (!name) return;
  try {
    await api(`/projects/${projectId}`, { method: "PATCH", json: { name } });
    await refreshProject();
  } catch (error) {
    toast(error.message, "error");
  }
});

document.getElementById("train-button").addEventListener("click", () => train.open());
document.getElementById("filter-label").addEventListener("change", renderLabels);

setUpDropping();
refreshProject().then(() => gallery.load());
runs.refresh();
history.refresh();
health.refresh();
