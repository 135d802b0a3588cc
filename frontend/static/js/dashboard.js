// The accuracy dashboard of a finished run: honest headline numbers, per-class table, confusion
// matrix (click a cell for its images), mistakes, training curves, comparison, downloads.

import { api } from "./api.js";
import { confusionHeatmap, lineChart, loadPlotly } from "./charts.js";
import { h, icon, replace } from "./dom.js";
import { bytes, duration, MODE_NAMES, percent, plural } from "./format.js";
import { predictionFixes } from "./fixes.js";
import { deployCard } from "./deploy.js";
import { heatmapToggle } from "./heatmap.js";
import { RunsTable } from "./runs.js";
import { tryModelCard } from "./trymodel.js";

const MISTAKES_SHOWN = 24;

function tile(label, value, note, { big = false } = {}) {
  return h("div", { class: `metric${big ? " metric-big" : ""}` },
    h("div", { class: "metric-label" }, label),
    h("div", { class: "metric-value" }, value),
    note ? h("div", { class: "metric-note" }, note) : null);
}

function card(title, body, { id, extra } = {}) {
  return h("section", { class: "card", id, "aria-label": title },
    h("div", { class: "card-head" }, h("h2", {}, title), extra || null), body);
}

function headline(run) {
  // The interval and the baseline are computed by the server, on the images scored.
  const m = run.metrics;
  const nVal = m.n_images;
  const [lo, hi] = m.accuracy_interval;
  const baseline = m.majority_baseline;

  const tiles = h("div", { class: "metrics" },
    tile("Accuracy", percent(m.accuracy), nVal ? `95% range ${percent(lo, 0)}–${percent(hi, 0)} on ${plural(nVal, "validation image")}` : null, { big: true }),
    tile("Balanced accuracy", percent(m.balanced_accuracy), "Average of each label’s recall"),
    m.macro_f1 !== undefined ? tile("Macro F1", percent(m.macro_f1), "Precision and recall, all labels equal") : null,
    tile("Images", `${(m.n_train ?? "—").toLocaleString()} / ${(nVal || "—").toLocaleString()}`, "trained on / checked on"),
    tile("Time", duration(run.duration_s), m.head?.kind ? `classifier: ${m.head.kind}` : MODE_NAMES[run.mode]));

  const warnings = [];
  if (nVal && nVal < 30) {
    warnings.push(`Measured on only ${plural(nVal, "validation image")}: the real accuracy could be anywhere between ${percent(lo, 0)} and ${percent(hi, 0)}. Add more images for a firmer number.`);
  }
  if (baseline && m.accuracy - baseline.accuracy < 0.1) {
    warnings.push(`Always answering “${baseline.label}” would already score ${percent(baseline.accuracy, 0)}, so this model adds little. More images, or a different backbone, may help.`);
  }
  const thin = Object.entries(m.per_class || {}).filter(([, c]) => c.support > 0 && c.support < 5).map(([name]) => name);
  if (thin.length) {
    warnings.push(`Fewer than 5 validation images for ${thin.map((n) => `“${n}”`).join(", ")}: the scores of ${thin.length === 1 ? "that label" : "those labels"} are unreliable.`);
  }
  return h("div", { class: "stack" }, tiles,
    warnings.map((text) => h("p", { class: "notice notice-warn" }, icon("alert"), h("span", {}, text))));
}

// Each score in its own column and unit: accuracies as percentages, log loss in nats.
const DECISION_COLUMNS = {
  candidate: ["Candidate", (v) => v],
  cv_accuracy: ["CV accuracy (%)", (v) => percent(v)],
  cv_log_loss: ["CV log loss (nats)", (v) => v.toFixed(3)],
  seconds: ["Time (s)", (v) => v.toFixed(1)],
  kept: ["Kept", (v) => (v ? "kept" : "")],
  error: ["Not usable", (v) => v],
};

function decisionCard(decision) {
  const candidates = Array.isArray(decision.candidates) ? decision.candidates : [];
  const columns = Object.keys(DECISION_COLUMNS).filter((col) => candidates.some((c) => c && c[col] !== undefined && c[col] !== null && c[col] !== false));
  const cell = (col, value) => (value === undefined || value === null ? "—" : DECISION_COLUMNS[col][1](value));
  const table = candidates.length ? h("div", { class: "table-wrap" }, h("table", { class: "table table-compact", id: "decision-table" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c === "candidate" || c === "error" ? null : "num" }, DECISION_COLUMNS[c][0])))),
    h("tbody", {}, candidates.map((c) => h("tr", { class: c.kept ? "is-current" : null }, columns.map((col) => h("td", { class: col === "candidate" || col === "error" ? null : "num" }, cell(col, c[col])))))))) : null;
  return card("Why auto chose this", h("div", { class: "stack" }, h("p", { class: "decision" }, decision.reason || ""), table));
}

function perClassTable(metrics) {
  const rows = Object.entries(metrics.per_class || {});
  return h("div", { class: "table-wrap" }, h("table", { class: "table", id: "per-class" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Label"),
      h("th", { scope: "col", class: "num", title: "Of the images predicted as this label, how many were right" }, "Precision"),
      h("th", { scope: "col", class: "num", title: "Of the images of this label, how many were found" }, "Recall"),
      h("th", { scope: "col", class: "num" }, "F1"),
      h("th", { scope: "col", class: "num", title: "Validation images of this label" }, "Images"))),
    h("tbody", {}, rows.map(([name, c]) => h("tr", {},
      h("th", { scope: "row" }, name),
      h("td", { class: "num" }, percent(c.precision)),
      h("td", { class: "num" }, percent(c.recall)),
      h("td", { class: "num" }, percent(c.f1)),
      h("td", { class: "num" }, (c.support ?? 0).toLocaleString()))))));
}

function matrixTable(matrix, openCell) {
  // The same matrix as a table of buttons, for keyboards and screen readers.
  return h("details", { class: "matrix-table" }, h("summary", {}, "Show as a table"),
    h("div", { class: "table-wrap" }, h("table", { class: "table table-compact" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "True ↓ / predicted →"),
        matrix.labels.map((name) => h("th", { scope: "col", class: "num" }, name)))),
      h("tbody", {}, matrix.labels.map((trueName, i) => h("tr", {},
        h("th", { scope: "row" }, trueName),
        matrix.matrix[i].map((n, j) => h("td", { class: "num" },
          h("button", { type: "button", class: `cell-btn${i === j ? " is-diagonal" : ""}`,
            "aria-label": `${n} images of ${trueName} predicted as ${matrix.labels[j]}`,
            onclick: () => openCell(trueName, matrix.labels[j]) }, String(n))))))))));
}

function predictionTile(item, { showTrue = true, extra = null } = {}) {
  const wrong = !item.correct;
  const img = item.image_id
    ? h("a", { href: `/api/images/${item.image_id}/file`, target: "_blank", rel: "noopener", class: "pred-img",
      "aria-label": `Open ${item.filename}` },
    h("img", { src: `/api/images/${item.image_id}/thumbnail`, alt: "", loading: "lazy", width: 160, height: 160 }))
    : h("div", { class: "pred-img pred-img-missing" }, icon("image"));
  return h("li", { class: `pred${wrong ? " is-wrong" : ""}` }, img,
    h("div", { class: "pred-meta" },
      showTrue ? h("div", { class: "pred-true" }, h("span", { class: "muted" }, "True "), h("strong", {}, item.true_label)) : null,
      h("div", { class: "pred-guess" }, h("span", { class: "muted" }, "Predicted "), h("strong", {}, item.predicted_label),
        h("span", { class: "pred-conf" }, ` ${percent(item.confidence, 0)}`)),
      h("div", { class: "pred-file muted small", title: item.filename }, item.filename)),
    extra ? extra(item, img) : null);
}

const ARTIFACT_WORDS = {
  onnx: ["ONNX model", "Runs anywhere with ONNX Runtime (Python, C++, C#, JavaScript, mobile)."],
  "onnx-int8": ["ONNX model, int8", "A smaller, often faster copy of the ONNX model (8-bit weights and activations)."],
  torchscript: ["TorchScript", "For PyTorch and LibTorch (C++), no Python model code needed."],
  openvino: ["OpenVINO", "Fast inference on Intel CPUs and GPUs."],
  bundle: ["Everything (zip)", "The ONNX model, predict.py, labels, preprocessing, a README.md on how to run it, and the model card."],
};

// Which runtime and precision computed the features this model learnt from.
function runtimesNote(run) {
  const runtimes = Object.entries((run.metrics || {}).runtimes || {});
  if (!runtimes.length) return null;
  return h("p", { class: "muted small", id: "runtimes-used" },
    runtimes.map(([backbone, used]) => `Features of ${backbone}: training images with ${used.train}, validation images with ${used.held_out} (as the downloaded model runs). ${used.reason}.`).join(" "));
}

function downloadsCard(run) {
  const artifacts = run.artifacts || [];
  const body = artifacts.length
    ? h("ul", { class: "downloads" }, artifacts.map((a) => {
      const [title, generic] = ARTIFACT_WORDS[a.format] || [a.format, ""];
      // The int8 copy says what it costs: its accuracy against fp32 on the validation images.
      const int8 = (run.metrics || {}).int8;
      const words = a.format === "onnx-int8" && int8 ? `${int8.summary} on ${plural(int8.n_val, "validation image")}.` : generic;
      return h("li", {},
        h("a", { class: "download", href: a.url, download: a.filename, dataset: { format: a.format } },
          icon("download"),
          h("span", { class: "download-text" }, h("strong", {}, title), h("span", { class: "muted small" }, words)),
          h("span", { class: "download-size muted small", title: `SHA-256 ${a.sha256}` }, `${a.filename} · ${bytes(a.size_bytes)}`)));
    }))
    : h("p", { class: "muted" }, "This run has no model files.");
  const pending = (run.metrics || {}).exports_pending || [];
  const note = pending.length
    ? h("p", { class: "muted small", id: "exports-pending" },
      `Preparing ${pending.map((f) => (ARTIFACT_WORDS[f] || [f])[0]).join(" and ")}…`)
    : null;
  const failed = Object.keys((run.metrics || {}).export_errors || {});
  const error = failed.length
    ? h("p", { class: "muted small" },
      `Could not prepare: ${failed.map((f) => (ARTIFACT_WORDS[f] || [f])[0]).join(", ")}. The ONNX model is complete.`)
    : null;
  const element = card("Download the model", h("div", {}, body, note, error, runtimesNote(run)), { id: "downloads" });
  if (pending.length) {
    // TorchScript and the bundle are finished a few seconds after the run: check back.
    setTimeout(async () => {
      const fresh = await api(`/runs/${run.id}`).catch(() => null);
      if (fresh && element.isConnected) element.replaceWith(downloadsCard(fresh));
    }, 2000);
  }
  return element;
}

export async function renderDashboard(container, run, { plotlyUrl, cellDialog }) {
  const metrics = run.metrics || {};
  const [predictions, Plotly] = await Promise.all([
    api(`/runs/${run.id}/predictions`).catch(() => ({ labels: [], items: [] })),
    loadPlotly(plotlyUrl).catch(() => null),
  ]);
  const held = predictions.items.filter((item) => item.split === metrics.eval_split);
  // Where the model looked (a heatmap overlay), and fix where found: relabel, move or
  // delete the image from its tile (with Undo).
  const extra = (item, frame) => h("div", { class: "pred-tools" },
    heatmapToggle(run.id, item, frame), predictionFixes(item, { projectId: run.project_id }));

  const openCell = (trueName, predicted) => {
    const items = held.filter((item) => item.true_label === trueName && item.predicted_label === predicted);
    replace(document.getElementById("cell-title"),
      `${plural(items.length, "image")} of “${trueName}” predicted as “${predicted}”`);
    replace(document.getElementById("cell-images"), items.length
      ? items.map((item) => predictionTile(item, { showTrue: false, extra }))
      : h("li", { class: "muted" }, "No images in this cell."));
    cellDialog.showModal();
  };

  const heat = h("div", { class: "chart", id: "confusion-chart", role: "img",
    "aria-label": "Confusion matrix; the table version is below" });
  const runsTbody = h("tbody");
  const compareLink = h("a", { class: "btn btn-sm is-disabled", id: "compare-runs", href: "#", "aria-disabled": "true" });
  const comparison = h("section", { class: "card", id: "comparison", "aria-label": "All runs of this project" },
    h("div", { class: "card-head" }, h("h2", {}, "All runs of this project"), compareLink),
    h("div", { class: "table-wrap" }, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "pick" }, h("span", { class: "visually-hidden" }, "Compare")),
        ["Run", "Mode", "Backbone", "Status", "Accuracy", "Time", "Started"].map((t) =>
          h("th", { scope: "col", class: t === "Accuracy" || t === "Time" ? "num" : null }, t)))),
      runsTbody)));

  const mistakes = held.filter((item) => !item.correct).sort((a, b) => b.confidence - a.confidence);
  const history = Array.isArray(run.history) ? run.history : [];
  const lossChart = h("div", { class: "chart", role: "img", "aria-label": "Training and validation loss per epoch" });
  const accChart = h("div", { class: "chart", role: "img", "aria-label": "Validation accuracy per epoch" });

  replace(container,
    headline(run),
    run.decision ? decisionCard(run.decision) : null,
    h("div", { class: "grid-2 grid-dash" },
      card("Confusion matrix", h("div", { class: "stack" },
        h("p", { class: "muted small" }, "Rows are the true labels, columns what the model said. Click a cell to see its images."),
        Plotly ? heat : h("p", { class: "notice notice-warn" }, "The chart library did not load; use the table below."),
        matrixTable(metrics.confusion_matrix || { labels: [], matrix: [] }, openCell)), { id: "confusion" }),
      card("Per label", perClassTable(metrics), { id: "per-class-card" })),
    card(mistakes.length ? `Mistakes (${mistakes.length})` : "Mistakes", mistakes.length
      ? h("div", { class: "stack" },
        h("p", { class: "muted small" }, "Validation images the model got wrong, most confident first."),
        h("ul", { class: "preds" }, mistakes.slice(0, MISTAKES_SHOWN).map((item) => predictionTile(item, { extra }))),
        mistakes.length > MISTAKES_SHOWN ? h("p", { class: "muted small" }, `…and ${mistakes.length - MISTAKES_SHOWN} more; open the confusion matrix cells to see them.`) : null)
      : h("p", { class: "muted" }, held.length ? "No mistakes on the validation images." : "No per-image predictions were recorded."),
    { id: "mistakes" }),
    history.length && Plotly ? card("Training curves", h("div", { class: "grid-2" }, lossChart, accChart), { id: "curves" }) : null,
    h("div", { class: "grid-2 grid-dash" }, downloadsCard(run), tryModelCard(run)),
    deployCard(run),
    comparison,
    metrics.timings ? timingsCard(metrics.timings) : null);

  if (Plotly && metrics.confusion_matrix?.labels?.length) {
    confusionHeatmap(Plotly, heat, metrics.confusion_matrix, openCell);
  }
  if (Plotly && history.length) {
    const epochs = history.map((e) => e.epoch);
    lineChart(Plotly, lossChart, { yTitle: "Loss", series: [
      { name: "train", x: epochs, y: history.map((e) => e.train_loss), color: "#a1a1aa" },
      { name: "validation", x: epochs, y: history.map((e) => e.val_loss), color: "#4f46e5" },
    ] });
    lineChart(Plotly, accChart, { yTitle: "Validation accuracy", percent: true, series: [
      { name: "validation accuracy", x: epochs, y: history.map((e) => e.val_accuracy), color: "#16a34a" },
    ] });
  }
  new RunsTable({ projectId: run.project_id, section: comparison, tbody: runsTbody, currentRunId: run.id, compareLink }).refresh();
}

function timingsCard(timings) {
  const entries = Object.entries(timings).filter(([, v]) => typeof v === "number");
  if (!entries.length) return null;
  return card("Where the time went", h("dl", { class: "timings" }, entries.map(([key, value]) =>
    h("div", {}, h("dt", {}, key.replace(/_s$/, "").replaceAll("_", " ")), h("dd", {}, duration(value))))));
}
