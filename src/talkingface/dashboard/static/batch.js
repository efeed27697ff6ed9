// A batch from a CSV manifest dropped on the create page: each row becomes a job over server
// paths, URLs or registered template ids, all with one label, followed live.
import { api } from "./api.js";
import { readManifest } from "./csv.js";
import { clear, errorText, h, progressBar, shortId, stateBadge } from "./dom.js";
import { t } from "./i18n.js";
import { listen, remember, summary, summaryOf } from "./live.js";

const TEMPLATE_ID = /^[0-9a-f]{32}$/;
const batch = { name: "", rows: [], errors: [], label: "", jobs: new Map(), failures: new Map(), sending: false };
let box = null;
let stopListening = null;

export function mountBatch(element) {
  box = element;
  if (!stopListening) stopListening = listen((kind, job) => (kind === "job" || kind === "progress") && [...batch.jobs.values()].includes(job.id) && renderRows());
  render();
}

export function unmountBatch() {
  if (stopListening) stopListening();
  stopListening = null;
  box = null;
}

function defaultLabel() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `batch-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
}

async function readFile(file) {
  if (!file) return;
  const parsed = readManifest(await file.text());
  Object.assign(batch, { name: file.name, rows: parsed.rows, errors: parsed.errors, jobs: new Map(), failures: new Map() });
  batch.label = batch.label || defaultLabel();
  render();
}

function dropZone() {
  const input = h("input", { id: "batch-file", type: "file", accept: ".csv,text/csv", class: "visually-hidden", onchange: (e) => readFile(e.target.files[0]) });
  const zone = h(
    "label",
    { for: "batch-file", class: "drop", tabindex: "-1" },
    h("strong", {}, t("batch.drop")),
    h("span", { class: "hint" }, t("batch.columns")),
  );
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    readFile(e.dataTransfer.files[0]);
  });
  return h("div", {}, input, zone);
}

function render() {
  if (!box) return;
  const ready = batch.rows.length && !batch.errors.length;
  clear(
    box,
    dropZone(),
    batch.name ? h("p", {}, t("batch.read", { name: batch.name, n: batch.rows.length })) : null,
    batch.errors.length ? h("ul", { class: "notice error", role: "alert" }, batch.errors.map((e) => h("li", {}, t(e.key, e.vars)))) : null,
    ready
      ? h("div", { class: "row" },
          h("label", { for: "batch-label" }, t("batch.label")),
          h("input", { id: "batch-label", type: "text", value: batch.label, oninput: (e) => (batch.label = e.target.value.trim()) }),
          h("button", { id: "batch-submit", type: "button", class: "primary", disabled: batch.sending, onclick: submitAll }, t("batch.submit", { n: batch.rows.length })),
          batch.jobs.size ? h("a", { href: `#/jobs?label=${encodeURIComponent(batch.label)}` }, t("batch.watch")) : null)
      : null,
    h("div", { id: "batch-rows" }),
  );
  renderRows();
}

function renderRows() {
  const target = box && box.querySelector("#batch-rows");
  if (!target || !batch.rows.length) return;
  const done = [...batch.jobs.values()].filter((id) => ["succeeded", "failed", "canceled"].includes((summary(id) || {}).state)).length;
  clear(
    target,
    batch.jobs.size ? progressBar(done / batch.rows.length, t("batch.progress")) : null,
    h("table", { class: "batch" },
      h("thead", {}, h("tr", {}, ["batch.col.row", "batch.col.audio", "batch.col.video", "batch.col.priority", "batch.col.job"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, batch.rows.map((row) => h("tr", {}, h("td", { class: "num" }, row.number), h("td", { class: "path" }, row.audio), h("td", { class: "path" }, row.video), h("td", { class: "num" }, row.priority), h("td", {}, rowStatus(row)))))),
  );
}

function rowStatus(row) {
  const failure = batch.failures.get(row.number);
  if (failure) return h("span", { class: "error-code small" }, errorText(failure));
  const id = batch.jobs.get(row.number);
  if (!id) return "—";
  const job = summary(id);
  return h("span", {}, h("a", { href: `#/jobs/${id}`, class: "mono" }, shortId(id)), " ", job ? stateBadge(job.state) : "");
}

async function submitAll() {
  batch.sending = true;
  batch.label = batch.label || defaultLabel();
  render();
  for (const row of batch.rows) {
    if (batch.jobs.has(row.number)) continue;
    const body = { audio: row.audio, priority: row.priority, label: batch.label };
    if (TEMPLATE_ID.test(row.video)) body.template_id = row.video;
    else body.video = row.video;
    try {
      // The same key for the same row of the same batch: a second click resubmits nothing.
      const job = await api("/v1/jobs", { method: "POST", json: body, headers: { "Idempotency-Key": `dashboard:${encodeURIComponent(batch.label).slice(0, 160)}:${row.number}` } });
      remember(summaryOf(job));
      batch.jobs.set(row.number, job.id);
      batch.failures.delete(row.number);
    } catch (err) {
      batch.failures.set(row.number, err);
    }
    renderRows();
  }
  batch.sending = false;
  render();
  if (box) box.querySelector("#batch-rows").scrollIntoView({ block: "nearest" });
}
