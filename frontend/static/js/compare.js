// 2–4 finished runs side by side: headline scores with their 95% ranges, per-label scores with
// the differences that matter highlighted, confusion matrices next to each other, curves overlaid.

import { api } from "./api.js";
import { confusionHeatmap, lineChart, loadPlotly } from "./charts.js";
import { h, replace } from "./dom.js";
import { duration, MODE_NAMES, percent, plural, renamedWords } from "./format.js";
import { MAX_COMPARED, runTitle } from "./runs.js";

const app = document.getElementById("compare-app");
const projectId = Number(app.dataset.projectId);
const view = document.getElementById("comparison-view");
const errorBox = document.getElementById("compare-error");
const COLORS = ["#4f46e5", "#16a34a", "#ea580c", "#db2777"];
// A per-label difference below this is noise on a few dozen validation images.
const NOTABLE = 0.05;

function requestedIds() {
  const raw = new URLSearchParams(window.location.search).get("runs") || "";
  const ids = [...new Set(raw.split(",").map((part) => Number(part.trim())).filter((n) => Number.isInteger(n) && n > 0))];
  return ids.slice(0, MAX_COMPARED);
}

function fail(message) {
  replace(errorBox, message, " ", h("a", { href: `/projects/${projectId}` }, "Pick runs on the project page."));
  errorBox.hidden = false;
  replace(document.getElementById("compare-summary"), "");
}

function card(title, body, id) {
  return h("section", { class: "card", id, "aria-label": title }, h("div", { class: "card-head" }, h("h2", {}, title)), body);
}

function runHead(run, i) {
  return h("th", { scope: "col", class: "compare-run" },
    h("span", { class: "swatch", style: { background: COLORS[i] }, "aria-hidden": "true" }),
    h("a", { href: `/runs/${run.id}` }, runTitle(run)),
    h("div", { class: "muted small" }, `${MODE_NAMES[run.mode] || run.mode} · `, h("span", { class: "mono" }, run.backbone),
      run.mode !== "finetune" && run.options?.head ? ` · ${run.options.head}` : ""));
}

/** Indexes of the highest value (ties all win); none when every value is equal. */
function best(values) {
  const numbers = values.filter((v) => typeof v === "number");
  if (numbers.length < 2) return new Set();
  const top = Math.max(...numbers);
  if (numbers.every((v) => v === top)) return new Set();
  return new Set(values.flatMap((v, i) => (v === top ? [i] : [])));
}

function headlineTable(runs) {
  const rows = [
    ["Accuracy", (m) => m.accuracy, (m) => h("span", {}, h("strong", {}, percent(m.accuracy)),
      h("span", { class: "muted small interval" }, ` 95% range ${percent(m.accuracy_interval[0], 0)}–${percent(m.accuracy_interval[1], 0)}`))],
    ["Balanced accuracy", (m) => m.balanced_accuracy, (m) => percent(m.balanced_accuracy)],
    ["Macro F1", (m) => m.macro_f1, (m) => percent(m.macro_f1)],
    ["Checked on", null, (m) => plural(m.n_images, "validation image")],
    ["Trained on", null, (m) => plural(m.n_train, "image")],
  ];
  const body = rows.map(([name, value, show]) => {
    const winners = value ? best(runs.map((r) => value(r.metrics))) : new Set();
    return h("tr", {}, h("th", { scope: "row" }, name),
      runs.map((r, i) => h("td", { class: winners.has(i) ? "is-best" : null }, show(r.metrics))));
  });
  body.push(h("tr", {}, h("th", { scope: "row" }, "Time"), runs.map((r) => h("td", {}, duration(r.duration_s)))));
  const accuracies = runs.map((r) => r.metrics.accuracy);
  const top = runs[accuracies.indexOf(Math.max(...accuracies))];
  const overlapping = runs.filter((r) => r !== top && r.metrics.accuracy_interval[1] >= top.metrics.accuracy_interval[0]);
  const tied = accuracies.every((a) => a === accuracies[0]);
  const note = tied
    ? `All ${runs.length} runs score the same accuracy on these validation images; the per-label scores below may still differ.`
    : overlapping.length
    ? `${runTitle(top)} scores highest, but its 95% range overlaps ${overlapping.map(runTitle).join(", ")}: on these validation images the difference may be luck. More validation images would tell them apart.`
    : `${runTitle(top)} scores highest, and its 95% range does not overlap the others'.`;
  return card("Headline", h("div", { class: "stack" },
    h("div", { class: "table-wrap" }, h("table", { class: "table compare-table", id: "compare-headline" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Score"), runs.map(runHead))), h("tbody", {}, body))),
    h("p", { class: "muted small", id: "compare-verdict" }, note)), "compare-headline-card");
}

/** A run's per-label scores under the labels' names now (a label renamed since it trained). */
function perClassNow(run) {
  const renamed = run.renamed_labels || {};
  return Object.fromEntries(Object.entries(run.metrics.per_class || {}).map(([name, s]) => [renamed[name] || name, s]));
}

function perClassTable(runs) {
  const current = runs.map(perClassNow);
  const labels = [...new Set(current.flatMap((scores) => Object.keys(scores)))];
  const body = labels.map((label) => {
    const scores = current.map((c) => c[label]);
    const f1 = scores.map((s) => (s ? s.f1 : null));
    const known = f1.filter((v) => v !== null);
    const spread = known.length > 1 ? Math.max(...known) - Math.min(...known) : 0;
    const notable = spread >= NOTABLE;
    const winners = notable ? best(f1) : new Set();
    return h("tr", { class: notable ? "is-different" : null, dataset: { label } },
      h("th", { scope: "row" }, label),
      scores.map((s, i) => h("td", { class: winners.has(i) ? "is-best" : null }, s
        ? [h("strong", {}, percent(s.f1)), h("div", { class: "muted small" }, `P ${percent(s.precision, 0)} · R ${percent(s.recall, 0)}`)]
        : "—")),
      h("td", { class: "num spread" }, known.length > 1 ? `${(spread * 100).toFixed(1)} pts` : "—"));
  });
  const renamed = runs.filter((r) => renamedWords(r).length).map((r) =>
    h("li", {}, `${runTitle(r)}: ${renamedWords(r).join("; ")}`));
  return card("Per label (F1, with precision and recall)", h("div", { class: "stack" },
    renamed.length ? h("div", { class: "muted small renamed-hint", id: "compare-renamed" },
      "Labels renamed since some runs trained; their rows are under the names the labels have now:", h("ul", {}, renamed)) : null,
    h("p", { class: "muted small" }, `Rows where the runs differ by ${NOTABLE * 100} points of F1 or more are highlighted; the best run of such a row is in bold green.`),
    h("div", { class: "table-wrap" }, h("table", { class: "table compare-table", id: "compare-per-class" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Label"), runs.map(runHead),
        h("th", { scope: "col", class: "num" }, "Difference"))),
      h("tbody", {}, body)))), "compare-per-class-card");
}

function matricesCard(runs, Plotly) {
  const charts = runs.map((run, i) => {
    const el = h("div", { class: "chart compare-matrix", role: "img", "aria-label": `Confusion matrix of ${runTitle(run)}` });
    return { run, el, figure: h("figure", { class: "compare-figure" },
      h("figcaption", {}, h("span", { class: "swatch", style: { background: COLORS[i] }, "aria-hidden": "true" }), runTitle(run)), el) };
  });
  const section = card("Confusion matrices", h("div", { class: `compare-grid compare-grid-${runs.length}` },
    charts.map((c) => c.figure)), "compare-matrices");
  return { section, draw: () => {
    for (const { run, el } of charts) {
      if (run.metrics.confusion_matrix?.labels?.length) confusionHeatmap(Plotly, el, run.metrics.confusion_matrix, () => {});
    }
  } };
}

function curvesCard(runs, Plotly) {
  const trained = runs.map((run, i) => ({ run, color: COLORS[i], history: Array.isArray(run.history) ? run.history : [] }));
  const withCurves = trained.filter((t) => t.history.length);
  const missing = trained.filter((t) => !t.history.length).map((t) => runTitle(t.run));
  const note = missing.length
    ? h("p", { class: "muted small" }, `${missing.join(", ")} trained no epochs (a quick run fits its classifier in one step), so ${missing.length === 1 ? "it has" : "they have"} no curve.`)
    : null;
  if (!withCurves.length) return { section: card("Training curves", note, "compare-curves"), draw: () => {} };
  const accuracy = h("div", { class: "chart", role: "img", "aria-label": "Validation accuracy per epoch, one line per run" });
  const loss = h("div", { class: "chart", role: "img", "aria-label": "Validation loss per epoch, one line per run" });
  const series = (key) => withCurves.map((t) => ({ name: runTitle(t.run), color: t.color,
    x: t.history.map((e) => e.epoch), y: t.history.map((e) => e[key]) }));
  return {
    section: card("Training curves", h("div", { class: "stack" }, h("div", { class: "grid-2" }, accuracy, loss), note), "compare-curves"),
    draw: () => {
      lineChart(Plotly, accuracy, { yTitle: "Validation accuracy", percent: true, series: series("val_accuracy") });
      lineChart(Plotly, loss, { yTitle: "Validation loss", series: series("val_loss") });
    },
  };
}

async function main() {
  const ids = requestedIds();
  if (ids.length < 2) {
    fail("Choose between 2 and 4 runs to compare.");
    return;
  }
  const answers = await Promise.allSettled(ids.map((id) => api(`/runs/${id}`)));
  const runs = [];
  const problems = [];
  answers.forEach((answer, i) => {
    if (answer.status === "rejected") problems.push(`Run #${ids[i]}: ${answer.reason.message}`);
    else if (answer.value.project_id !== projectId) problems.push(`Run #${ids[i]} belongs to another project.`);
    else if (answer.value.status !== "succeeded" || !answer.value.metrics) problems.push(`${runTitle(answer.value)} has no results (${answer.value.status}).`);
    else runs.push(answer.value);
  });
  if (problems.length) {
    replace(errorBox, problems.join(" "));
    errorBox.hidden = false;
  }
  if (runs.length < 2) {
    fail(problems.length ? "Fewer than two of these runs can be compared." : "Choose between 2 and 4 runs to compare.");
    if (problems.length) errorBox.prepend(`${problems.join(" ")} `);
    return;
  }
  replace(document.getElementById("compare-summary"), `${plural(runs.length, "run")} side by side, scored on their validation images`);
  // The tables first; the charts once the chart library (a few MB) has loaded.
  const charts = h("div", { id: "compare-charts" }, h("p", { class: "muted" }, "Loading the charts…"));
  replace(view, headlineTable(runs), perClassTable(runs), charts);
  const Plotly = await loadPlotly(app.dataset.plotlyUrl).catch(() => null);
  if (!Plotly) {
    replace(charts, h("p", { class: "notice notice-warn" }, "The chart library did not load: the matrices and curves are not shown."));
    return;
  }
  const parts = [matricesCard(runs, Plotly), curvesCard(runs, Plotly)];
  replace(charts, parts.map((p) => p.section));
  for (const part of parts) part.draw();
}

main().catch((error) => fail(error.message));
