// Charts (Chart.js): a canvas component that follows its data, and the two charts the pages use:
// versions across the fleet (bars) and a job's progress over time (lines). Animation is off: the data
// is live and the page is tested in a real browser.

import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import { Chart, registerables } from "chart.js";

Chart.register(...registerables);
Chart.defaults.animation = false;
Chart.defaults.font.family = "system-ui, sans-serif";

const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563", "#db2777"];

export function ChartView({ type, data, options, label, id }) {
  const canvas = useRef(null);
  const chart = useRef(null);
  useEffect(() => {
    chart.current = new Chart(canvas.current, {
      type, data, options: { responsive: true, maintainAspectRatio: false, ...options },
    });
    return () => chart.current.destroy();
  }, [type]);
  useEffect(() => {
    if (!chart.current) return;
    chart.current.data = data;
    chart.current.update("none");
  }, [data]);
  return html`<div class="chart" id=${id}><canvas ref=${canvas} role="img" aria-label=${label}></canvas></div>`;
}

// devices: [{model, apps}] -> one bar per app@version, stacked by model
export function VersionsChart({ devices }) {
  const labels = [...new Set(devices.flatMap((d) => Object.entries(d.apps || {}).map(([a, v]) => `${a}@${v}`)))].sort();
  const models = [...new Set(devices.map((d) => d.model))].sort();
  const datasets = models.map((model, i) => ({
    label: model,
    backgroundColor: PALETTE[i % PALETTE.length],
    data: labels.map((label) => devices.filter((d) => d.model === model &&
      Object.entries(d.apps || {}).some(([a, v]) => `${a}@${v}` === label)).length),
  }));
  if (!labels.length) return html`<p class="muted">no device has reported an installed app yet</p>`;
  return html`<${ChartView} id="versions-chart" type="bar" label="installed versions across the fleet"
    data=${{ labels, datasets }}
    options=${{ scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 },
                          title: { display: true, text: "devices" } } },
                plugins: { title: { display: true, text: "Installed versions (devices per app@version, by model)" } } }} />`;
}

// samples: [{t (seconds since the page opened), percent, succeeded, failed}]
export function ProgressChart({ samples }) {
  const data = {
    datasets: [
      { label: "bytes delivered %", data: samples.map((s) => ({ x: s.t, y: s.percent })),
        borderColor: PALETTE[0], backgroundColor: PALETTE[0], yAxisID: "y", pointRadius: 0, stepped: false },
      { label: "succeeded devices", data: samples.map((s) => ({ x: s.t, y: s.succeeded })),
        borderColor: PALETTE[1], backgroundColor: PALETTE[1], yAxisID: "devices", pointRadius: 0, stepped: true },
      { label: "failed devices", data: samples.map((s) => ({ x: s.t, y: s.failed })),
        borderColor: PALETTE[4], backgroundColor: PALETTE[4], yAxisID: "devices", pointRadius: 0, stepped: true },
    ],
  };
  return html`<${ChartView} id="progress-chart" type="line" label="job progress over time" data=${data}
    options=${{ parsing: false, scales: {
      x: { type: "linear", title: { display: true, text: "seconds since this page opened" } },
      y: { min: 0, max: 100, title: { display: true, text: "%" } },
      devices: { position: "right", beginAtZero: true, ticks: { precision: 0 }, grid: { drawOnChartArea: false } } },
      plugins: { title: { display: true, text: "Progress over time" } } }} />`;
}
