// The label-error review queue: one likely mislabelled image at a time, driven by the keyboard.
// A accept the suggestion · K keep the label · D delete · → / N next · ← back · Z undo · Esc close.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { percent, plural } from "./format.js";
import { applyFix, undoFix } from "./fixes.js";
import { closable, confirmDialog, toast } from "./ui.js";

const KEYS = [["A", "accept the suggestion"], ["K", "keep the label"], ["D", "delete"], ["→", "next"], ["←", "back"], ["Z", "undo"], ["Esc", "close"]];

export class ReviewQueue {
  constructor({ projectId, onClosed, onChanged }) {
    this.projectId = projectId;
    this.onClosed = onClosed;
    this.onChanged = onChanged;
    this.dialog = null;
    this.items = [];
    this.index = 0;
    this.done = new Map(); // image id -> {action, editId}
    this.busy = false;
  }

  build() {
    this.dialog = closable(h("dialog", { class: "dialog dialog-wide review", id: "review-dialog", "aria-labelledby": "review-title" },
      h("header", { class: "dialog-head" }, h("h2", { id: "review-title" }, "Likely label errors"),
        h("button", { type: "button", class: "btn btn-ghost btn-icon", "data-close": true, "aria-label": "Close" }, "×")),
      h("div", { class: "dialog-body", id: "review-body" }),
      h("footer", { class: "dialog-foot" },
        h("span", { class: "muted small", id: "review-progress", "aria-live": "polite" }),
        h("button", { type: "button", class: "btn btn-primary", "data-close": true }, "Done"))));
    this.dialog.addEventListener("keydown", (event) => this.key(event));
    this.dialog.addEventListener("close", () => {
      const relabelled = [...this.done.values()].filter((d) => d.action === "relabel").length;
      this.onClosed?.(relabelled);
    });
    document.body.append(this.dialog);
  }

  open(issues) {
    if (!this.dialog) this.build();
    this.items = issues.slice();
    this.index = 0;
    this.done = new Map();
    this.render();
    this.dialog.showModal();
    this.dialog.focus();
  }

  current() {
    return this.items[this.index];
  }

  render() {
    const item = this.current();
    const body = document.getElementById("review-body");
    const progress = document.getElementById("review-progress");
    const relabelled = [...this.done.values()].filter((d) => d.action === "relabel").length;
    replace(progress, `${this.index + 1 > this.items.length ? this.items.length : this.index + 1} of ${this.items.length} · relabelled ${relabelled}`);
    if (!item) {
      replace(body, h("p", { class: "review-end", id: "review-end" },
        `All ${plural(this.items.length, "image")} reviewed; ${relabelled} relabelled. Close to re-estimate the accuracy.`));
      return;
    }
    const state = this.done.get(item.image_id);
    const stateText = state ? { relabel: `Relabelled “${item.suggested_label}”`, keep: "Kept", delete: "Deleted" }[state.action] : "";
    replace(body, h("div", { class: "review-item", dataset: { imageId: item.image_id } },
      h("img", { class: "review-img", src: `/api/images/${item.image_id}/file`, alt: `Image ${item.image_id}` }),
      h("div", { class: "review-facts" },
        h("p", {}, h("span", { class: "muted" }, "Labelled "), h("strong", { id: "review-given" }, item.given_label)),
        h("p", {}, h("span", { class: "muted" }, "Looks like "), h("strong", { id: "review-suggested" }, item.suggested_label),
          ` (${percent(item.confidence, 0)} sure)`),
        stateText ? h("p", { class: "review-state", id: "review-state" }, stateText) : null,
        h("div", { class: "review-buttons" },
          h("button", { type: "button", class: "btn btn-primary", onclick: () => this.accept() }, h("kbd", {}, "A"), ` Label “${item.suggested_label}”`),
          h("button", { type: "button", class: "btn", onclick: () => this.keep() }, h("kbd", {}, "K"), ` Keep “${item.given_label}”`),
          h("button", { type: "button", class: "btn btn-danger-ghost", onclick: () => this.remove() }, h("kbd", {}, "D"), " Delete")),
        h("dl", { class: "keys review-keys" }, KEYS.map(([k, words]) => [h("dt", {}, h("kbd", {}, k)), h("dd", {}, words)])))));
  }

  async key(event) {
    if (event.target.closest?.("input, select, textarea")) return;
    const key = event.key.toLowerCase();
    const actions = { a: () => this.accept(), k: () => this.keep(), d: () => this.remove(),
      delete: () => this.remove(), n: () => this.move(1), arrowright: () => this.move(1), arrowleft: () => this.move(-1), z: () => this.undo() };
    if (!actions[key] || event.ctrlKey || event.metaKey || event.altKey) return;
    event.preventDefault();
    if (this.busy) return;
    this.busy = true;
    try {
      await actions[key]();
    } catch (error) {
      toast(error.message, "error");
    } finally {
      this.busy = false;
    }
  }

  move(step) {
    this.index = Math.min(this.items.length, Math.max(0, this.index + step));
    this.render();
  }

  async accept() {
    const item = this.current();
    if (!item || this.done.get(item.image_id)?.action === "relabel") return;
    const result = await applyFix(this.projectId, { ids: [item.image_id], label: item.suggested_label, source: "label_issues", recheck: false }, { quiet: true });
    this.done.set(item.image_id, { action: "relabel", editId: result.edit_id });
    this.move(1);
  }

  keep() {
    const item = this.current();
    if (!item) return;
    this.done.set(item.image_id, { action: "keep" });
    this.move(1);
  }

  async remove() {
    const item = this.current();
    if (!item) return;
    const ok = await confirmDialog({ title: "Delete this image?", message: "It is removed from the project; Z undoes it.", confirmLabel: "Delete" });
    this.dialog.focus();
    if (!ok) return;
    const result = await api(`/projects/${this.projectId}/health/fixes/delete`, { method: "POST", json: { ids: [item.image_id], source: "label_issues", recheck: false } });
    this.done.set(item.image_id, { action: "delete", editId: result.edit_id });
    this.move(1);
  }

  /** Undo the last relabel or deletion of this session of the queue and go back to that image. */
  async undo() {
    const last = [...this.done.entries()].reverse().find(([, d]) => d.action === "relabel" || d.action === "delete");
    if (!last) {
      toast("Nothing to undo here.", "info");
      return;
    }
    const [imageId, { editId }] = last;
    await undoFix(this.projectId, editId, { recheck: false });
    this.done.delete(imageId);
    this.index = this.items.findIndex((i) => i.image_id === imageId);
    this.render();
    await this.onChanged?.();
  }
}
