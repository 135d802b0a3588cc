// Plotly, loaded on demand from the app itself (the installed Python package), never a CDN.

let loading = null;

export function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("The chart library could not be loaded."));
      document.head.append(script);
    });
  }
  return loading;
}

/** Plotly reads a few HTML-like tags in text; entities keep user text literal. */
export function plotText(value) {
  return String(value).replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

const FONT = { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#3f3f46" };
const CONFIG = { displayModeBar: false, responsive: true };

function baseLayout(extra) {
  return {
    font: FONT,
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 60, r: 16, t: 16, b: 56 },
    ...extra,
  };
}

/**
 * A confusion matrix: rows are true labels, columns predictions; colour is the share of the row
 * (recall), so a rare label's mistakes are as visible as a common one's.
 */
export function confusionHeatmap(Plotly, el, { labels, matrix }, onCell) {
  const names = labels.map(plotText);
  const shares = matrix.map((row) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return row.map((n) => n / total);
  });
  const hover = matrix.map((row, i) => row.map((n, j) =>
    `True <b>${names[i]}</b>, predicted <b>${names[j]}</b><br>${n} image${n === 1 ? "" : "s"} (${Math.round(shares[i][j] * 100)}% of ${names[i]})`));
  const trace = {
    type: "heatmap",
    z: shares,
    x: names,
    y: names,
    text: matrix.map((row) => row.map(String)),
    texttemplate: "%{text}",
    textfont: { size: 14 },
    customdata: hover,
    hovertemplate: "%{customdata}<extra></extra>",
    colorscale: [[0, "#f4f4f5"], [0.5, "#a5b4fc"], [1, "#4338ca"]],
    zmin: 0,
    zmax: 1,
    showscale: false,
    xgap: 2,
    ygap: 2,
  };
  const size = Math.max(280, Math.min(560, 90 * labels.length + 110));
  // Long names are shortened on the axes (hover shows them whole); automargin keeps them visible.
  const short = labels.map((name) => plotText(name.length > 18 ? `${name.slice(0, 17)}…` : name));
  const axis = { type: "category", automargin: true, tickvals: names, ticktext: short };
  const layout = baseLayout({
    height: size,
    margin: { l: 16, r: 8, t: 8, b: 16 },
    xaxis: { ...axis, title: { text: "Predicted" }, side: "bottom", tickangle: labels.length > 3 ? -30 : 0 },
    yaxis: { ...axis, title: { text: "True" }, autorange: "reversed" },
  });
  Plotly.newPlot(el, [trace], layout, CONFIG);
  el.on("plotly_click", (event) => {
    const point = event.points?.[0];
    if (!point) return;
    const row = Array.isArray(point.pointIndex) ? point.pointIndex[0] : point.pointNumber[0];
    const col = Array.isArray(point.pointIndex) ? point.pointIndex[1] : point.pointNumber[1];
    onCell(labels[row], labels[col]);
  });
}

export function lineChart(Plotly, el, { series, yTitle, percent = false }) {
  const traces = series.map((s) => ({
    type: "scatter", mode: "lines+markers", name: plotText(s.name), x: s.x, y: s.y,
    line: { color: s.color, width: 2 }, marker: { size: 5 },
  }));
  const layout = baseLayout({
    height: 260,
    xaxis: { title: { text: "Epoch" }, dtick: 1, gridcolor: "#f4f4f5" },
    yaxis: { title: { text: yTitle }, gridcolor: "#f4f4f5", tickformat: percent ? ".0%" : undefined, rangemode: "tozero" },
    legend: { orientation: "h", y: 1.12 },
    margin: { l: 56, r: 16, t: 24, b: 48 },
  });
  Plotly.newPlot(el, traces, layout, CONFIG);
}
