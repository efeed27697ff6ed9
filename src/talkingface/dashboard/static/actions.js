// Job actions shared by the list and the job page: cancel, retry, priority, delete.
import { api } from "./api.js";
import { h, shortId } from "./dom.js";
import { t } from "./i18n.js";
import { forget, remember, summaryOf } from "./live.js";

const ACTIVE = new Set(["queued", "running"]);
const ENDED_BADLY = new Set(["failed", "canceled"]);
const FINISHED = new Set(["succeeded", "failed", "canceled"]);

async function run(action, report) {
  try {
    const job = await action();
    if (job && job.id) remember(summaryOf(job));
    report(null);
  } catch (err) {
    report(err);
  }
}

// Buttons for what the job's state allows; report(error|null) after each action.
export function jobActions(job, report, { withDelete = false, withPriority = true, onDeleted } = {}) {
  const id = job.id;
  const name = shortId(id);
  const buttons = [];
  if (ACTIVE.has(job.state)) {
    buttons.push(
      h("button", {
        type: "button",
        class: "danger",
        "aria-label": t("action.cancel.label", { id: name }),
        onclick: () => run(() => api(`/v1/jobs/${id}/cancel`, { method: "POST" }), report),
      }, t("action.cancel")),
    );
  }
  if (ENDED_BADLY.has(job.state)) {
    buttons.push(
      h("button", {
        type: "button",
        "aria-label": t("action.retry.label", { id: name }),
        onclick: () => run(() => api(`/v1/jobs/${id}/retry`, { method: "POST" }), report),
      }, t("action.retry")),
    );
  }
  if (withPriority && job.state === "queued") buttons.push(priorityControl(job, report));
  if (withDelete && FINISHED.has(job.state)) {
    buttons.push(
      h("button", {
        type: "button",
        class: "danger quiet",
        "aria-label": t("action.delete.label", { id: name }),
        onclick: async () => {
          if (!window.confirm(t("action.delete.confirm", { id: name }))) return;
          try {
            await api(`/v1/jobs/${id}`, { method: "DELETE" });
            forget(id);
            report(null);
            if (onDeleted) onDeleted();
          } catch (err) {
            report(err);
          }
        },
      }, t("action.delete")),
    );
  }
  return h("span", { class: "actions" }, buttons);
}

export function priorityControl(job, report) {
  const input = h("input", {
    type: "number",
    min: -100,
    max: 100,
    step: 1,
    value: String(job.priority),
    class: "priority",
    "aria-label": t("action.priority.label", { id: shortId(job.id) }),
  });
  const apply = () =>
    run(() => api(`/v1/jobs/${job.id}`, { method: "PATCH", json: { priority: Number(input.value) } }), report);
  input.addEventListener("keydown", (e) => e.key === "Enter" && apply());
  return h(
    "span",
    { class: "priority-control" },
    input,
    h("button", { type: "button", onclick: apply, "aria-label": t("action.priority.set.label", { id: shortId(job.id) }) }, t("action.priority.set")),
  );
}
