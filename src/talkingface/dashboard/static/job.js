// #/jobs/<id>: one job: progress, template beside the seekable result, attempts with their
// errors, the event timeline and the quality figures with the mouth contact sheet.
import { api, apiKey, blobUrl, localPath } from "./api.js";
import { jobActions } from "./actions.js";
import { clear, errorText, fmtSeconds, fmtTime, h, notice, progressBar, shortId, stateBadge } from "./dom.js";
import { t } from "./i18n.js";
import { listen, remember, streamStatus, summaryOf } from "./live.js";
import { mountQuality, unmountQuality } from "./quality.js";
import { receiptBlock } from "./receipt.js";

let root = null;
let jobId = null;
let job = null;
let events = [];
let shownState = null; // the state the media section was drawn for
let stopListening = null;
let reloadTimer = null;
let fallbackTimer = null;
const FALLBACK_MS = 5000; // while the stream is down only: re-read this one job

export function enter(container, route) {
  root = container;
  jobId = route.id;
  job = null;
  events = [];
  shownState = null;
  clear(root, h("p", {}, t("app.loading")));
  stopListening = listen(onLive);
  load();
  fallbackTimer = setInterval(() => {
    if (streamStatus() !== "live" && job && ["queued", "running"].includes(job.state)) load();
  }, FALLBACK_MS);
}

export function leave() {
  if (stopListening) stopListening();
  clearTimeout(reloadTimer);
  clearInterval(fallbackTimer);
  unmountQuality();
  root = null;
}

export function refresh() {
  shownState = null;
  if (!job) return;
  clear(root);
  renderAll({ force: true });
}

async function load() {
  try {
    const [read, history] = await Promise.all([api(`/v1/jobs/${jobId}`), api(`/v1/jobs/${jobId}/events`)]);
    if (!root) return;
    job = read;
    events = history;
    remember(summaryOf(job));
    renderAll();
  } catch (err) {
    if (root) clear(root, h("h1", {}, t("job.title", { id: shortId(jobId) })), h("p", { class: "notice error", role: "alert" }, errorText(err)), h("a", { href: "#/jobs" }, t("job.back")));
  }
}

function onLive(kind, payload) {
  if (!root || !job || payload.id !== jobId) return;
  if (kind === "progress") {
    Object.assign(job, { stage: payload.stage, progress: { ...job.progress, fraction: payload.fraction, frames_done: payload.frames_done, frames_total: payload.frames_total || 0 } });
    renderHead();
  } else if (kind === "job" && (payload.state !== job.state || payload.updated_at !== job.updated_at)) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 150);
  }
}

function renderAll({ force = false } = {}) {
  if (!root.querySelector("#job-head")) {
    clear(
      root,
      h("p", {}, h("a", { href: "#/jobs" }, t("job.back"))),
      h("div", { id: "job-head" }),
      h("div", { id: "job-notice", "aria-live": "polite" }),
      h("div", { id: "job-media", class: "media-grid" }),
      h("div", { class: "detail-grid" },
        h("section", { class: "card", "aria-labelledby": "attempts-title" }, h("h2", { id: "attempts-title" }, t("job.attempts")), h("div", { id: "job-attempts" })),
        h("section", { class: "card", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, t("job.timeline")), h("div", { id: "job-timeline", class: "timeline" }))),
      h("section", { class: "card", "aria-labelledby": "quality-title" }, h("h2", { id: "quality-title" }, t("quality.title")), h("div", { id: "job-quality" })),
    );
  }
  renderHead();
  if (shownState !== job.state) renderMedia();
  renderAttempts();
  renderTimeline();
  mountQuality(root.querySelector("#job-quality"), job, { force });
}

function report(err) {
  if (root) notice(root.querySelector("#job-notice"), err ? errorText(err) : "", err ? "error" : "info");
}

function renderHead() {
  const p = job.progress;
  const frames = p.frames_total ? t("job.frames", { done: p.frames_done, total: p.frames_total }) : "";
  const eta = job.state === "running" && p.eta_s !== null && p.eta_s !== undefined ? t("jobs.eta.left", { eta: fmtSeconds(p.eta_s) }) : "";
  clear(
    root.querySelector("#job-head"),
    h("h1", {}, t("job.title", { id: shortId(job.id) }), job.label ? h("span", { class: "label" }, ` · ${job.label}`) : null),
    h("div", { class: "row head-row" },
      stateBadge(job.state),
      job.stage ? h("span", {}, t(`stage.${job.stage}`)) : null,
      h("span", { class: "grow" }, progressBar(p.fraction, t("job.progress"))),
      h("span", { class: "muted" }, [frames, eta].filter(Boolean).join(" · ")),
      job.engine ? h("span", { class: "muted job-engine" }, t("job.engine", { engine: job.engine })) : null,
      jobActions(job, report, { withDelete: true, onDeleted: () => (location.hash = "#/jobs") })),
    job.error ? h("div", { class: "notice error job-error", role: "alert" },
      h("strong", { class: "mono" }, job.error.code), " ", job.error.stage ? h("span", { class: "muted" }, `[${job.error.stage}] `) : null, h("span", { class: "message" }, job.error.message)) : null,
  );
}

function picture(path, alt) {
  const img = h("img", { alt });
  blobUrl(path).then((url) => (img.src = url)).catch(() => img.replaceWith(h("p", { class: "muted" }, t("job.template.nopicture"))));
  return img;
}

function templateFigure() {
  const inputs = job.inputs || {};
  const name = inputs.video_name || (inputs.template_id ? shortId(inputs.template_id) : "");
  const body = inputs.template_id ? picture(`/v1/templates/${inputs.template_id}/preview.jpg`, t("job.template.alt")) : h("p", { class: "muted" }, t("job.template.nopicture"));
  return h("figure", { class: "card" }, h("h2", {}, t("job.template")), body, h("figcaption", {}, [name, inputs.audio_name ? t("job.audio", { name: inputs.audio_name }) : ""].filter(Boolean).join(" · ")));
}

function resultFigure() {
  if (job.state !== "succeeded" || !job.result) {
    return h("figure", { class: "card" }, h("h2", {}, t("job.result")), h("p", { class: "muted placeholder" }, t(`job.result.${job.state}`)));
  }
  const r = job.result;
  const video = h("video", { id: "result-video", controls: true, preload: "metadata", "aria-label": t("job.result.alt", { id: shortId(job.id) }) });
  const download = h("a", { class: "button", download: `${job.id}.mp4` }, t("job.download"));
  const path = localPath(r.url);
  if (apiKey()) {
    // A <video> cannot send the key: the file is fetched with it, then played from memory.
    blobUrl(path).then((url) => {
      video.src = url;
      download.href = url;
    }).catch(report);
  } else {
    video.src = path; // no key: the browser streams it with Range requests
    download.href = path;
  }
  const facts = [fmtSeconds(r.duration_s), `${r.width}×${r.height}`, `${r.fps.toFixed(2)} fps`, t("job.frames.count", { n: r.frame_count }), t("job.processing", { s: fmtSeconds(r.processing_s) }), r.frames_without_face ? t("job.noface", { n: r.frames_without_face }) : ""];
  return h("figure", { class: "card" }, h("h2", {}, t("job.result")), video, h("figcaption", {}, facts.filter(Boolean).join(" · "), " ", download), receiptBlock(r.receipt));
}

function renderMedia() {
  shownState = job.state;
  clear(root.querySelector("#job-media"), templateFigure(), resultFigure());
}

function renderAttempts() {
  const rows = job.attempts.map((a) =>
    h("tr", {},
      h("td", { class: "num" }, a.number),
      h("td", {}, t(`outcome.${a.outcome}`)),
      h("td", { class: "mono" }, a.error ? a.error.code : "—"),
      h("td", {}, a.error && a.error.stage ? t(`stage.${a.error.stage}`) : "—"),
      h("td", { class: "message" }, a.error ? a.error.message : ""),
      h("td", { class: "small" }, fmtTime(a.started_at)),
      h("td", { class: "small" }, a.ended_at ? fmtSeconds((new Date(a.ended_at) - new Date(a.started_at)) / 1000) : "…")));
  clear(
    root.querySelector("#job-attempts"),
    rows.length
      ? h("table", { class: "attempts" }, h("thead", {}, h("tr", {}, ["job.col.n", "job.col.outcome", "job.col.code", "job.col.stage", "job.col.message", "job.col.started", "job.col.took"].map((k) => h("th", { scope: "col" }, t(k))))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, t("job.noattempts")),
  );
}

function eventText(event) {
  const d = event.data || {};
  const parts = [];
  for (const key of ["stage", "state", "code", "priority", "attempt", "message", "reason"]) {
    if (d[key] !== undefined && d[key] !== null && typeof d[key] !== "object") parts.push(`${key}=${d[key]}`);
  }
  if (d.error && d.error.code) parts.push(`${d.error.code}: ${d.error.message}`);
  return parts.join(" · ");
}

function renderTimeline() {
  clear(
    root.querySelector("#job-timeline"),
    h("ol", {}, events.map((e) => h("li", {}, h("time", { datetime: e.at }, fmtTime(e.at)), " ", h("span", { class: "kind mono" }, e.kind), " ", h("span", { class: "muted" }, eventText(e))))),
  );
}
