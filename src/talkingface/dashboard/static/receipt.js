// The quality receipt under a result (jobs submitted with `evaluate`): the flag, the main
// sync figures, SyncNet's LSE when the server has one, and a link to the contact sheet.
import { apiKey, blobUrl, localPath } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

const FIGURES = [
  ["sync_correlation", "receipt.sync"],
  ["sync_margin", "receipt.margin"],
  ["lse_d", "receipt.lsed"],
  ["lse_c", "receipt.lsec"],
  ["lse_av_offset_frames", "receipt.offset"],
];

function number(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

// A small badge for lists and heads: the result is flagged under the sync floor.
export function lowSyncBadge() {
  return h("span", { class: "badge low-sync", title: t("receipt.lowsync.title") }, t("receipt.lowsync"));
}

function sheetLink(receipt) {
  if (!receipt.sheet_url) return null;
  const path = localPath(receipt.sheet_url);
  const link = h("a", { class: "sheet-link", target: "_blank", rel: "noopener" }, t("receipt.sheet"));
  // With a key the browser cannot send it on a plain link: fetch, then open from memory.
  if (apiKey()) blobUrl(path).then((url) => (link.href = url)).catch(() => link.remove());
  else link.href = path;
  return link;
}

export function receiptBlock(receipt) {
  if (!receipt) return null;
  if (receipt.state !== "measured") {
    const error = receipt.error || {};
    return h("div", { class: "receipt", id: "job-receipt" },
      h("strong", {}, t("receipt.title")), " ",
      h("span", { class: "muted" }, t("receipt.failed", { code: error.code || "", message: error.message || "" })));
  }
  const figures = receipt.figures || {};
  const shown = FIGURES.filter(([key]) => figures[key] !== null && figures[key] !== undefined)
    .map(([key, label]) => h("span", { class: "figure" }, t(label), " ", h("span", { class: "num mono" }, number(figures[key]))));
  const lse = receipt.lse === "measured" ? null : h("span", { class: "muted small" }, receipt.lse === "failed" ? t("receipt.lse.failed", { message: receipt.lse_message || "" }) : t("receipt.lse.none"));
  return h("div", { class: receipt.low_sync ? "receipt flagged" : "receipt", id: "job-receipt" },
    h("strong", {}, t("receipt.title")), " ",
    receipt.low_sync ? [lowSyncBadge(), " ", h("span", { class: "small" }, receipt.low_sync_reasons.join("; ")), " "] : null,
    shown, " ", lse, " ", sheetLink(receipt));
}
