// Building the DOM without innerHTML (no injection, no inline styles: the CSP forbids them), and formatting.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "text") el.textContent = value;
    else if (name === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value" || name === "checked" || name === "selected") el[name] = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {class: "btn", on: {click}}, "Label"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, same signature. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A page-unique id for label/for and aria pairs. */
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: returns {wrap, input}. `kind`: input type, or "select"/"textarea". */
export function field(label, { kind = "text", hint, options, wide = false, ...attrs } = {}) {
  const id = attrs.id || nextId();
  let input;
  if (kind === "select") {
    input = h("select", { ...attrs, id }, (options || []).map(([value, text]) => h("option", { value }, text)));
    if (attrs.value !== undefined) input.value = attrs.value;
  } else if (kind === "textarea") {
    input = h("textarea", { ...attrs, id });
  } else {
    input = h("input", { type: kind, ...attrs, id });
  }
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  const wrap = h("div", { class: ["field", kind === "checkbox" ? "field-check" : null, wide ? "field-wide" : null] },
    kind === "checkbox" ? [input, h("label", { for: id }, label)] : [h("label", { for: id }, label), input],
    hint ? h("p", { class: "hint", id: hintId }, hint) : null);
  return { wrap, input };
}

// --- formatting (times are shown in UTC, like the audit log and the API) -------------------

export function money(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `$${Number(value).toFixed(digits)}`;
}

/** Dollars with cents, or four decimals under a dollar (a fresh pool's spend is fractions of a cent). */
export function dollars(value) {
  return money(value, Math.abs(value) < 1 ? 4 : 2);
}

export function rate(value) {
  return value === null || value === undefined ? "—" : `$${Number(value).toFixed(3)}/h`;
}

export function duration(seconds) {
  if (!seconds || seconds < 0) return "—";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, "0")}m`;
  if (mm) return `${mm}m ${String(ss).padStart(2, "0")}s`;
  return `${ss}s`;
}

/** "2024-05-01 12:00:03" (UTC) from an RFC 3339 string or a Date. */
export function utc(when, { seconds = true } = {}) {
  if (!when) return "—";
  const d = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(d.getTime())) return String(when);
  const iso = d.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, seconds ? 19 : 16)}`;
}

/** A <time> element showing UTC, with the full timestamp for machines. */
export function timeEl(when) {
  if (!when) return "—";
  return h("time", { datetime: new Date(when).toISOString(), title: `${new Date(when).toISOString()}` }, utc(when));
}

export function short(id, n = 10) {
  if (!id) return "—";
  return id.length > n + 1 ? `${id.slice(0, n)}…` : id;
}

/** A value from a datetime-local input (read as UTC) to RFC 3339, or "". */
export function localInputToUtc(value) {
  if (!value) return "";
  const withSeconds = value.length === 16 ? `${value}:00` : value;
  return `${withSeconds}Z`;
}

/** An RFC 3339 time to a datetime-local input value (UTC). */
export function utcToLocalInput(when) {
  if (!when) return "";
  return new Date(when).toISOString().slice(0, 19);
}

/** A state badge: the word is always shown, the colour only repeats it. */
export function badge(state, extra = "") {
  const known = ["renting", "loading", "ready", "claimed", "terminating", "terminated", "failed"];
  const cls = known.includes(state) ? `badge badge-${state}` : "badge";
  return h("span", { class: [cls, extra] }, state || "unknown");
}

/** The instance row's state plus a "failed extraction" style qualifier when it failed while loading. */
export function stateLabel(row) {
  return row.failure && !["terminated", "failed"].includes(row.state) ? `${row.state} (${row.failure} failed)` : row.state;
}

export function download(filename, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const href = URL.createObjectURL(blob);
  const a = h("a", { href, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}
