// The page's one event stream (GET /v1/events): job summaries and queue snapshots kept here,
// and handed to whichever view listens (docs/dashboard-api.md, section 1).
import { openStream } from "./sse.js";

const summaries = new Map(); // job id → JobSummary, as last heard
const listeners = new Set();
let queue = { paused: false, items: [], running_items: [] };
let stream = null;
let status = "idle";

// A JobPublic (GET /v1/jobs) in the stream's JobSummary shape.
export function summaryOf(job) {
  return {
    id: job.id,
    job_kind: job.job_kind || "render",
    template_id: job.template_id || null,
    state: job.state,
    stage: job.stage,
    fraction: job.progress ? job.progress.fraction : job.fraction,
    frames_done: job.progress ? job.progress.frames_done : job.frames_done,
    frames_total: job.progress ? job.progress.frames_total : job.frames_total,
    attempt: job.attempt,
    priority: job.priority,
    label: job.label || null,
    low_sync: job.result && job.result.receipt ? Boolean(job.result.receipt.low_sync) : Boolean(job.low_sync),
    created_at: job.created_at,
    updated_at: job.updated_at,
    error: job.error,
  };
}

function emit(kind, payload) {
  for (const listener of listeners) listener(kind, payload);
}

// Keep a job read from the API; newer news (updated_at) wins over older, and listeners hear
// only of a change (a view that re-reads a job on "job" would otherwise loop).
export function remember(summary) {
  const known = summaries.get(summary.id);
  if (known && Date.parse(known.updated_at) >= Date.parse(summary.updated_at) && known.state === summary.state) {
    return known;
  }
  summaries.set(summary.id, summary);
  emit("job", summary);
  return summary;
}

export function forget(jobId) {
  summaries.delete(jobId);
  emit("removed", { id: jobId });
}

export function summary(jobId) {
  return summaries.get(jobId);
}

export function queueSnapshot() {
  return queue;
}

export function streamStatus() {
  return status;
}

// listen((kind, payload) => …) for "job", "progress", "queue", "ready", "status", "removed";
// returns the function that stops listening.
export function listen(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function onMessage(message) {
  let data = null;
  try {
    data = JSON.parse(message.data);
  } catch {
    return;
  }
  if (message.event === "job" || message.event === "progress") {
    if (data.job) {
      summaries.set(data.job.id, data.job);
      emit(message.event, { ...data.job, event_kind: data.kind, event_id: data.event_id });
    }
  } else if (message.event === "queue") {
    queue = data;
    emit("queue", data);
  } else if (message.event === "ready") {
    emit("ready", data);
  }
}

export function startLive() {
  if (stream) return;
  stream = openStream("/v1/events", {
    onEvent: onMessage,
    onStatus: (value) => {
      status = value;
      emit("status", value);
    },
  });
}

export function stopLive() {
  if (stream) stream.close();
  stream = null;
  status = "idle";
  summaries.clear();
  emit("status", status);
}
