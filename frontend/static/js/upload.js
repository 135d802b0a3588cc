// Uploads: files, folders and zips from drops or pickers, sent in parallel batches with progress,
// then the server's per-file report. Each file goes with its relative path (train/ants/x.jpg) as
// its multipart filename, so the server alone decides what folders mean (labels, splits).

import { uploadForm } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { bytes, plural } from "./format.js";
import { countAccepted, splitTable } from "./history.js";

const MAX_BATCH_FILES = 25;
const MAX_BATCH_BYTES = 20 * 1000 * 1000;
const CONCURRENCY = 3;
const LIST_LIMIT = 200;
const RETRY_DELAY_MS = 1000;

function skipped(name) {
  // Hidden files and OS litter (.DS_Store, Thumbs.db, __MACOSX) are never pictures.
  return name.startsWith(".") || name === "Thumbs.db" || name === "desktop.ini";
}

function readAllEntries(reader) {
  // readEntries returns at most ~100 entries per call; read until it answers nothing.
  return new Promise((resolve, reject) => {
    const all = [];
    const next = () => reader.readEntries((batch) => {
      if (!batch.length) resolve(all);
      else {
        all.push(...batch);
        next();
      }
    }, reject);
    next();
  });
}

async function walkDirectory(entry, out) {
  if (skipped(entry.name) || entry.name === "__MACOSX") return;
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\/+/, "") });
    return;
  }
  const children = await readAllEntries(entry.createReader());
  for (const child of children) await walkDirectory(child, out);
}

/** Files of a drop, walking dropped folders; each {file, path} keeps its folder path. */
export async function filesFromDrop(dataTransfer) {
  // Entries must be taken synchronously: the DataTransfer is emptied after the event returns.
  const directories = [];
  const loose = [];
  for (const item of Array.from(dataTransfer.items || [])) {
    if (item.kind !== "file") continue;
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) directories.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push(file);
    }
  }
  if (!dataTransfer.items || !dataTransfer.items.length) loose.push(...Array.from(dataTransfer.files || []));
  const out = loose.map(fromFile);
  for (const directory of directories) await walkDirectory(directory, out);
  return out.filter((item) => !skipped(item.file.name));
}

function fromFile(file) {
  return { file, path: file.webkitRelativePath || file.name };
}

/** Files chosen with <input type=file> (webkitdirectory gives each its relative path). */
export function filesFromInput(input) {
  return Array.from(input.files || []).map(fromFile).filter((item) => !skipped(item.file.name));
}

function makeBatches(items) {
  const batches = [];
  let current = [];
  let size = 0;
  for (const item of items) {
    if (current.length && (current.length >= MAX_BATCH_FILES || size + item.file.size > MAX_BATCH_BYTES)) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(item);
    size += item.file.size;
  }
  if (current.length) batches.push(current);
  return batches.map((files) => ({
    files,
    bytes: files.reduce((sum, item) => sum + item.file.size, 0),
    sent: 0,
    state: "waiting",
    error: null,
  }));
}

/**
 * One upload: a card with a progress bar that turns into the report.
 * onBatchDone() runs after every batch the server accepted, so counts can refresh as it goes.
 */
export class UploadJob {
  constructor({ projectId, items, container, onBatchDone, onFinished }) {
    this.projectId = projectId;
    this.items = items;
    this.batches = makeBatches(items);
    this.totalBytes = this.batches.reduce((sum, batch) => sum + batch.bytes, 0);
    this.report = { accepted: [], duplicates: [], rejected: [] };
    this.key = newUploadKey();
    this.onBatchDone = onBatchDone;
    this.onFinished = onFinished;
    this.requests = new Set();
    this.frame = 0;
    this.card = h("article", { class: "upload card", "aria-live": "polite" });
    container.prepend(this.card);
    this.renderProgress();
  }

  async start(batches = this.batches) {
    this.cancelled = false;
    this.running = true;
    const queue = [...batches];
    const runOne = async () => {
      while (queue.length && !this.cancelled) {
        const batch = queue.shift();
        await this.send(batch);
        // A dropped connection or a server hiccup gets one quiet second try, at the back of the queue.
        if (batch.state === "failed" && batch.transient && !batch.retried && !this.cancelled) {
          batch.retried = true;
          await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
          queue.push(batch);
        }
      }
    };
    this.scheduleRender();
    await Promise.all(Array.from({ length: CONCURRENCY }, runOne));
    this.running = false;
    this.renderReport();
    this.onFinished?.(this);
  }

  async send(batch) {
    batch.state = "sending";
    batch.sent = 0;
    batch.error = null;
    let request = null;
    try {
      const form = new FormData();
      for (const item of batch.files) form.append("files", item.file, item.path);
      form.append("upload", this.key);
      if (this.cancelled) throw new Error("Upload cancelled.");
      request = uploadForm(`/projects/${this.projectId}/images`, form, (loaded, total) => {
        // The request is a little larger than the files (multipart headers): scale to file bytes.
        batch.sent = Math.min(batch.bytes, (loaded / total) * batch.bytes);
        this.scheduleRender();
      });
      this.requests.add(request);
      const result = await request.promise;
      batch.state = "done";
      batch.sent = batch.bytes;
      for (const key of ["accepted", "duplicates", "rejected"]) this.report[key].push(...(result?.[key] || []));
      this.onBatchDone?.(result);
    } catch (error) {
      batch.state = "failed";
      batch.sent = 0;
      batch.transient = error.status === 0 || error.status >= 500;
      batch.error = this.cancelled ? "Upload cancelled." : error.message;
    } finally {
      if (request) this.requests.delete(request);
      this.scheduleRender();
    }
  }

  cancel() {
    this.cancelled = true;
    for (const request of this.requests) request.abort();
  }

  retry() {
    const failed = this.batches.filter((batch) => batch.state === "failed");
    for (const batch of failed) {
      batch.state = "waiting";
      batch.retried = false;
    }
    this.card.classList.remove("upload-finished");
    this.renderProgress();
    return this.start(failed);
  }

  scheduleRender() {
    // Progress events arrive far faster than the screen refreshes; draw once per frame.
    if (this.frame || !this.running) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.running) this.updateProgress();
    });
  }

  renderProgress() {
    const count = this.items.length;
    this.fill = h("div", { class: "progress-fill" });
    this.bar = h("div", {
      class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": "0", "aria-label": "Upload progress",
    }, this.fill);
    this.detail = h("p", { class: "muted small upload-detail" });
    replace(this.card,
      h("div", { class: "upload-head" },
        h("span", { class: "upload-icon", "aria-hidden": "true" }, icon("upload")),
        h("div", { class: "upload-title" },
          h("strong", {}, `Uploading ${plural(count, "file")}`),
          h("span", { class: "muted small" }, ` · ${bytes(this.totalBytes)}`)),
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => this.cancel() }, "Cancel")),
      this.bar,
      this.detail);
    this.updateProgress();
  }

  updateProgress() {
    const sent = this.batches.reduce((sum, batch) => sum + (batch.state === "done" ? batch.bytes : batch.sent), 0);
    const fraction = this.totalBytes ? sent / this.totalBytes : 1;
    const done = this.batches.filter((batch) => batch.state === "done").length;
    this.fill.style.width = `${(fraction * 100).toFixed(1)}%`;
    this.bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    const processing = fraction >= 0.999 && done < this.batches.length;
    replace(this.detail,
      `${bytes(sent)} of ${bytes(this.totalBytes)} sent · ${done} of ${plural(this.batches.length, "batch", "batches")} checked`,
      processing ? " · the server is checking the last pictures…" : "");
  }

  renderReport() {
    const { accepted, duplicates, rejected } = this.report;
    const failed = this.batches.filter((batch) => batch.state === "failed");
    const failedFiles = failed.reduce((sum, batch) => sum + batch.files.length, 0);
    const summary = [];
    if (accepted.length) summary.push(`${plural(accepted.length, "picture")} added`);
    if (duplicates.length) summary.push(`${duplicates.length.toLocaleString()} already here`);
    if (rejected.length) summary.push(`${plural(rejected.length, "file")} not usable`);
    if (failedFiles) summary.push(`${plural(failedFiles, "file")} not uploaded`);
    const kind = failedFiles || rejected.length ? "warn" : "ok";

    const sections = [];
    if (accepted.length) sections.push(acceptedSummary(accepted));
    if (duplicates.length) {
      sections.push(fileList({
        title: `${plural(duplicates.length, "picture")} skipped: already in this project`,
        items: duplicates, kind: "dup",
        describe: () => "Same picture as one already uploaded (compared by content, not by name).",
      }));
    }
    if (rejected.length) {
      sections.push(fileList({
        title: `${plural(rejected.length, "file")} could not be used`,
        items: rejected, kind: "bad", open: true, describe: (item) => item.reason,
      }));
    }
    if (failedFiles) {
      const messages = [...new Set(failed.map((batch) => batch.error))];
      sections.push(h("div", { class: "upload-failed notice notice-error", role: "alert" },
        h("p", {}, h("strong", {}, `${plural(failedFiles, "file")} could not be uploaded. `), messages.join(" ")),
        h("button", { type: "button", class: "btn btn-sm", onclick: () => this.retry() }, icon("retry"), "Retry")));
    }
    if (!sections.length) sections.push(h("p", { class: "muted" }, "Nothing to upload: no files were found."));

    replace(this.card,
      h("div", { class: "upload-head" },
        h("span", { class: `upload-icon upload-icon-${kind}`, "aria-hidden": "true" },
          icon(kind === "ok" ? "check" : "alert")),
        h("div", { class: "upload-title" },
          h("strong", { class: "upload-summary" }, summary.join(" · ") || "Upload finished")),
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => this.card.remove(),
          "aria-label": "Dismiss this upload report" }, "Dismiss")),
      sections);
    this.card.classList.add("upload-finished");
    this.card.dataset.accepted = String(accepted.length);
    this.card.dataset.duplicates = String(duplicates.length);
    this.card.dataset.rejected = String(rejected.length);
    this.card.dataset.failed = String(failedFiles);
  }
}

function acceptedSummary(accepted) {
  return h("div", { class: "upload-accepted" }, h("span", { class: "muted small" }, "Added by label and split"),
    splitTable(countAccepted(accepted)));
}

/** A key shared by the requests of one drop: the history shows them as one upload. */
function newUploadKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function fileList({ title, items, kind, describe, open = false }) {
  const shown = items.slice(0, LIST_LIMIT);
  const list = h("ul", { class: `file-list file-list-${kind}` }, shown.map((item) =>
    h("li", {}, h("span", { class: "file-name" }, item.filename), h("span", { class: "file-reason" }, describe(item)))));
  const more = items.length > shown.length
    ? h("p", { class: "muted small" }, `…and ${(items.length - shown.length).toLocaleString()} more.`) : null;
  return h("details", { class: `file-report file-report-${kind}`, open }, h("summary", {}, title), list, more);
}
