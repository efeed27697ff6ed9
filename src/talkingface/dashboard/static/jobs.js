// #/jobs: the job list, live over the page's one stream, with filters and row actions.
import { api } from "./api.js";
import { jobActions, priorityControl } from "./actions.js";
import { clear, errorText, fmtSeconds, fmtTime, h, notice, progressBar, shortId, stateBadge } from "./dom.js";
import { t } from "./i18n.js";
import { lowSyncBadge } from "./receipt.js";
import { listen, queueSnapshot, remember, streamStatus, summary, summaryOf } from "./live.js";

export const STATES = ["queued", "running", "succeeded", "failed", "canceled"];
export const ERROR_CODES = [
  "INPUT_NOT_FOUND", "INPUT_INVALID_MEDIA", "INPUT_INVALID", "INPUT_TOO_LARGE", "OUTPUT_INVALID",
  "PERMISSION_DENIED", "NO_FACE", "MULTIPLE_FACES", "UNKNOWN_ENGINE", "STAGE_TIMEOUT", "IPC_ERROR",
  "WORKER_LOST", "STALLED", "STORE_UNAVAILABLE", "DISK_FULL", "STORAGE_UNAVAILABLE", "CONFIG_INVALID",
  "INTERNAL",
];
const PAGE = 50;

let root = null;
let filters = {};
let rows = new Map(); // job id → <tr>
let inputs = new Map(); // job id → {label, inputs} from GET /v1/jobs
let total = 0;
let shown = 0;
let stopListening = null;
let reloadTimer = null;
let fallbackTimer = null;
const FALLBACK_MS = 10000; // while the stream is down only: re-read the page of jobs

export function enter(container, route) {
  root = container;
  filters = {
    state: route.params.get("state") || "",
    error_code: route.params.get("error_code") || "",
    label: route.params.get("label") || "",
    q: route.params.get("q") || "",
    low_sync: route.params.get("low_sync") === "true" ? "true" : "",
  };
  render();
  stopListening = listen(onLive);
  load();
  fallbackTimer = setInterval(() => streamStatus() !== "live" && load(), FALLBACK_MS);
}

export function leave() {
  if (stopListening) stopListening();
  clearTimeout(reloadTimer);
  clearInterval(fallbackTimer);
  root = null;
}

export function refresh() {
  render();
  load();
}

function select(id, value, options, onChange) {
  return h(
    "select",
    { id, onchange: (e) => onChange(e.target.value) },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

function setFilter(name, value) {
  filters[name] = value;
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
  history.replaceState(null, "", `#/jobs${query ? `?${query}` : ""}`);
  load();
}

function render() {
  const debounced = (name) => {
    let timer = null;
    return (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => setFilter(name, e.target.value.trim()), 300);
    };
  };
  clear(
    root,
    h("h1", {}, t("jobs.title")),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "filter-state" }, t("jobs.filter.state")),
      select("filter-state", filters.state, [["", t("jobs.filter.any")], ...STATES.map((s) => [s, t(`state.${s}`)])], (v) => setFilter("state", v)),
      h("label", { for: "filter-code" }, t("jobs.filter.code")),
      select("filter-code", filters.error_code, [["", t("jobs.filter.any")], ...ERROR_CODES.map((c) => [c, c])], (v) => setFilter("error_code", v)),
      h("label", { for: "filter-label" }, t("jobs.filter.label")),
      h("input", { id: "filter-label", type: "text", value: filters.label, oninput: debounced("label") }),
      h("label", { for: "filter-q" }, t("jobs.filter.q")),
      h("input", { id: "filter-q", type: "search", value: filters.q, oninput: debounced("q") }),
      h("label", { for: "filter-lowsync", title: t("receipt.lowsync.title") }, t("jobs.filter.lowsync")),
      h("input", { id: "filter-lowsync", type: "checkbox", checked: filters.low_sync === "true", onchange: (e) => setFilter("low_sync", e.target.checked ? "true" : "") }),
    ),
    h("div", { id: "jobs-notice", "aria-live": "polite" }),
    h(
      "table",
      { class: "jobs", "aria-describedby": "jobs-count" },
      h("thead", {}, h("tr", {}, ["jobs.col.job", "jobs.col.state", "jobs.col.progress", "jobs.col.eta", "jobs.col.priority", "jobs.col.created", "jobs.col.actions"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", { id: "jobs-body" }),
    ),
    h("p", { id: "jobs-count", class: "muted" }),
    h("button", { id: "jobs-more", type: "button", hidden: true, onclick: () => load(shown) }, t("jobs.more")),
  );
}

async function load(offset = 0) {
  const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
  try {
    const list = await api(`/v1/jobs?${query}`);
    if (!root) return;
    const body = document.getElementById("jobs-body");
    if (offset === 0) {
      clear(body);
      rows = new Map();
    }
    for (const job of list.items) {
      inputs.set(job.id, { label: job.label, inputs: job.inputs });
      const row = buildRow(remember(summaryOf(job)));
      rows.set(job.id, row);
      body.append(row);
    }
    total = list.total;
    shown = offset + list.items.length;
    if (!list.items.length && offset === 0) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, t("jobs.empty"))));
    document.getElementById("jobs-count").textContent = t("jobs.count", { shown, total });
    document.getElementById("jobs-more").hidden = shown >= total;
    notice(document.getElementById("jobs-notice"), "");
  } catch (err) {
    if (root) notice(document.getElementById("jobs-notice"), errorText(err), "error");
  }
}

function describe(job) {
  const known = inputs.get(job.id) || {};
  const label = job.label || known.label;
  const names = known.inputs ? [known.inputs.audio_name, known.inputs.video_name].filter(Boolean).join(" + ") : "";
  return h(
    "div",
    {},
    h("a", { href: `#/jobs/${job.id}`, class: "mono", "aria-label": t("jobs.open", { id: shortId(job.id) }) }, shortId(job.id)),
    label ? h("div", { class: "label" }, label) : null,
    names ? h("div", { class: "muted small" }, names) : null,
  );
}

function etaText(job) {
  const queue = queueSnapshot();
  if (job.state === "queued") {
    const item = (queue.items || []).find((i) => i.job_id === job.id);
    if (!item) return t("jobs.eta.queued");
    if (queue.paused) return t("jobs.eta.paused", { n: item.position });
    return t("jobs.eta.position", { n: item.position, start: fmtSeconds(item.estimated_start_s), end: fmtSeconds(item.eta_s) });
  }
  if (job.state === "running") {
    const item = (queue.running_items || []).find((i) => i.job_id === job.id);
    return item && item.eta_s !== null ? t("jobs.eta.left", { eta: fmtSeconds(item.eta_s) }) : t("jobs.eta.running");
  }
  return "—";
}

function progressCell(job) {
  const frames = job.frames_total ? `${job.frames_done}/${job.frames_total}` : "";
  const stage = job.stage ? t(`stage.${job.stage}`) : "";
  return [progressBar(job.fraction, t("jobs.progress.label", { id: shortId(job.id) })), h("div", { class: "muted small" }, [stage, frames].filter(Boolean).join(" · "))];
}

function stateCell(job) {
  return [stateBadge(job.state), job.low_sync ? [" ", lowSyncBadge()] : null, job.error && job.state === "failed" ? h("div", { class: "error-code mono small", title: job.error.message }, job.error.code) : null];
}

function report(err) {
  if (root) notice(document.getElementById("jobs-notice"), err ? errorText(err) : "", err ? "error" : "info");
}

function buildRow(job) {
  const row = h("tr", { dataset: { jobId: job.id, state: job.state } });
  fillRow(row, job);
  return row;
}

function fillRow(row, job) {
  const priority = job.state === "queued" ? priorityControl(job, report) : String(job.priority);
  clear(
    row,
    h("td", {}, describe(job)),
    h("td", { class: "state" }, stateCell(job)),
    h("td", { class: "progress-cell" }, progressCell(job)),
    h("td", { class: "eta" }, etaText(job)),
    h("td", { class: "num" }, priority),
    h("td", { class: "small" }, fmtTime(job.created_at)),
    h("td", {}, jobActions(job, report, { withPriority: false })),
  );
  row.dataset.state = job.state;
}

// Keep a row in step without taking the focus from a control inside it.
function updateRow(row, job) {
  if (row.contains(document.activeElement) && row.dataset.state === job.state) {
    clear(row.querySelector(".progress-cell"), progressCell(job));
    clear(row.querySelector(".eta"), etaText(job));
    return;
  }
  fillRow(row, job);
}

function matches(job) {
  if (job.job_kind && job.job_kind !== "render") return false;
  if (filters.state && job.state !== filters.state) return false;
  if (filters.error_code && (!job.error || job.error.code !== filters.error_code)) return false;
  if (filters.label && job.label !== filters.label) return false;
  if (filters.low_sync && !job.low_sync) return false;
  return true;
}

function onLive(kind, payload) {
  if (!root) return;
  if (kind === "ready") return load();
  if (kind === "queue") {
    for (const [id, row] of rows) {
      const job = summary(id);
      if (job) clear(row.querySelector(".eta"), etaText(job));
    }
    return;
  }
  if (kind === "removed" && rows.has(payload.id)) {
    rows.get(payload.id).remove();
    rows.delete(payload.id);
    return;
  }
  if (kind !== "job" && kind !== "progress") return;
  const row = rows.get(payload.id);
  if (row) updateRow(row, payload);
  else if (kind === "job" && matches(payload)) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load(), 300);
  }
}
