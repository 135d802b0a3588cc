// What became of uploaded files, by label and split: the table of a finished upload and the
// project's upload history (GET /api/projects/{id}/uploads), which outlives a reload.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { dateTime, plural, SPLIT_NAMES } from "./format.js";

const SPLITS = ["train", "val", "test", "unassigned"];
const SPLIT_WORDS = { ...SPLIT_NAMES, unassigned: "No split yet" };

/** counts: {label: {split: {accepted, duplicates}}} → a label × split table. */
export function splitTable(counts, { id } = {}) {
  const labels = Object.keys(counts).sort((a, b) => a.localeCompare(b));
  const used = SPLITS.filter((split) => labels.some((label) => counts[label][split]));
  const cell = (numbers) => {
    if (!numbers) return "—";
    const parts = [numbers.accepted ? `${numbers.accepted.toLocaleString()} added` : null,
      numbers.duplicates ? `${numbers.duplicates.toLocaleString()} already here` : null].filter(Boolean);
    return parts.join(", ") || "—";
  };
  return h("div", { class: "table-wrap" }, h("table", { class: "table table-compact split-table", id },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Label"), used.map((s) => h("th", { scope: "col" }, SPLIT_WORDS[s])))),
    h("tbody", {}, labels.map((label) => h("tr", { dataset: { label } },
      h("th", { scope: "row", class: label ? null : "muted" }, label || "no label"),
      used.map((split) => h("td", { dataset: { split } }, cell(counts[label][split]))))))));
}

/** The accepted items of a finished upload, counted like the history does. */
export function countAccepted(accepted) {
  const counts = {};
  for (const item of accepted) {
    const label = item.label || "";
    const split = item.split || "unassigned";
    counts[label] ??= {};
    counts[label][split] ??= { accepted: 0, duplicates: 0 };
    counts[label][split].accepted += 1;
  }
  return counts;
}

export class UploadHistory {
  constructor({ projectId, section }) {
    Object.assign(this, { projectId, section });
  }

  async refresh() {
    let uploads;
    try {
      uploads = await api(`/projects/${this.projectId}/uploads`);
    } catch {
      return;
    }
    this.section.hidden = !uploads.length;
    replace(this.section,
      h("div", { class: "card-head" }, h("h2", { id: "upload-history-title" }, "Upload history"),
        h("span", { class: "muted small" }, plural(uploads.length, "upload"))),
      h("ol", { class: "upload-history" }, uploads.map((upload, i) => h("li", { class: "upload-past", dataset: { key: upload.key } },
        h("details", { open: i === 0 },
          h("summary", {}, h("strong", {}, dateTime(upload.finished_at)), " · ",
            h("span", { class: "past-accepted" }, `${upload.accepted.toLocaleString()} added`),
            upload.duplicates ? `, ${upload.duplicates.toLocaleString()} already here` : "",
            upload.rejected ? h("span", { class: "past-rejected" }, `, ${plural(upload.rejected, "file")} not usable`) : ""),
          Object.keys(upload.counts).length ? splitTable(upload.counts) : null,
          upload.rejected_files.length ? h("ul", { class: "file-list file-list-bad" }, upload.rejected_files.slice(0, 20).map((r) =>
            h("li", {}, h("span", { class: "file-name" }, r.filename), h("span", { class: "file-reason" }, r.reason)))) : null)))));
  }
}
