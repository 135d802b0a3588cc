// Deploy help on the run page: copy-able code per way of running the model, written by the
// server from the model's own labels and preprocessing (GET /api/runs/{id}/usage).

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { copyButton, toast } from "./ui.js";

const TABS = [
  ["python", "Python", "With onnxruntime, next to the downloaded ONNX model."],
  ["javascript", "JavaScript", "In the browser with onnxruntime-web; no server needed."],
  ["csharp", "C#", "With Microsoft.ML.OnnxRuntime and ImageSharp."],
  ["curl", "This server", "Send pictures to the hosted model with an API token."],
  ["bundle", "Zip bundle", "The downloaded zip runs as it is: its README.md says the same."],
];
const TOKEN_DAYS = 90;

const BUNDLE = `unzip autodl-run*.zip && cd autodl-run*/
pip install -r requirements.txt
python predict.py picture.jpg            # the label and its probability
python predict.py pictures/ --json       # every picture of a folder, as JSON
python predict.py pictures/ --csv out.csv`;

function codeBlock(id, text) {
  const code = h("code", { id: `snippet-${id}` }, text);
  return { element: h("div", { class: "snippet" }, h("div", { class: "snippet-tools" }, copyButton(text, `Copy the ${id} code`)), h("pre", {}, code)), code };
}

export function deployCard(run) {
  const body = h("div", { class: "stack" }, h("p", { class: "muted" }, "Loading…"));
  const section = h("section", { class: "card deploy-card", id: "deploy-help", "aria-label": "Use this model" },
    h("div", { class: "card-head" }, h("h2", {}, "Use this model"), h("span", { id: "model-card-link" })), body);
  api(`/runs/${run.id}/usage`).then((usage) => fill(section, body, usage, run)).catch((error) => {
    replace(body, h("p", { class: "muted" }, error.message));
  });
  return section;
}

const CARD_CHECK_MS = 2000;

/** The model card is written with the bundle, seconds after the run: link it once it is. */
function linkModelCard(section, run, url, tries = 120) {
  const slot = section.querySelector("#model-card-link");
  if (url) {
    replace(slot, h("a", { class: "btn btn-sm", href: url, target: "_blank", rel: "noopener", id: "model-card" }, "Model card"));
    return;
  }
  replace(slot, h("span", { class: "muted small" }, "Writing the model card…"));
  if (tries <= 0) {
    replace(slot, "");
    return;
  }
  setTimeout(async () => {
    const fresh = await api(`/runs/${run.id}/usage`).catch(() => null);
    if (section.isConnected) linkModelCard(section, run, fresh?.model_card_url, tries - 1);
  }, CARD_CHECK_MS);
}

function fill(section, body, usage, run) {
  linkModelCard(section, run, usage.model_card_url);
  const texts = { ...usage.snippets, bundle: BUNDLE };
  const blocks = {};
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Ways to run the model" });
  const panels = [];
  TABS.forEach(([key, title, words], i) => {
    const block = codeBlock(key, texts[key]);
    blocks[key] = block;
    const extra = key === "curl" ? tokenMaker(run, (token) => {
      const text = texts.curl.replace("export AUTODL_TOKEN=...", `export AUTODL_TOKEN=${token}`);
      const fresh = codeBlock("curl", text);
      block.element.replaceWith(fresh.element);
      block.element = fresh.element;
    }) : null;
    const panel = h("div", { class: "tab-panel", role: "tabpanel", id: `deploy-panel-${key}`, hidden: i !== 0 },
      h("p", { class: "muted small" }, words), extra, block.element);
    const tab = h("button", { type: "button", class: "tab", role: "tab", id: `deploy-tab-${key}`,
      "aria-selected": String(i === 0), "aria-controls": `deploy-panel-${key}`,
      onclick: () => select(key) }, title);
    tabs.append(tab);
    panels.push(panel);
  });
  function select(key) {
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.id === `deploy-tab-${key}`));
    for (const panel of panels) panel.hidden = panel.id !== `deploy-panel-${key}`;
  }
  tabs.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const keys = TABS.map(([key]) => key);
    const now = keys.findIndex((key) => tabs.querySelector(`#deploy-tab-${key}`).getAttribute("aria-selected") === "true");
    const next = keys[(now + (event.key === "ArrowRight" ? 1 : keys.length - 1)) % keys.length];
    select(next);
    tabs.querySelector(`#deploy-tab-${next}`).focus();
  });
  // Each input of the model (an ensemble has one per backbone, each prepared its own way).
  const inputs = usage.inputs.map((i) => `“${i.name}”: ${i.input_size} × ${i.input_size} RGB, shorter side resized to ${i.resize_size} px and centre-cropped`);
  const facts = h("p", { class: "muted small", id: "model-inputs" },
    inputs.length > 1 ? `${inputs.length} inputs, one per backbone: ${inputs.join("; ")}; ` : `Input ${inputs[0]}, `,
    `then (x − mean) / std. Output: one probability per label, in the order ${usage.labels.map((l) => `“${l}”`).join(", ")}.`);
  replace(body, tabs, panels, facts);
}

function tokenMaker(run, onToken) {
  const status = h("span", { class: "muted small", role: "status" });
  const button = h("button", { type: "button", class: "btn btn-sm", id: "make-token", onclick: async () => {
    button.disabled = true;
    try {
      const made = await api("/auth/tokens", { method: "POST", json: { name: `run ${run.id} predictions`, expires_in_days: TOKEN_DAYS } });
      onToken(made.token);
      replace(status, `A token valid for ${TOKEN_DAYS} days is in the code below. It is shown only now: keep it somewhere safe.`);
    } catch (error) {
      toast(error.message, "error");
      button.disabled = false;
    }
  } }, "Make an API token");
  return h("div", { class: "token-maker" }, button, status);
}
