// "Where it looked": a Grad-CAM heatmap over a prediction's picture, computed by the worker on
// the first request and cached; the button toggles the overlay.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { toast } from "./ui.js";

const POLL_MS = 1000;
const WAIT_S = 120;

async function heatmapUrl(runId, imageId) {
  const path = `/runs/${runId}/explanations/${imageId}`;
  let state = await api(path, { method: "POST" });
  const deadline = Date.now() + WAIT_S * 1000;
  while (state.status === "computing" && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    state = await api(path);
  }
  if (state.status !== "ready") throw new Error(state.error || "The heatmap is taking too long; try again.");
  return state;
}

/** A toggle button that lays the heatmap over the picture inside `frame` (a .pred-img). */
export function heatmapToggle(runId, item, frame) {
  if (!item.image_id || !frame) return null;
  let overlay = null;
  const button = h("button", { type: "button", class: "btn btn-sm heatmap-toggle", "aria-pressed": "false",
    title: "Show where the model looked (Grad-CAM)" }, "Where it looked");
  button.addEventListener("click", async () => {
    if (overlay) {
      overlay.hidden = !overlay.hidden;
      button.setAttribute("aria-pressed", String(!overlay.hidden));
      return;
    }
    button.disabled = true;
    replace(button, "Computing…");
    try {
      const state = await heatmapUrl(runId, item.image_id);
      overlay = h("img", { class: "heatmap-overlay", src: state.url, alt: `Where the model looked for “${state.label}”` });
      frame.append(overlay);
      button.setAttribute("aria-pressed", "true");
    } catch (error) {
      toast(error.message, "error");
    } finally {
      button.disabled = false;
      replace(button, "Where it looked");
    }
  });
  return button;
}
