// Fix where found: relabel, move or delete images from wherever a problem shows, with Undo.

import { api } from "./api.js";
import { h } from "./dom.js";
import { plural } from "./format.js";
import { confirmDialog, toast } from "./ui.js";

const UNDO_MS = 10000;

/** A toast with an Undo button; onUndo runs at most once. */
export function undoToast(message, onUndo) {
  const region = document.getElementById("toasts");
  if (!region) return;
  let used = false;
  const button = h("button", { type: "button", class: "btn btn-sm toast-action", onclick: async () => {
    if (used) return;
    used = true;
    item.remove();
    try {
      await onUndo();
    } catch (error) {
      toast(error.message, "error");
    }
  } }, "Undo");
  const item = h("div", { class: "toast toast-success toast-undo" }, h("span", {}, message), button);
  region.append(item);
  setTimeout(() => item.classList.add("toast-leaving"), UNDO_MS);
  setTimeout(() => item.remove(), UNDO_MS + 300);
}

/** Put the images of one fix back as they were. */
export async function undoFix(projectId, editId, { recheck = true } = {}) {
  const result = await api(`/projects/${projectId}/health/fixes/${editId}/undo${recheck ? "" : "?recheck=false"}`, { method: "POST" });
  toast(result.message, "success");
  return result;
}

/**
 * Relabel ({label}) and/or move ({split}) images; shows what changed with an Undo button.
 * onChanged runs after the fix and after its undo.
 */
export async function applyFix(projectId, { ids, label, split, source = "findings", recheck = true }, { onChanged, quiet = false } = {}) {
  const json = { ids, source, recheck };
  if (label !== undefined) json.label = label;
  if (split !== undefined) json.split = split;
  const result = await api(`/projects/${projectId}/health/fixes`, { method: "POST", json });
  if (!quiet) {
    undoToast(result.message, async () => {
      await undoFix(projectId, result.edit_id, { recheck });
      await onChanged?.();
    });
  }
  await onChanged?.();
  return result;
}

/**
 * Delete images (after asking, unless ``confirm`` is false: the gallery deletes at once, as it
 * relabels and moves); shows an Undo button, as relabel and move do.
 */
export async function deleteImages(projectId, ids, { onChanged, source = "findings", confirm = true } = {}) {
  const ok = !confirm || await confirmDialog({
    title: `Delete ${plural(ids.length, "image")}?`,
    message: "They are removed from the project and from every split. You can undo it right after.",
    confirmLabel: "Delete",
  });
  if (!ok) return false;
  const result = await api(`/projects/${projectId}/health/fixes/delete`, { method: "POST", json: { ids, source } });
  undoToast(result.message, async () => {
    await undoFix(projectId, result.edit_id);
    await onChanged?.();
  });
  await onChanged?.();
  return result;
}

/**
 * The fix buttons of one predicted image (mistakes list, confusion-matrix cells):
 * relabel as the prediction, move to another split, delete.
 */
export function predictionFixes(item, { projectId, onChanged }) {
  if (!item.image_id) return null;
  const run = async (action) => {
    try {
      await action();
    } catch (error) {
      toast(error.message, "error");
    }
  };
  const wrong = item.true_label !== item.predicted_label;
  const move = h("select", { class: "fix-move", "aria-label": `Move ${item.filename} to a split`,
    onchange: (event) => {
      const split = event.target.value;
      event.target.value = "";
      if (split) run(() => applyFix(projectId, { ids: [item.image_id], split, source: "mistakes" }, { onChanged }));
    } },
  h("option", { value: "" }, "Move to…"),
  ["train", "val", "test"].filter((s) => s !== item.split).map((s) => h("option", { value: s }, { train: "Train", val: "Validation", test: "Test" }[s])));
  return h("div", { class: "fix-actions" },
    wrong ? h("button", { type: "button", class: "btn btn-sm fix-relabel", title: `Label this image “${item.predicted_label}”`,
      onclick: () => run(() => applyFix(projectId, { ids: [item.image_id], label: item.predicted_label, source: "mistakes" }, { onChanged })) },
    `Relabel “${item.predicted_label}”`) : null,
    move,
    h("button", { type: "button", class: "btn btn-sm btn-danger-ghost fix-delete", "aria-label": `Delete ${item.filename}`,
      onclick: () => run(() => deleteImages(projectId, [item.image_id], { onChanged, source: "mistakes" })) }, "Delete"));
}
