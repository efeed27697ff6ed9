// Calls to the v1 API with the session's key (an Authorization header, never in a URL).
const KEY_ITEM = "talkingface.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

// The server answered 401: the app shows the login form.
export function authRequired() {
  window.dispatchEvent(new CustomEvent("auth-required"));
}

async function problem(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error) return new ApiError(res.status, error.code, error.message, error.details || {});
  const detail = body && typeof body.detail === "string" ? body.detail : res.statusText;
  return new ApiError(res.status, `HTTP_${res.status}`, detail || `HTTP ${res.status}`);
}

// api("/v1/jobs", {method, json, form, headers}) → parsed JSON; raw: the Response.
export async function api(path, { method = "GET", json, form, headers = {}, raw = false, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers.set("Content-Type", "application/json");
  } else if (form) {
    init.body = form;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "SERVER_UNREACHABLE", err.message);
  }
  if (res.status === 401) {
    authRequired();
    throw await problem(res);
  }
  if (!res.ok) throw await problem(res);
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

// A multipart upload with upload progress (fetch cannot report it): onProgress(fraction).
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "SERVER_UNREACHABLE", "the upload did not reach the server"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 401) authRequired();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const error = (body && body.error) || { code: `HTTP_${xhr.status}`, message: xhr.statusText };
        reject(new ApiError(xhr.status, error.code, error.message, error.details || {}));
      }
    };
    xhr.send(form);
  });
}

// A protected file (result, thumbnail, contact sheet) as a blob: URL an <img>/<video> can
// show: their requests cannot carry the Authorization header.
const blobUrls = new Map();

export async function blobUrl(path, { fresh = false } = {}) {
  if (!fresh && blobUrls.has(path)) return blobUrls.get(path);
  const res = await api(path, { raw: true });
  const url = URL.createObjectURL(await res.blob());
  if (blobUrls.has(path)) URL.revokeObjectURL(blobUrls.get(path));
  blobUrls.set(path, url);
  return url;
}

// The same-origin path of an absolute URL the API returned (thumbnail_url, result.url).
export function localPath(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}
