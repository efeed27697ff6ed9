// Small DOM and formatting helpers shared by the dashboard's views.
import { t, lang } from "./i18n.js";

// h("button", {class: "x", onclick: f}, "text", child...) → an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

// Children may nest arrays to any depth (a cell built from parts that are lists themselves);
// one level of flat() turned the inner lists into "[object HTMLSpanElement]" text.
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s === 0) return "0 s";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s % 60);
  if (m < 60) return `${m} min ${rest} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// A time of today as 14:05:09; an older one with its date.
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const locale = lang() === "zh" ? "zh-CN" : "en-GB";
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString(locale, { hour12: false }) : d.toLocaleString(locale, { hour12: false });
}

export function fmtPercent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  return `${Math.round(fraction * 100)} %`;
}

export function fmtBytes(n) {
  if (!n && n !== 0) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// A <progress> with its text, labelled for screen readers.
export function progressBar(fraction, label) {
  const value = Math.max(0, Math.min(1, fraction || 0));
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: 1, value, "aria-label": label || t("progress") }),
    h("span", { class: "progress-text" }, fmtPercent(value)),
  );
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } }, t(`state.${state}`));
}

// A polite live region for status lines ("Submitted", errors).
export function notice(el, text, kind = "info") {
  clear(el, text ? h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text) : "");
}

export function errorText(err) {
  if (!err) return "";
  return err.code ? `${err.code}: ${err.message}` : String(err.message || err);
}
