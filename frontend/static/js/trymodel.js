// "Try the model": drop or pick a picture, see the top classes with bars.

import { api } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { percent } from "./format.js";

const TOP = 5;

export function tryModelCard(run) {
  const result = h("div", { class: "try-result", "aria-live": "polite" });
  const input = h("input", { type: "file", accept: "image/*", hidden: true, id: "try-input" });
  const zone = h("div", { class: "try-zone", id: "try-zone" },
    icon("image", "icon icon-lg"),
    h("p", {}, "Drop a picture here to see what the model says"),
    h("button", { type: "button", class: "btn btn-sm", onclick: () => input.click() }, "Choose a picture"),
    input);

  const predict = async (file) => {
    if (!file) return;
    const preview = h("img", { class: "try-preview", alt: file.name, src: URL.createObjectURL(file) });
    // A file the browser cannot draw gets a plain placeholder, not a broken-image icon.
    preview.addEventListener("error", () => preview.replaceWith(
      h("div", { class: "try-preview try-preview-missing", title: file.name }, icon("image"))));
    replace(result, h("div", { class: "try-row" }, preview, h("p", { class: "muted" }, "Asking the model…")));
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const answer = await api(`/runs/${run.id}/predict`, { method: "POST", form });
      const ranked = Object.entries(answer.probabilities || {}).sort((a, b) => b[1] - a[1]).slice(0, TOP);
      replace(result, h("div", { class: "try-row" }, preview,
        h("div", { class: "try-answer" },
          h("p", { class: "try-label" }, h("span", { class: "muted" }, "It looks like "), h("strong", {}, answer.label)),
          h("ul", { class: "bars", "aria-label": "Top classes" }, ranked.map(([name, p]) =>
            h("li", { class: name === answer.label ? "is-top" : null },
              h("span", { class: "bar-name" }, name),
              h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: { width: `${(p * 100).toFixed(1)}%` } })),
              h("span", { class: "bar-value" }, percent(p))))))));
    } catch (error) {
      replace(result, h("div", { class: "try-row" }, preview, h("p", { class: "notice notice-error", role: "alert" }, error.message)));
    }
  };

  input.addEventListener("change", () => {
    predict(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("is-over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("is-over");
    predict(event.dataTransfer?.files?.[0]);
  });
  const available = run.artifacts?.some((a) => a.format === "onnx");
  return h("section", { class: "card", id: "try-model", "aria-label": "Try the model" },
    h("div", { class: "card-head" }, h("h2", {}, "Try the model")),
    available ? h("div", { class: "stack" }, zone, result) : h("p", { class: "muted" }, "This run has no ONNX model to try."));
}
