// The create page's template: upload one (registered, then prepared by a worker, its progress
// shown live) or pick a registered one; shows its thumbnail and the face the engine will drive.
import { api, blobUrl, localPath, upload } from "./api.js";
import { clear, errorText, fmtSeconds, h, progressBar, shortId } from "./dom.js";
import { t } from "./i18n.js";
import { listen, summary } from "./live.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const PREPARING_REREAD_MS = 3000; // a safety net: the stream normally says when it is ready

export const picked = { template: null, uploading: null, error: null, registered: [] };
let box = null; // the element this module renders into
let onChange = () => {};
let stopListening = null;
let rereadTimer = null;

export function mountTemplatePicker(element, changed) {
  box = element;
  onChange = changed;
  if (!stopListening) stopListening = listen(onLive);
  renderPicker();
  loadRegistered();
}

export function unmountTemplatePicker() {
  clearTimeout(rereadTimer);
  if (stopListening) stopListening();
  stopListening = null;
  box = null;
}

async function loadRegistered() {
  try {
    const list = await api("/v1/templates?limit=100");
    picked.registered = list.items || [];
  } catch {
    picked.registered = [];
  }
  renderStatus();
}

function set(template) {
  clearTimeout(rereadTimer);
  if (template && template.state === "preparing" && box) {
    rereadTimer = setTimeout(() => reread(template.id), PREPARING_REREAD_MS);
  }
  picked.template = template;
  picked.registered = picked.registered.map((item) => (template && item.id === template.id ? template : item));
  picked.error = null;
  renderStatus();
  onChange();
  const prep = template && template.state === "preparing" && summary(template.job_id);
  if (prep && TERMINAL.has(prep.state)) reread(template.id);
}

async function reread(id, { chosen = false } = {}) {
  try {
    const template = await api(`/v1/templates/${id}`);
    if (!chosen && picked.template && picked.template.id !== id) return; // another was chosen
    set(template);
  } catch (err) {
    picked.error = err;
    renderStatus();
  }
}

async function uploadTemplate(file) {
  if (!file) return;
  picked.uploading = { name: file.name, fraction: 0 };
  picked.template = null;
  picked.error = null;
  renderStatus();
  onChange();
  const form = new FormData();
  form.append("video", file, file.name);
  try {
    const template = await upload("/v1/templates", form, (fraction) => {
      picked.uploading.fraction = fraction;
      const bar = box && box.querySelector("#template-upload-progress");
      if (bar) clear(bar, progressBar(fraction, t("create.template.uploading", { name: file.name })));
    });
    picked.uploading = null;
    set(template);
    loadRegistered();
  } catch (err) {
    picked.uploading = null;
    picked.error = err;
    renderStatus();
    onChange();
  }
}

function onLive(kind, job) {
  const template = picked.template;
  if ((kind !== "job" && kind !== "progress") || !template || job.id !== template.job_id) return;
  if (TERMINAL.has(job.state)) return reread(template.id);
  template.progress = { ...template.progress, stage: job.stage, frames_done: job.frames_done, frames_total: job.frames_total || 0 };
  renderStatus();
}

function picture(path, alt, cls) {
  const img = h("img", { alt, class: cls });
  blobUrl(path).then((url) => (img.src = url)).catch(() => img.replaceWith(h("span", { class: "muted small" }, t("create.template.noimage"))));
  return img;
}

function card(template) {
  const facts = [
    template.is_still_image ? t("create.template.photo") : fmtSeconds(template.duration_s),
    template.width ? `${template.width}×${template.height}` : "",
    template.face_count !== null && template.face_count !== undefined ? t("create.template.faces", { n: template.face_count }) : "",
  ].filter(Boolean);
  const parts = [
    h("p", { class: "template-head" }, h("span", { class: "mono" }, shortId(template.id)), " · ", h("span", { class: `badge tstate-${template.state}` }, t(`template.${template.state}`)), " · ", facts.join(" · ")),
  ];
  if (template.state === "preparing") {
    const p = template.progress || {};
    const fraction = p.frames_total ? p.frames_done / p.frames_total : 0;
    parts.push(
      h("div", { id: "template-prep" }, progressBar(fraction, t("create.template.preparing")),
        h("span", { class: "muted small" }, p.frames_total
          ? t("create.template.prepstage", { stage: p.stage ? t(`stage.${p.stage}`) : "…", done: p.frames_done || 0, total: p.frames_total })
          : t("create.template.waiting"))),
    );
  }
  if (template.state === "failed") {
    parts.push(h("p", { class: "notice error", role: "alert" }, errorText(template.error || { message: t("template.failed") })));
  }
  if (template.state === "ready") {
    parts.push(
      h("div", { class: "pictures" },
        h("figure", {}, picture(localPath(template.thumbnail_url), t("create.template.thumbnail.alt"), "thumb"), h("figcaption", {}, t("create.template.thumbnail"))),
        h("figure", {}, picture(`/v1/templates/${template.id}/preview.jpg`, t("create.template.preview.alt"), "thumb"), h("figcaption", {}, t("create.template.preview")))),
    );
  }
  return h("div", { class: "template-card", dataset: { templateId: template.id, state: template.state } }, parts);
}

function registeredOptions() {
  const options = [h("option", { value: "" }, t("create.template.choose"))];
  for (const item of picked.registered) {
    const length = item.is_still_image ? t("create.template.photo") : fmtSeconds(item.duration_s);
    const text = `${shortId(item.id)} · ${length} · ${item.width}×${item.height} · ${t(`template.${item.state}`)}`;
    options.push(h("option", { value: item.id, selected: picked.template && picked.template.id === item.id }, text));
  }
  return options;
}

// The controls (built once per render of the page) and the status below them.
export function renderPicker() {
  if (!box) return;
  clear(
    box,
    h("div", {},
      h("div", { class: "field" },
        h("label", { for: "template-file" }, t("create.template.upload")),
        h("input", { id: "template-file", type: "file", accept: "video/*,image/*", onchange: (e) => uploadTemplate(e.target.files[0]) })),
      h("div", { class: "field" },
        h("label", { for: "template-pick" }, t("create.template.pick")),
        h("select", { id: "template-pick", onchange: (e) => e.target.value && reread(e.target.value, { chosen: true }) }, registeredOptions())),
    ),
    h("div", { id: "template-status", "aria-live": "polite" }),
  );
  renderStatus();
}

function renderStatus() {
  const status = box && box.querySelector("#template-status");
  if (!status) return;
  const pick = box.querySelector("#template-pick");
  if (pick && document.activeElement !== pick) clear(pick, registeredOptions());
  clear(
    status,
    picked.uploading
      ? h("div", { id: "template-upload-progress" }, progressBar(picked.uploading.fraction, t("create.template.uploading", { name: picked.uploading.name })))
      : null,
    picked.error ? h("p", { class: "notice error", role: "alert" }, errorText(picked.error)) : null,
    picked.template ? card(picked.template) : null,
  );
}
