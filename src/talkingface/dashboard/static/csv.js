// A batch manifest read in the browser: the columns of `talkingface batch` (audio, video,
// optional output and priority), parsed as RFC 4180 CSV.

// parseCsv(text) → rows of fields (quoted fields may hold commas, quotes and newlines).
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  const source = text.replace(/^\uFEFF/, "");
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (quoted) {
      if (c === '"' && source[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && source[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.some((value) => value.trim() !== ""));
}

// readManifest(text) → {rows: [{number, audio, video, output, priority}], errors: [message keys + vars]}.
export function readManifest(text) {
  const [header = [], ...data] = parseCsv(text);
  const names = header.map((name) => name.trim().toLowerCase());
  const missing = ["audio", "video"].filter((name) => !names.includes(name));
  if (missing.length) return { rows: [], errors: [{ key: "batch.error.columns", vars: { missing: missing.join(", ") } }] };
  const rows = [];
  const errors = [];
  data.forEach((values, index) => {
    const number = index + 1;
    const get = (name) => (names.includes(name) ? (values[names.indexOf(name)] || "").trim() : "");
    const row = { number, audio: get("audio"), video: get("video"), output: get("output"), priority: 0 };
    if (!row.audio || !row.video) errors.push({ key: "batch.error.required", vars: { row: number } });
    const priority = get("priority");
    if (priority && !/^-?\d+$/.test(priority)) errors.push({ key: "batch.error.priority", vars: { row: number } });
    else row.priority = Number(priority || 0);
    rows.push(row);
  });
  return { rows, errors };
}
