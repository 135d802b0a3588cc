// The Train dialog: mode, backbone from the zoo, head. Defaults train in one click.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { showError } from "./ui.js";

const DEFAULT_BACKBONE = "tf_efficientnet_lite0";

const WEIGHTS = {
  bundled: { text: "Bundled", tone: "ok", hint: "Ships with autodl; works offline." },
  cached: { text: "On this machine", tone: "ok", hint: "Already downloaded or imported." },
  download: { text: "Downloads first", tone: "warn", hint: "Fetched from the internet the first time it is used." },
  unavailable: {
    text: "Unavailable", tone: "bad",
    hint: "No weights on this machine and it is offline. An administrator can add them with “autodl weights import FILE --model NAME”.",
  },
};

export class TrainDialog {
  constructor({ projectId }) {
    this.projectId = projectId;
    this.dialog = document.getElementById("train-dialog");
    this.form = document.getElementById("train-form");
    this.table = document.querySelector("#backbone-table tbody");
    this.error = document.getElementById("train-error");
    this.summary = document.getElementById("train-summary");
    this.loaded = false;

    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog || event.target.closest("[data-close]")) this.dialog.close();
    });
    this.form.addEventListener("change", () => this.sync());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  async open() {
    showError(this.error, null);
    this.dialog.showModal();
    this.sync();
    document.getElementById("start-training").focus();
    if (!this.loaded) await this.loadBackbones();
  }

  async loadBackbones() {
    try {
      const backbones = await api("/backbones");
      this.loaded = true;
      const usable = (b) => b.weights !== "unavailable";
      const preferred = backbones.find((b) => b.name === DEFAULT_BACKBONE && usable(b)) || backbones.find(usable);
      replace(this.table, backbones.map((b) => this.row(b, b === preferred)));
      this.sync();
    } catch (error) {
      replace(this.table, h("tr", {}, h("td", { colspan: 6, class: "notice notice-error" }, error.message)));
    }
  }

  row(backbone, checked) {
    const weights = WEIGHTS[backbone.weights] || { text: backbone.weights, tone: "muted", hint: "" };
    const disabled = backbone.weights === "unavailable";
    const id = `backbone-${backbone.name}`;
    const reason = disabled ? weights.hint : backbone.notes || weights.hint;
    return h("tr", { class: disabled ? "is-disabled" : null },
      h("td", {}, h("input", { type: "radio", name: "backbone", id, value: backbone.name, checked, disabled,
        "aria-describedby": `${id}-notes` })),
      h("td", {}, h("label", { for: id, class: "mono" }, backbone.name),
        h("div", { class: "muted small", id: `${id}-notes` }, reason)),
      h("td", { class: "num" }, `${backbone.params_m}M`),
      h("td", { class: "num" }, `${backbone.input_size}px`),
      h("td", { class: "num" }, backbone.imagenet_top1 ? `${backbone.imagenet_top1.toFixed(1)}%` : "—"),
      h("td", {}, h("span", { class: `pill pill-${weights.tone}`, title: weights.hint }, weights.text)));
  }

  values() {
    const data = new FormData(this.form);
    return {
      mode: data.get("mode") || "linear",
      backbone: data.get("backbone") || DEFAULT_BACKBONE,
      head: data.get("head") || "logreg",
      epochs: Number(data.get("epochs")) || 5,
    };
  }

  sync() {
    const { mode, backbone } = this.values();
    document.getElementById("head-field").hidden = mode === "finetune";
    document.getElementById("epochs-field").hidden = mode !== "finetune";
    const words = { linear: "Quick training", finetune: "Fine-tuning", auto: "Auto (may pick another backbone)" };
    replace(this.summary, `${words[mode]} with ${backbone}`);
  }

  async submit() {
    const { mode, backbone, head, epochs } = this.values();
    const options = mode === "finetune" ? { epochs } : { head };
    const button = document.getElementById("start-training");
    button.disabled = true;
    showError(this.error, null);
    try {
      const run = await api(`/projects/${this.projectId}/runs`, { method: "POST", json: { mode, backbone, options } });
      window.location.assign(`/runs/${run.id}`);
    } catch (error) {
      showError(this.error, error.message);
      button.disabled = false;
    }
  }
}
