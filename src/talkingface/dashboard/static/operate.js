// #/operate: charts over time (GET /v1/stats/history), workers, alerts, pause and resume.
import { api } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { clear, errorText, fmtPercent, fmtSeconds, fmtTime, h, notice, shortId } from "./dom.js";
import { t } from "./i18n.js";
import { listen, queueSnapshot } from "./live.js";

const REFRESH_MS = 15000; // figures over hours: a refresh every 15 s is plenty
const WINDOWS = { "1": 5, "24": 60, "168": 360 }; // hours → bucket minutes
let root = null;
let hours = "24";
let timer = null;
let stopListening = null;

export function enter(container) {
  root = container;
  render();
  stopListening = listen((kind, queue) => kind === "queue" && renderQueue(queue));
  load();
  timer = setInterval(load, REFRESH_MS);
}

export function leave() {
  clearInterval(timer);
  if (stopListening) stopListening();
  root = null;
}

export function refresh() {
  render();
  load();
}

function render() {
  clear(
    root,
    h("h1", {}, t("operate.title")),
    h("div", { id: "operate-notice", "aria-live": "polite" }),
    h("section", { class: "card queue-card", "aria-labelledby": "queue-title" }, h("h2", { id: "queue-title" }, t("operate.queue")), h("div", { id: "queue-box" })),
    h("section", { class: "card", "aria-labelledby": "charts-title" },
      h("div", { class: "row" }, h("h2", { id: "charts-title" }, t("operate.charts")),
        h("label", { for: "window" }, t("operate.window")),
        h("select", { id: "window", onchange: (e) => { hours = e.target.value; load(); } },
          Object.keys(WINDOWS).map((v) => h("option", { value: v, selected: v === hours }, t(`operate.window.${v}`))))),
      h("div", { id: "totals", class: "totals" }),
      h("div", { id: "charts", class: "charts" })),
    h("div", { class: "detail-grid" },
      h("section", { class: "card", "aria-labelledby": "workers-title" }, h("h2", { id: "workers-title" }, t("operate.workers")), h("div", { id: "workers" })),
      h("section", { class: "card", "aria-labelledby": "alerts-title" }, h("h2", { id: "alerts-title" }, t("operate.alerts")), h("div", { id: "alerts" }))),
  );
  renderQueue(queueSnapshot());
}

async function load() {
  const view = root;
  const results = await Promise.allSettled([
    api(`/v1/stats/history?hours=${hours}&bucket_minutes=${WINDOWS[hours]}`),
    api("/v1/workers"),
    api("/v1/alerts"),
    api("/v1/queue"),
  ]);
  if (!root || root !== view) return;
  const [history, workers, alerts, queue] = results;
  const failed = results.find((r) => r.status === "rejected");
  notice(root.querySelector("#operate-notice"), failed ? errorText(failed.reason) : "", "error");
  if (history.status === "fulfilled") renderCharts(history.value);
  if (workers.status === "fulfilled") renderWorkers(workers.value);
  if (alerts.status === "fulfilled") renderAlerts(alerts.value);
  if (queue.status === "fulfilled") renderQueue({ ...queueSnapshot(), ...queue.value });
}

function renderQueue(queue) {
  const box = root && root.querySelector("#queue-box");
  if (!box) return;
  const paused = Boolean(queue.paused);
  const toggle = async () => {
    try {
      const answer = await api(`/v1/queue/${paused ? "resume" : "pause"}`, { method: "POST" });
      renderQueue({ ...queue, paused: answer.paused });
    } catch (err) {
      notice(root.querySelector("#operate-notice"), errorText(err), "error");
    }
  };
  clear(
    box,
    h("div", { class: "row" },
      h("span", { id: "queue-state", class: `badge ${paused ? "state-failed" : "state-succeeded"}` }, t(paused ? "operate.paused" : "operate.dispatching")),
      h("span", {}, t("operate.counts", { queued: queue.queued ?? (queue.items || []).length, running: queue.running ?? (queue.running_items || []).length })),
      h("button", { id: "pause-toggle", type: "button", class: paused ? "primary" : "", onclick: toggle }, t(paused ? "operate.resume" : "operate.pause"))),
    h("p", { class: "hint" }, t(paused ? "operate.paused.hint" : "operate.pause.hint")),
  );
}

function totals(all) {
  const card = (key, text) => h("div", { class: "stat" }, h("span", { class: "stat-value" }, text), h("span", { class: "stat-name" }, t(key)));
  return [
    card("operate.total.succeeded", String(all.succeeded)),
    card("operate.total.failed", String(all.failed)),
    card("operate.total.canceled", String(all.canceled)),
    card("operate.total.rate", fmtPercent(all.success_rate)),
    card("operate.total.duration", fmtSeconds(all.duration_s && all.duration_s.p50)),
    card("operate.total.wait", fmtSeconds(all.queue_wait_s && all.queue_wait_s.p50)),
  ];
}

function renderCharts(history) {
  const buckets = history.buckets || [];
  const times = buckets.map((b) => new Date(b.start));
  const pick = (f) => buckets.map((b) => f(b) ?? null);
  const seconds = (v) => fmtSeconds(v);
  const codes = [...new Set(buckets.flatMap((b) => Object.keys(b.errors_by_code || {})))].sort();
  const all = history.totals || {};
  clear(root.querySelector("#totals"), totals(all));
  clear(
    root.querySelector("#charts"),
    lineChart(t("chart.success"), times, [{ name: t("chart.success.series"), values: pick((b) => b.success_rate) }], { yMax: 1, format: (v) => fmtPercent(v), summary: t("chart.summary", { value: fmtPercent(all.success_rate) }) }),
    barChart(t("chart.throughput"), times, [{ name: t("chart.throughput.series"), values: pick((b) => b.succeeded), color: 2 }], { format: (v) => String(Math.round(v * 10) / 10), summary: t("chart.summary", { value: all.succeeded ?? 0 }) }),
    lineChart(t("chart.duration"), times, [{ name: "p50", values: pick((b) => b.duration_s && b.duration_s.p50) }, { name: "p90", values: pick((b) => b.duration_s && b.duration_s.p90), color: 1 }], { format: seconds, summary: t("chart.summary", { value: seconds(all.duration_s && all.duration_s.p50) }) }),
    lineChart(t("chart.wait"), times, [{ name: "p50", values: pick((b) => b.queue_wait_s && b.queue_wait_s.p50) }, { name: "p90", values: pick((b) => b.queue_wait_s && b.queue_wait_s.p90), color: 1 }], { format: seconds, summary: t("chart.summary", { value: seconds(all.queue_wait_s && all.queue_wait_s.p50) }) }),
    barChart(t("chart.errors"), times, codes.map((code, i) => ({ name: code, values: pick((b) => (b.errors_by_code || {})[code] || 0), color: (i + 1) % 6 })), { format: (v) => String(Math.round(v)), summary: t("chart.summary", { value: all.failed ?? 0 }) }),
  );
}

function renderWorkers(workers) {
  clear(
    root.querySelector("#workers"),
    workers.length
      ? h("table", { class: "workers" },
          h("thead", {}, h("tr", {}, ["operate.w.id", "operate.w.pid", "operate.w.state", "operate.w.job", "operate.w.done", "operate.w.uptime"].map((k) => h("th", { scope: "col" }, t(k))))),
          h("tbody", {}, workers.map((w) => h("tr", {},
            h("td", { class: "mono" }, w.id), h("td", { class: "num" }, w.pid ?? "—"),
            h("td", {}, h("span", { class: `badge worker-${w.state}` }, t(`worker.${w.state}`))),
            h("td", {}, w.job_id ? h("a", { href: `#/jobs/${w.job_id}`, class: "mono" }, shortId(w.job_id)) : "—"),
            h("td", { class: "num" }, w.jobs_done ?? "—"), h("td", {}, fmtSeconds(w.uptime_s))))))
      : h("p", { class: "muted" }, t("operate.noworkers")),
  );
}

function renderAlerts(alerts) {
  const active = alerts.active || [];
  const history = (alerts.history || []).slice(-10).reverse();
  clear(
    root.querySelector("#alerts"),
    active.length
      ? h("ul", { class: "alerts" }, active.map((a) => h("li", { class: "notice error" }, h("strong", {}, a.rule), " ", a.message, " ", h("span", { class: "muted small" }, fmtTime(a.at || a.since)))))
      : h("p", { class: "muted" }, t("operate.noalerts")),
    history.length ? h("details", {}, h("summary", {}, t("operate.alerthistory")), h("ul", {}, history.map((a) => h("li", {}, fmtTime(a.at), " ", a.rule, " ", t(`alert.${a.state}`), " ", a.message)))) : null,
  );
}
