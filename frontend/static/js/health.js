// The project page's health card: the data doctor's findings, each with why it matters,
// example pictures and one-click fixes; domain fit; what to label next.

import { api, ApiError } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { percent, plural } from "./format.js";
import { applyFix, deleteImages, undoFix, undoToast } from "./fixes.js";
import { ReviewQueue } from "./review.js";
import { toast } from "./ui.js";

const POLL_MS = 2000;
const EXAMPLES = 6;
const SEVERITY_WORDS = { error: "Problem", warning: "Worth a look", info: "Note" };
const VERDICT_WORDS = { good: "Good fit", fair: "Partial fit", poor: "Poor fit" };

function thumbs(ids) {
  return h("ul", { class: "finding-thumbs" }, ids.slice(0, EXAMPLES).map((id) =>
    h("li", {}, h("a", { href: `/api/images/${id}/file`, target: "_blank", rel: "noopener", "aria-label": `Open image ${id}` },
      h("img", { src: `/api/images/${id}/thumbnail`, alt: "", loading: "lazy", width: 64, height: 64 })))));
}

/** The split most of a group is in (train on a tie): where its copies belong. */
function homeSplit(group) {
  const counts = new Map();
  for (const split of group.splits) if (split) counts.set(split, (counts.get(split) || 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] === "train" ? -1 : b[0] === "train" ? 1 : 0))[0][0];
}

export class HealthCard {
  constructor({ projectId, section, onChanged }) {
    this.projectId = projectId;
    this.section = section;
    this.onChanged = onChanged;
    this.report = null;
    this.timer = null;
    this.review = new ReviewQueue({ projectId, onClosed: (relabelled) => this.afterReview(relabelled), onChanged });
  }

  /** While a drop is still sending, the card says so: not "no images yet", not "too few". */
  setUploading(on) {
    if (this.uploading === on) return;
    this.uploading = on;
    if (on && !this.report) this.renderUploading();
    else if (this.report) this.render(this.report);
  }

  renderUploading() {
    this.section.hidden = false;
    replace(this.section, this.head(h("span", { class: "muted small", id: "health-status" },
      h("span", { class: "pulse", "aria-hidden": "true" }), " upload in progress")),
    h("p", { class: "muted", id: "health-message" },
      "Pictures are being uploaded. The doctor checks them as soon as the upload ends."));
  }

  async refresh() {
    clearTimeout(this.timer);
    let report;
    try {
      report = await api(`/projects/${this.projectId}/health`);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 409 || error.status === 404)) {
        this.report = null;
        if (this.uploading) this.renderUploading();
        else this.renderMessage(error.message);
        return;
      }
      toast(error.message, "error");
      return;
    }
    this.report = report;
    this.render(report);
    if (report.status === "computing") this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  async check() {
    try {
      await api(`/projects/${this.projectId}/health`, { method: "POST" });
    } catch (error) {
      toast(error.message, "error");
    }
    await this.refresh();
  }

  async changed() {
    await this.onChanged?.();
    await this.refresh();
  }

  async afterReview(relabelled) {
    if (relabelled) {
      toast(`Relabelled ${relabelled}: re-estimating the accuracy…`, "info");
      await this.check();
    }
    await this.onChanged?.();
  }

  head(status) {
    return h("div", { class: "card-head" },
      h("h2", { id: "health-title" }, "Data health"),
      h("div", { class: "health-head-right" }, status,
        h("button", { type: "button", class: "btn btn-sm", id: "health-check", onclick: () => this.check() }, "Check again")));
  }

  renderMessage(message) {
    this.section.hidden = false;
    replace(this.section, this.head(null), h("p", { class: "muted", id: "health-message" }, message));
  }

  render(report) {
    this.section.hidden = false;
    const busy = report.status === "computing";
    const status = busy || this.uploading
      ? h("span", { class: "muted small", id: "health-status" }, h("span", { class: "pulse", "aria-hidden": "true" }),
        this.uploading ? " upload in progress" : " checking")
      : h("span", { class: "muted small", id: "health-status" }, report.computed_at ? `checked ${new Date(report.computed_at).toLocaleTimeString()}` : "");
    const parts = [this.head(status)];
    if (report.message && (busy || report.status === "failed")) {
      parts.push(h("p", { class: report.status === "failed" ? "notice notice-error" : "muted", id: "health-message" }, report.message));
    }
    if (report.effect) {
      parts.push(h("p", { class: "notice health-effect", id: "health-effect" }, icon("check"), h("span", {}, report.effect.message)));
    }
    if (report.computed_at) {
      parts.push(this.fitBlock(report.domain_fit));
      parts.push(h("ul", { class: "findings", id: "health-findings" }, report.findings.map((f) => this.finding(f, report))));
      if (report.labels_needed) parts.push(h("p", { class: "muted small", id: "health-needed" }, report.labels_needed.message));
    }
    replace(this.section, parts);
  }

  fitBlock(fit) {
    if (!fit) return null;
    return h("div", { class: `health-fit fit-${fit.verdict}`, id: "health-fit" },
      h("span", { class: "status", dataset: { verdict: fit.verdict } }, VERDICT_WORDS[fit.verdict] || fit.verdict),
      h("span", {}, fit.message),
      h("span", { class: "muted small" }, ` kNN agreement ${percent(fit.knn_agreement, 0)}.`));
  }

  finding(f, report) {
    if (f.kind === "domain_fit") return null;
    return h("li", { class: `finding finding-${f.severity}`, dataset: { kind: f.kind } },
      h("div", { class: "finding-row" },
        h("span", { class: `finding-badge badge-${f.severity}` }, SEVERITY_WORDS[f.severity]),
        h("span", { class: "finding-message" }, f.message)),
      f.image_ids.length ? thumbs(f.image_ids) : null,
      h("details", { class: "finding-why" }, h("summary", {}, "Why it matters"), h("p", {}, f.why)),
      this.actions(f, report));
  }

  actions(f, report) {
    const buttons = [];
    const run = (fn) => async () => {
      try {
        await fn();
      } catch (error) {
        toast(error.message, "error");
      }
    };
    if (f.kind === "leakage") {
      const groups = report.duplicates.filter((g) => g.across_splits);
      buttons.push(h("button", { type: "button", class: "btn btn-sm btn-primary", id: "fix-leakage",
        onclick: run(() => this.moveCopies(groups)) }, `Move ${plural(groups.length, "copy", "copies")} into their original’s split`));
      buttons.push(h("button", { type: "button", class: "btn btn-sm", onclick: run(() => this.keepOne(groups)) }, "Keep one of each, delete the rest"));
    } else if (f.kind === "duplicates" || f.kind === "conflicting_labels") {
      const groups = report.duplicates.filter((g) => (f.kind === "duplicates") === (!g.across_splits && !g.across_labels) || (f.kind === "conflicting_labels" && g.across_labels));
      buttons.push(h("button", { type: "button", class: "btn btn-sm", onclick: run(() => this.keepOne(groups)) }, "Keep one of each, delete the rest"));
    } else if (f.kind === "label_errors" && report.label_issues.length) {
      buttons.push(h("button", { type: "button", class: "btn btn-sm btn-primary", id: "review-label-errors",
        onclick: () => this.review.open(report.label_issues) }, `Review ${plural(report.label_issues.length, "image")} (keyboard)`));
    } else if (f.kind === "unlabelled" && report.suggestions.length) {
      buttons.push(this.acceptControl(report));
    } else if (["small_images", "outliers", "unreadable", "grayscale_mix"].includes(f.kind) && f.image_ids.length) {
      buttons.push(h("button", { type: "button", class: "btn btn-sm btn-danger-ghost",
        onclick: run(() => deleteImages(this.projectId, f.image_ids, { onChanged: () => this.check() })) }, `Delete the ${plural(f.image_ids.length, "image")} shown`));
    }
    return buttons.length ? h("div", { class: "finding-actions" }, buttons) : null;
  }

  acceptControl(report) {
    const input = h("input", { type: "number", id: "accept-threshold", min: 50, max: 100, step: 1, value: 90, class: "input-narrow",
      "aria-label": "Lowest confidence to accept, in percent" });
    const count = () => report.suggestions.filter((s) => s.confidence * 100 >= Number(input.value)).length;
    const label = h("span", { class: "muted small", id: "accept-count" }, `${count()} of ${report.suggestions.length}`);
    input.addEventListener("input", () => replace(label, `${count()} of ${report.suggestions.length}`));
    const first = report.suggestions.slice(0, 3).map((s) => `#${s.image_id} “${s.suggested_label}” ${percent(s.confidence, 0)}`).join(", ");
    return h("div", { class: "accept-suggestions" },
      h("label", { for: "accept-threshold" }, "Accept suggestions above"), input, h("span", {}, "%"), label,
      h("button", { type: "button", class: "btn btn-sm btn-primary", id: "accept-suggestions",
        onclick: async () => {
          try {
            const result = await api(`/projects/${this.projectId}/health/suggestions/accept`, { method: "POST", json: { min_confidence: Number(input.value) / 100 } });
            undoToast(result.message, async () => {
              await undoFix(this.projectId, result.edit_id);
              await this.changed();
            });
            await this.changed();
          } catch (error) {
            toast(error.message, "error");
          }
        } }, "Accept"),
      h("p", { class: "muted small" }, `Label these first (most useful): ${first}.`));
  }

  async moveCopies(groups) {
    const bySplit = new Map();
    for (const group of groups) {
      const home = homeSplit(group);
      const ids = group.image_ids.filter((_, i) => group.splits[i] !== home);
      bySplit.set(home, [...(bySplit.get(home) || []), ...ids]);
    }
    const edits = [];
    let moved = 0;
    for (const [split, ids] of bySplit) {
      const result = await applyFix(this.projectId, { ids, split, source: "findings" }, { quiet: true });
      edits.push(result.edit_id);
      moved += result.updated;
    }
    undoToast(`${plural(moved, "copy", "copies")} moved into their original’s split.`, async () => {
      for (const edit of edits) await undoFix(this.projectId, edit);
      await this.changed();
    });
    await this.changed();
  }

  async keepOne(groups) {
    const extra = groups.flatMap((g) => {
      const keep = Math.max(0, g.splits.indexOf("train"));
      return g.image_ids.filter((_, i) => i !== keep);
    });
    await deleteImages(this.projectId, extra, { onChanged: () => this.check() });
  }
}
