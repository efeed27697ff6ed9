// Server-sent events read with fetch (EventSource cannot send the Authorization header):
// parses the stream, remembers the last id, and reconnects after errors and `shutdown`.
import { authHeaders, authRequired } from "./api.js";

const DEFAULT_RETRY_MS = 3000;

// Feeds each complete event ({event, data, id}) of a response body to onEvent.
async function readEvents(body, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let current = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (current.data.length) onEvent({ event: current.event, data: current.data.join("\n"), id: current.id });
        current = { event: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "data") current.data.push(text);
      else if (name === "event") current.event = text;
      else if (name === "id") current.id = text;
      else if (name === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
    }
  }
}

// openStream(path, {onEvent, onStatus}) → {close()}. onStatus("live" | "reconnecting").
export function openStream(path, { onEvent, onStatus = () => {} }) {
  let closed = false;
  let lastId = null;
  let retryMs = DEFAULT_RETRY_MS;
  let controller = null;
  let wakeUp = null;

  const pause = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function connect() {
    controller = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers.set("Last-Event-ID", lastId);
    const res = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (res.status === 401) {
      authRequired();
      closed = true;
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    onStatus("live");
    await readEvents(
      res.body,
      (message) => {
        if (message.id) lastId = message.id;
        onEvent(message);
      },
      (ms) => (retryMs = ms),
    );
  }

  (async () => {
    while (!closed) {
      try {
        await connect();
      } catch (err) {
        if (closed) return;
      }
      if (closed) return;
      onStatus("reconnecting");
      await pause(retryMs);
    }
  })();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
      if (wakeUp) wakeUp();
    },
  };
}
