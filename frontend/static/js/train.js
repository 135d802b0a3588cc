// The Train dialog: mode, backbone from the zoo, head. Defaults train in one click.

import { api } from "./api.js";
import { h, replace } from "./dom.js";
import { roughDuration } from "./format.js";
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
    this.form.addEventListener("change", () => {
      this.sync();
      this.measureIfNeeded();
    });
    this.asked = new Set(); // backbones whose measurement this page asked for
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
    else this.measureIfNeeded();
  }

  async loadBackbones() {
    try {
      const [backbones, estimates] = await Promise.all([
        api("/backbones"),
        api(`/projects/${this.projectId}/estimates?epochs=${this.values().epochs}`).catch(() => null),
      ]);
      this.loaded = true;
      this.estimates = estimates;
      const usable = backbones.filter((b) => b.weights !== "unavailable");
      const others = backbones.filter((b) => b.weights === "unavailable");
      const preferred = usable.find((b) => b.name === DEFAULT_BACKBONE) || usable[0];
      // The ones that can train here first; the rest behind "more", not struck through.
      replace(this.table, usable.length
        ? usable.map((b) => this.row(b, b === preferred))
        : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No backbone has weights on this server.")));
      const more = document.getElementById("more-backbones");
      more.hidden = !others.length;
      replace(document.getElementById("more-backbones-summary"), `${others.length} more ${others.length === 1 ? "backbone" : "backbones"} without weights here`);
      replace(document.querySelector("#more-backbone-table tbody"), others.map((b) => this.row(b, false)));
      this.sync();
      this.measureIfNeeded();
    } catch (error) {
      replace(this.table, h("tr", {}, h("td", { colspan: 6, class: "notice notice-error" }, error.message)));
    }
  }

  /**
   * Before any run has measured the chosen backbone here, a worker times it on a few of the
   * project's pictures (once per backbone); the dialog shows "measuring…" meanwhile.
   */
  async measureIfNeeded() {
    const { backbone } = this.values();
    const known = this.estimates?.backbones?.[backbone];
    if (!this.estimates || known?.linear_s != null || known?.measuring || this.asked.has(backbone)) {
      this.pollWhileMeasuring();
      return;
    }
    this.asked.add(backbone);
    try {
      await api(`/projects/${this.projectId}/estimates/measure`, { method: "POST", json: { backbone } });
    } catch {
      return; // too few labelled pictures, or no weights here: it stays "not measured"
    }
    this.estimates.backbones[backbone] = { linear_s: null, finetune_s: null, runs_measured: 0, ...known, measuring: true };
    this.sync();
    this.pollWhileMeasuring();
  }

  pollWhileMeasuring() {
    clearTimeout(this.pollTimer);
    const busy = Object.values(this.estimates?.backbones || {}).some((e) => e.measuring);
    if (!busy || !this.dialog.open) return;
    this.pollTimer = setTimeout(async () => {
      try {
        this.estimates = await api(`/projects/${this.projectId}/estimates?epochs=${this.estimates.epochs}`);
        this.sync();
      } catch {
        // the next poll tries again
      }
      this.pollWhileMeasuring();
    }, 1500);
  }

  /** Seconds this mode would take with this backbone here, or null when never measured. */
  estimate(mode, backbone) {
    const measured = this.estimates?.backbones?.[backbone];
    if (!measured) return null;
    if (mode === "linear") return measured.linear_s;
    if (mode !== "finetune" || measured.finetune_s === null) return null;
    // Epochs scale the training part; the probe it starts from stays.
    const probe = measured.linear_s || 0;
    return probe + (measured.finetune_s - probe) * (this.values().epochs / this.estimates.epochs);
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
      h("td", { class: "num" }, backbone.imagenet_top1 ? `${backbone.imagenet_top1.toFixed(1)}%` : "—"),
      h("td", { class: "num time-here", dataset: { backbone: backbone.name } }, "—"),
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
    const seconds = this.estimate(mode, backbone);
    const probed = this.estimates?.backbones?.[backbone]?.source === "measured";
    replace(this.summary, `${words[mode]} with ${backbone}`, seconds === null ? "" : `: about ${roughDuration(seconds)} on this server`,
      seconds !== null && probed ? h("span", { class: "muted" }, " (estimated from a short measurement)") : "");
    for (const key of ["linear", "finetune"]) {
      const value = this.estimate(key, backbone);
      replace(document.getElementById(`estimate-${key}`), value === null ? "" : `· about ${roughDuration(value)}`);
    }
    for (const cell of this.dialog.querySelectorAll(".time-here")) {
      const value = this.estimate(mode === "auto" ? "linear" : mode, cell.dataset.backbone);
      const known = this.estimates?.backbones?.[cell.dataset.backbone];
      replace(cell, value !== null ? `${roughDuration(value)}${known?.source === "measured" ? " (est.)" : ""}` : known?.measuring ? "measuring…" : "not measured");
      cell.dataset.source = value !== null ? known?.source || "" : "";
      cell.title = value === null
        ? (known?.measuring ? "Timing this backbone on a few of this project's pictures…" : "No run with this backbone has been measured on this server yet")
        : known?.source === "measured"
          ? "Estimated from a short measurement of this backbone on a few of this project's pictures, on this server"
          : "From earlier runs on this server, for this project's images";
    }
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
