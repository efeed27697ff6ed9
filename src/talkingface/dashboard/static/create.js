// #/create: template + speech (a file or the microphone) + options → a job; or a CSV batch.
import { upload } from "./api.js";
import { mountBatch, unmountBatch } from "./batch.js";
import { clear, errorText, fmtBytes, h, notice, progressBar } from "./dom.js";
import { t } from "./i18n.js";
import { remember, summaryOf } from "./live.js";
import { canRecord, startRecording } from "./record.js";
import { mountTemplatePicker, picked, unmountTemplatePicker } from "./template_pick.js";

export const ENGINES = ["classic", "wav2lip"];
const form = {
  audio: null, // a File: chosen or recorded
  recording: null,
  recordedUrl: null,
  engine: "",
  loop: "pingpong",
  face_policy: "largest",
  priority: 0,
  label: "",
  evaluate: false, // unchecked: the server's default (evaluate.default)
  sending: null, // upload fraction while submitting
};
let root = null;
let timer = null;

export function enter(container) {
  root = container;
  render();
}

export function leave() {
  unmountTemplatePicker();
  unmountBatch();
  clearInterval(timer);
  root = null;
}

export function refresh() {
  render();
}

function field(id, labelKey, control, hintKey) {
  return h("div", { class: "field" }, h("label", { for: id }, t(labelKey)), control, hintKey ? h("p", { class: "hint", id: `${id}-hint` }, t(hintKey)) : null);
}

function choice(id, name, values, labelPrefix) {
  return h(
    "select",
    { id, onchange: (e) => (form[name] = e.target.value) },
    values.map((v) => h("option", { value: v, selected: form[name] === v }, t(`${labelPrefix}.${v || "default"}`))),
  );
}

function render() {
  if (!root) return;
  clear(
    root,
    h("h1", {}, t("create.title")),
    h("div", { class: "create-grid" },
      h("section", { class: "card", "aria-labelledby": "tpl-title" }, h("h2", { id: "tpl-title" }, t("create.template.title")), h("div", { id: "template-picker" })),
      h("section", { class: "card", "aria-labelledby": "audio-title" }, h("h2", { id: "audio-title" }, t("create.audio.title")), audioControls()),
      h("section", { class: "card", "aria-labelledby": "opt-title" }, h("h2", { id: "opt-title" }, t("create.options.title")), optionControls()),
    ),
    h("section", { class: "card", "aria-labelledby": "batch-title" }, h("h2", { id: "batch-title" }, t("batch.title")), h("div", { id: "batch" })),
  );
  mountTemplatePicker(root.querySelector("#template-picker"), updateSubmit);
  mountBatch(root.querySelector("#batch"));
  updateSubmit();
}

function audioControls() {
  const record = h("button", { id: "record", type: "button", "aria-pressed": form.recording ? "true" : "false", onclick: toggleRecording, disabled: !canRecord() }, t(form.recording ? "create.audio.stop" : "create.audio.record"));
  return h(
    "div",
    {},
    field("audio-file", "create.audio.upload", h("input", { id: "audio-file", type: "file", accept: "audio/*,video/*", onchange: (e) => chooseAudio(e.target.files[0], null) })),
    h("div", { class: "field" }, h("span", { class: "label-text" }, t("create.audio.or")), h("div", { class: "row" }, record, h("span", { id: "record-time", class: "muted", "aria-live": "off" }))),
    canRecord() ? null : h("p", { class: "hint" }, t("create.audio.norecord")),
    h("div", { id: "audio-chosen", "aria-live": "polite" }, audioChosen()),
  );
}

function audioChosen() {
  if (!form.audio) return h("p", { class: "muted" }, t("create.audio.none"));
  return h("div", {}, h("p", {}, t("create.audio.chosen", { name: form.audio.name, size: fmtBytes(form.audio.size) })), form.recordedUrl ? h("audio", { controls: true, src: form.recordedUrl, "aria-label": t("create.audio.playback") }) : null);
}

function chooseAudio(file, recordedUrl) {
  if (form.recordedUrl && form.recordedUrl !== recordedUrl) URL.revokeObjectURL(form.recordedUrl);
  form.audio = file || null;
  form.recordedUrl = recordedUrl;
  clear(root.querySelector("#audio-chosen"), audioChosen());
  updateSubmit();
}

async function toggleRecording() {
  const button = root.querySelector("#record");
  const clock = root.querySelector("#record-time");
  if (form.recording) {
    const recording = form.recording;
    form.recording = null;
    clearInterval(timer);
    const file = await recording.stop();
    if (!root) return;
    button.textContent = t("create.audio.record");
    button.setAttribute("aria-pressed", "false");
    chooseAudio(file, URL.createObjectURL(file));
    return;
  }
  try {
    form.recording = await startRecording();
  } catch (err) {
    notice(root.querySelector("#submit-notice"), t("create.audio.micerror", { error: err.message }), "error");
    return;
  }
  button.textContent = t("create.audio.stop");
  button.setAttribute("aria-pressed", "true");
  timer = setInterval(() => (clock.textContent = `${((performance.now() - form.recording.startedAt) / 1000).toFixed(1)} s`), 200);
}

function optionControls() {
  return h(
    "form",
    { id: "job-form", onsubmit: submit },
    field("engine", "create.engine", choice("engine", "engine", ["", ...ENGINES], "engine")),
    field("loop", "create.loop", choice("loop", "loop", ["pingpong", "restart"], "loop")),
    field("face-policy", "create.facepolicy", choice("face-policy", "face_policy", ["largest", "strict"], "facepolicy")),
    field("priority", "create.priority", h("input", { id: "priority", type: "number", min: -100, max: 100, step: 1, value: String(form.priority), "aria-describedby": "priority-hint", oninput: (e) => (form.priority = e.target.value) }), "create.priority.hint"),
    field("label", "create.label", h("input", { id: "label", type: "text", maxlength: 200, value: form.label, oninput: (e) => (form.label = e.target.value) })),
    field("evaluate", "create.evaluate", h("input", { id: "evaluate", type: "checkbox", checked: form.evaluate, onchange: (e) => (form.evaluate = e.target.checked) })),
    h("button", { id: "submit", type: "submit", class: "primary" }, t("create.submit")),
    h("p", { id: "submit-why", class: "hint" }),
    h("div", { id: "submit-progress" }),
    h("div", { id: "submit-notice", "aria-live": "polite" }),
  );
}

// The submit button says what is still missing instead of failing after a click.
function missing() {
  const template = picked.template;
  if (!template) return "create.missing.template";
  if (template.state === "failed") return "create.missing.templatefailed";
  if (!form.audio) return "create.missing.audio";
  if (form.recording) return "create.missing.recording";
  return null;
}

function updateSubmit() {
  if (!root) return;
  const button = root.querySelector("#submit");
  const why = missing();
  button.disabled = Boolean(why) || form.sending !== null;
  root.querySelector("#submit-why").textContent = why ? t(why) : "";
}

async function submit(event) {
  event.preventDefault();
  if (missing() || form.sending !== null) return;
  const body = new FormData();
  body.append("audio", form.audio, form.audio.name);
  body.append("template_id", picked.template.id);
  body.append("priority", String(Number(form.priority) || 0));
  if (form.engine) body.append("engine", form.engine);
  body.append("loop", form.loop);
  body.append("face_policy", form.face_policy);
  if (form.label.trim()) body.append("label", form.label.trim());
  if (form.evaluate) body.append("evaluate", "true");
  const bar = root.querySelector("#submit-progress");
  form.sending = 0;
  updateSubmit();
  try {
    const job = await upload("/v1/jobs", body, (fraction) => clear(bar, progressBar(fraction, t("create.sending"))));
    remember(summaryOf(job));
    form.sending = null;
    location.hash = `#/jobs/${job.id}`;
  } catch (err) {
    form.sending = null;
    if (!root) return;
    clear(bar);
    notice(root.querySelector("#submit-notice"), errorText(err), "error");
    updateSubmit();
  }
}
