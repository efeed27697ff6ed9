// The dashboard's entry point: sign-in, the language switch, the stream and the views
// (#/create, #/jobs, #/jobs/<id>, #/operate).
import { api, apiKey, setApiKey } from "./api.js";
import { clear, h, notice } from "./dom.js";
import { lang, setLang, t, translatePage } from "./i18n.js";
import { listen, startLive, stopLive, streamStatus } from "./live.js";
import * as createView from "./create.js";
import * as jobsView from "./jobs.js";
import * as jobView from "./job.js";
import * as operateView from "./operate.js";

const page = document.getElementById("page");
const login = document.getElementById("login");
const nav = document.getElementById("nav");
const live = document.getElementById("live");
let view = null;
let signedIn = false;

function parseRoute() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", view: jobView, id: parts[1], params };
  if (parts[0] === "jobs") return { name: "jobs", view: jobsView, params };
  if (parts[0] === "operate") return { name: "operate", view: operateView, params };
  return { name: "create", view: createView, params };
}

function show() {
  if (!signedIn) return;
  if (view && view.leave) view.leave();
  const route = parseRoute();
  view = route.view;
  for (const link of nav.querySelectorAll("a")) {
    const current = link.dataset.route === (route.name === "job" ? "jobs" : route.name);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(page);
  view.enter(page, route);
}

function showLiveStatus(status) {
  live.hidden = !signedIn;
  live.dataset.status = status;
  live.textContent = t(`live.${status}`);
}

function signOut(message) {
  signedIn = false;
  stopLive();
  if (view && view.leave) view.leave();
  view = null;
  clear(page);
  nav.hidden = true;
  document.getElementById("logout").hidden = true;
  login.hidden = false;
  notice(document.getElementById("login-notice"), message || "", message ? "error" : "info");
  document.getElementById("api-key").focus();
}

function enter() {
  signedIn = true;
  login.hidden = true;
  nav.hidden = false;
  document.getElementById("logout").hidden = !apiKey();
  startLive();
  showLiveStatus(streamStatus());
  show();
}

// Does the server answer with the key we hold (or none)? 401 → the login form.
async function probe() {
  try {
    await api("/v1/queue");
    return true;
  } catch (err) {
    if (err.status === 401) return false;
    throw err;
  }
}

async function onLogin(event) {
  event.preventDefault();
  const input = document.getElementById("api-key");
  setApiKey(input.value.trim());
  try {
    if (await probe()) {
      input.value = "";
      enter();
    } else {
      setApiKey("");
      notice(document.getElementById("login-notice"), t("login.wrong"), "error");
    }
  } catch (err) {
    setApiKey("");
    notice(document.getElementById("login-notice"), t("app.unreachable", { error: err.message }), "error");
  }
}

async function boot() {
  const select = document.getElementById("lang");
  select.value = lang();
  select.addEventListener("change", () => setLang(select.value));
  translatePage();
  document.getElementById("login-form").addEventListener("submit", onLogin);
  document.getElementById("logout").addEventListener("click", () => {
    setApiKey("");
    signOut();
  });
  window.addEventListener("auth-required", () => {
    if (!signedIn && !login.hidden) return;
    setApiKey("");
    signOut(t("login.expired"));
  });
  window.addEventListener("hashchange", show);
  window.addEventListener("lang-changed", () => {
    showLiveStatus(streamStatus());
    if (view && view.refresh) view.refresh();
  });
  listen((kind, payload) => kind === "status" && showLiveStatus(payload));
  try {
    if (await probe()) enter();
    else signOut();
  } catch (err) {
    clear(page, h("p", { class: "notice error", role: "alert" }, t("app.unreachable", { error: err.message })));
  }
}

boot();
