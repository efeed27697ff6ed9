// UI text in English and Chinese: t(key) in the chosen language, remembered in localStorage.
import { STRINGS } from "./strings.js";

const LANG_ITEM = "talkingface.lang";
const LANGS = ["en", "zh"];

function initial() {
  const saved = localStorage.getItem(LANG_ITEM);
  if (LANGS.includes(saved)) return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current = initial();

export function lang() {
  return current;
}

export function setLang(value) {
  if (!LANGS.includes(value) || value === current) return;
  current = value;
  localStorage.setItem(LANG_ITEM, value);
  translatePage();
  window.dispatchEvent(new CustomEvent("lang-changed"));
}

// Values from the server (a stage, an outcome) that have no text here show as they are.
const VALUE_PREFIXES = ["stage.", "outcome.", "worker.", "state.", "template.", "alert.", "job.result."];

// t("jobs.count", {n: 3}) → the text with {n} filled in; an unknown key shows itself.
export function t(key, vars = {}) {
  const fallback = VALUE_PREFIXES.find((prefix) => key.startsWith(prefix)) ? key.slice(key.lastIndexOf(".") + 1) : key;
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? fallback;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// The static page: elements with data-i18n (text), data-i18n-label (aria-label) or
// data-i18n-placeholder get their text in the current language.
export function translatePage(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
