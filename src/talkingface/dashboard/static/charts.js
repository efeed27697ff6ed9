// Small inline-SVG charts for the operate page: lines (with gaps for empty buckets) and
// stacked bars, each a <figure> with a caption, a legend and a text summary for screen readers.
import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 560;
const H = 180;
const M = { left: 52, right: 10, top: 10, bottom: 24 };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  for (const child of children) if (child) el.append(child);
  return el;
}

const TICKS = 4;

// The top of the axis: four round steps (1, 2, 2.5 or 5 × 10^k) that reach the value;
// whole steps for counts.
function niceMax(value, integer = false) {
  if (!(value > 0)) return integer ? TICKS : 1;
  const wanted = value / TICKS;
  const power = 10 ** Math.floor(Math.log10(wanted));
  const steps = [1, 2, 2.5, 5, 10].map((f) => f * power).filter((step) => !integer || Number.isInteger(step));
  const step = steps.find((candidate) => candidate >= wanted) ?? Math.ceil(wanted);
  return Math.max(integer ? 1 : 0, step) * TICKS;
}

function timeLabel(date, spanMs) {
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return spanMs > 36 * 3600e3 ? `${date.getMonth() + 1}/${date.getDate()} ${clock}` : clock;
}

function frame(times, yMax, format) {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const slot = plotW / Math.max(1, times.length);
  const x = (i) => M.left + (i + 0.5) * slot; // the middle of bucket i
  const y = (v) => M.top + plotH - (v / yMax) * plotH;
  const grid = s("g", { class: "grid" });
  for (let k = 0; k <= TICKS; k++) {
    const v = (yMax * k) / TICKS;
    grid.append(s("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    const label = s("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = format(v);
    grid.append(label);
  }
  const span = times.length ? times[times.length - 1] - times[0] : 0;
  for (const i of [0, Math.floor((times.length - 1) / 2), times.length - 1]) {
    if (i < 0 || !times[i]) continue;
    const label = s("text", { x: x(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === times.length - 1 ? "end" : "middle" });
    label.textContent = timeLabel(times[i], span);
    grid.append(label);
  }
  return { x, y, grid, barW: Math.max(2, slot - 2) };
}

function figure(title, summary, svg, series) {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}. ${summary}`);
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    svg,
    h("ul", { class: "legend" }, series.map((one, i) => h("li", {}, h("span", { class: `swatch series-${one.color ?? i}`, "aria-hidden": "true" }), one.name))),
  );
}

// lineChart(title, times: Date[], series: [{name, values: (number|null)[]}], {format, yMax, summary})
export function lineChart(title, times, series, { format = String, yMax, summary = "" } = {}) {
  const top = yMax ?? niceMax(Math.max(0, ...series.flatMap((one) => one.values.filter((v) => v !== null))));
  const { x, y, grid } = frame(times, top, format);
  const svg = s("svg", {}, grid);
  series.forEach((one, i) => {
    let d = "";
    let pen = false;
    one.values.forEach((v, k) => {
      if (v === null || v === undefined) return (pen = false);
      d += `${pen ? "L" : "M"}${x(k).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    svg.append(s("path", { d, class: `line series-${one.color ?? i}` }));
    one.values.forEach((v, k) => v !== null && v !== undefined && svg.append(s("circle", { cx: x(k), cy: y(v), r: 2.5, class: `dot series-${one.color ?? i}` })));
  });
  return figure(title, summary, svg, series);
}

// barChart(title, times, series) of counts, the series stacked in each bucket.
export function barChart(title, times, series, { format = String, summary = "" } = {}) {
  const totals = times.map((_, k) => series.reduce((sum, one) => sum + (one.values[k] || 0), 0));
  const { x, y, grid, barW } = frame(times, niceMax(Math.max(0, ...totals), true), format);
  const svg = s("svg", {}, grid);
  times.forEach((_, k) => {
    let base = 0;
    series.forEach((one, i) => {
      const v = one.values[k] || 0;
      if (!v) return;
      svg.append(s("rect", { x: x(k) - barW / 2, y: y(base + v), width: barW, height: y(base) - y(base + v), class: `bar series-${one.color ?? i}` }));
      base += v;
    });
  });
  return figure(title, summary, svg, series);
}
