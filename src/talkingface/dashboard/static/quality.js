// The job page's quality figures (`evaluate` on the result): compute on request, show the
// running state, then the verdicts, the figures and the mouth contact sheet.
import { api, blobUrl, localPath } from "./api.js";
import { clear, errorText, fmtTime, h } from "./dom.js";
import { t } from "./i18n.js";

const POLL_MS = 2000; // one request per 2 s, only while this job's evaluation runs
const MAIN_FIGURES = [
  "sync_correlation", "sync_lag_frames", "sync_margin", "open_speech_silence_ratio",
  "amplitude_p50_ratio", "amplitude_p90_ratio", "outside_mouth_psnr_db", "outside_mouth_ssim",
  "faces_found", "frame_count",
];

let box = null;
let jobId = null;
let status = null; // null (not computed) | {state: queued|running, position} | Quality
let error = null;
let timer = null;
let sheetFor = null; // computed_at of the contact sheet in the cache

let mountedFor = null; // the element, job and state last drawn: redraw only on a change

export function mountQuality(element, job, { force = false } = {}) {
  const key = `${job.id}:${job.state}`;
  if (!force && box === element && mountedFor === key) return;
  box = element;
  mountedFor = key;
  if (job.state !== "succeeded") {
    clear(box, h("p", { class: "muted" }, t("quality.needsresult")));
    jobId = job.id;
    status = null;
    return;
  }
  jobId = job.id;
  status = null;
  error = null;
  render();
  read();
}

export function unmountQuality() {
  clearTimeout(timer);
  box = null;
  jobId = null;
  mountedFor = null;
}

async function read() {
  clearTimeout(timer);
  const id = jobId;
  try {
    const res = await api(`/v1/jobs/${id}/quality`, { raw: true });
    if (id !== jobId) return;
    status = await res.json();
    error = null;
  } catch (err) {
    if (id !== jobId) return;
    status = null;
    error = err.code === "NOT_READY" ? null : err;
  }
  render();
  if (status && (status.state === "queued" || status.state === "running")) timer = setTimeout(read, POLL_MS);
}

async function compute(force) {
  try {
    const res = await api(`/v1/jobs/${jobId}/quality${force ? "?force=true" : ""}`, { method: "POST", raw: true });
    status = await res.json();
    error = null;
  } catch (err) {
    error = err;
  }
  render();
  if (status && (status.state === "queued" || status.state === "running")) timer = setTimeout(read, POLL_MS);
}

function value(v) {
  if (v === null || v === undefined) return "—";
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);
}

function figures(quality) {
  const all = quality.figures || {};
  const row = (key) => h("tr", {}, h("th", { scope: "row", class: "mono" }, key), h("td", { class: "num" }, value(all[key])));
  const sheet = h("img", { alt: t("quality.sheet.alt"), class: "sheet" });
  if (quality.sheet_url) blobUrl(localPath(quality.sheet_url), { fresh: quality.computed_at !== sheetFor }).then((url) => {
    sheetFor = quality.computed_at;
    sheet.src = url;
  }).catch(() => sheet.remove());
  return h(
    "div",
    { class: "quality" },
    h("ul", { class: "verdicts" }, (quality.verdicts || []).map((line) => h("li", { class: line.startsWith("PASS") ? "pass" : line.startsWith("FAIL") ? "fail" : "muted" }, line))),
    h("div", { class: "quality-grid" },
      h("table", { class: "figures" }, h("tbody", {}, MAIN_FIGURES.filter((k) => k in all).map(row))),
      h("figure", {}, sheet, h("figcaption", {}, t("quality.sheet")))),
    h("details", {}, h("summary", {}, t("quality.all")), h("table", { class: "figures" }, h("tbody", {}, Object.keys(all).sort().map(row)))),
    h("p", { class: "muted small" }, t("quality.computed", { at: fmtTime(quality.computed_at), s: value(quality.duration_s) })),
  );
}

function render() {
  if (!box) return;
  const running = status && (status.state === "queued" || status.state === "running");
  const done = status && status.state === "succeeded";
  const button = h("button", { id: "quality-compute", type: "button", disabled: running, onclick: () => compute(done || (status && status.state === "failed")) }, t(done ? "quality.recompute" : "quality.compute"));
  clear(
    box,
    h("div", { class: "row" }, button,
      running ? h("span", { id: "quality-state", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), " ", t(`quality.${status.state}`, { n: status.position || 0 })) : null),
    error ? h("p", { class: "notice error", role: "alert" }, errorText(error)) : null,
    status && status.state === "failed" ? h("p", { class: "notice error", role: "alert" }, errorText(status.error)) : null,
    done ? figures(status) : null,
    !status && !error ? h("p", { class: "muted" }, t("quality.none")) : null,
  );
}
