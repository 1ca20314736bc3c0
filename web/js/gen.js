// What the generation pages share: words for a job's state, the user's job stream, outputs and node errors.

import { api, stream } from "./api.js";
import { h, s, money } from "./dom.js";

/** The waiting reasons of GET /api/v1/generations/{id}, in words a person waiting understands. */
const WAITING = {
  behind_jobs: (w) => `waiting behind ${w.jobs_ahead || "other"} job${w.jobs_ahead === 1 ? "" : "s"}…`,
  no_instance: () => "requesting a GPU…",
  renting_instance: () => "renting a GPU…",
  instance_loading: (w) => (w.message.includes("downloading") ? `GPU ${w.message.replace("an instance is ", "")}…`
    : "GPU starting (ComfyUI and models)…"),
  instances_busy: () => "all GPUs are busy…",
  starting: () => "starting…",
  loading_model: () => "loading model…",
};
/** Reasons the pool will not rent at all: said as the service words them, with no time estimate (there is none). */
export const BLOCKED = new Set(["safe_mode", "pool_closed", "cannot_rent"]);

export const ACTIVE = new Set(["queued", "running"]);
const RANK = { queued: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };

/** Whether `next` is an older state of the job than `known` (a read answered after a newer event). */
export function older(next, known) {
  return (RANK[next.status] ?? 0) < (RANK[known.status] ?? 0);
}
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** "about 12 s" / "about 5 min" for an expected wait, or "". */
export function about(seconds) {
  if (seconds === null || seconds === undefined || !(seconds > 0)) return "";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s`;
  return `about ${Math.round(seconds / 60)} min`;
}

/** What a running node is doing, in words (null: say its class). */
function nodeWords(nodeType) {
  if (/Loader/.test(nodeType)) return "loading model…";
  if (/^(Save|Preview)/.test(nodeType)) return "saving the result…";
  if (/Sampler/.test(nodeType)) return "sampling…";
  if (/VAEDecode/.test(nodeType)) return "decoding the image…";
  if (/TextEncode/.test(nodeType)) return "reading the prompt…";
  return null;
}

/** What a job is doing now, from its view and its latest progress event: {text, step, max}. */
export function phaseOf(job, progress = null) {
  const done = { completed: "done", failed: "failed", cancelled: "cancelled" }[job.status];
  if (done) return { text: done, step: null, max: null };
  const p = progress || job.progress;
  if (job.status === "running") {
    if (p && p.kind === "progress" && p.max) return { text: `step ${p.step}/${p.max}`, step: p.step, max: p.max };
    if (p && p.kind === "executing" && p.node_type) {
      return { text: nodeWords(p.node_type) || `running ${p.node_type}…`, step: null, max: null };
    }
    return { text: "starting on a GPU…", step: null, max: null };
  }
  if (job.waiting && BLOCKED.has(job.waiting.reason)) {
    return { text: `waiting: ${job.waiting.message}.`, step: null, max: null, blocked: true };
  }
  if (job.waiting) {
    const words = WAITING[job.waiting.reason];
    const text = words ? words(job.waiting) : `${job.waiting.message}…`;
    const wait = about(job.waiting.expected_wait_s);
    return { text: wait ? `${text} (${wait})` : text, step: null, max: null };
  }
  return { text: "queued…", step: null, max: null };
}

/** A job status as a badge (the word is always shown; the colour repeats it). */
export function statusBadge(status) {
  return h("span", { class: `badge job-${status}` }, status);
}

/** Dollars, with "< $0.0001" for the fractions of a cent a short job costs. */
export function price(value) {
  return value > 0 && value < 0.0001 ? "< $0.0001" : money(value);
}

/** The job's cost: actual once ended, else the estimate. */
export function costOf(job) {
  return job.cost !== null && job.cost !== undefined ? price(job.cost) : `≈ ${price(job.estimated_cost)}`;
}

/** A size in bytes, KiB or MiB. */
export function bytes(n) {
  if (n < 1024) return `${n} bytes`;
  return n < 1024 * 1024 ? `${Math.round(n / 1024)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

/** "1.3 s" of GPU time ("under 0.1 s" for less). */
export function seconds(value) {
  return value < 0.1 ? "under 0.1 s" : `${value.toFixed(1)} s`;
}

/** An output id (``<job>.<nn>``) from an object name (``gen/<user>/<job>/<nn>-<file>``), or null. */
export function outputIdOf(objectName) {
  const parts = String(objectName).split("/");
  if (parts.length < 4 || parts[0] !== "gen") return null;
  const match = /^(\d+)-/.exec(parts[parts.length - 1]);
  return match ? `${parts[parts.length - 2]}.${match[1].padStart(2, "0")}` : null;
}

/** The URL of an output's bytes. */
export function outputUrl(id) {
  return `/api/v1/outputs/${encodeURIComponent(id)}`;
}

/** An output shown inline: <video> for video types, else <img> (animated PNGs play in an <img>). */
export function media(output, alt, { lazy = true, cls = "" } = {}) {
  const src = output.url || outputUrl(output.id);
  if ((output.content_type || "").startsWith("video/")) {
    return h("video", { src, controls: true, preload: "metadata", class: cls, "aria-label": alt });
  }
  return h("img", { src, alt, class: cls, loading: lazy ? "lazy" : null, decoding: "async" });
}

/** A download link for an output (same origin: the session cookie goes along). */
export function downloadLink(output, { label = "Download", cls = "btn btn-small" } = {}) {
  return h("a", { href: output.url || outputUrl(output.id), download: output.filename || "output", class: cls,
    "aria-label": `${label} ${output.filename || output.id}` }, label);
}

/** ComfyUI's node_errors as a readable list: node, class, each problem (`omit`: a message already shown; problems
 * it already says are left out, so ComfyUI's words appear once). */
export function nodeErrors(errors, title = "Problems in the workflow", { omit = "" } = {}) {
  const said = (e) => Boolean(omit) && omit.includes(e.details || e.message || e.type);
  const entries = Object.entries(errors || {})
    .map(([nid, entry]) => [nid, { ...entry, errors: (entry.errors || []).filter((e) => !said(e)) }])
    .filter(([, entry]) => entry.errors.length);
  if (!entries.length) return null;
  return h("div", { class: "node-errors", role: "group", "aria-label": title },
    h("h3", {}, title),
    h("ul", {}, entries.map(([nid, entry]) => h("li", {},
      h("strong", {}, `Node ${nid}`), entry.class_type ? [" ", h("code", {}, entry.class_type)] : null,
      h("ul", {}, entry.errors.map((e) => h("li", {}, e.message || e.type,
        e.details ? [": ", h("span", { class: "muted" }, e.details)] : null)))))));
}

/** Every item of a keyset-paged listing, up to `max` items. */
export async function listAll(path, { query = {}, cursorParam = "after", max = 200, signal } = {}) {
  const items = [];
  let cursor = null;
  while (items.length < max) {
    const page = await api("GET", path, { as: "user", signal, query: { ...query, [cursorParam]: cursor } });
    items.push(...page.items);
    if (page.next === null || page.next === undefined) break;
    cursor = page.next;
  }
  return items.slice(0, max);
}

/** The user's muses (for pickers). */
export function loadMuses(signal) {
  return listAll("/api/v1/muses", { query: { limit: 100 }, signal });
}

/**
 * Follow the signed-in user's jobs on GET /api/v1/stream: `onJob(generation, type)`,
 * `onProgress(event)`, `onPool(kind, data)` (the pool changed: waiting reasons may have), `onState(state)`.
 */
export function followJobs({ onJob = () => {}, onProgress = () => {}, onPool = () => {}, onState = () => {} }) {
  return stream("/api/v1/stream", {
    as: "user",
    onState,
    onEvent(kind, data) {
      if (kind === "job" && data.generation) onJob(data.generation, data.type);
      else if (kind === "progress") onProgress(data);
      else if (kind === "pool" || kind === "snapshot") onPool(kind, data);
    },
  });
}

/** How a generation was made, as a definition list: prompt, negative prompt, template, checkpoint, seed, size,
 * steps, LoRAs, muse (`s`: a job, or a gallery item's `settings`). `museName(id)` names a muse. */
export function settingsList(s, { museName = () => null, cls = "kv settings" } = {}) {
  if (!s) return null;
  const p = s.params || {};
  const row = (label, value) => (value === undefined || value === null || value === "" ? null
    : [h("dt", {}, label), h("dd", {}, value)]);
  const loras = (s.loras || []).map((l) => `${l.name}${l.strength_model !== null && l.strength_model !== undefined
    ? ` (${l.strength_model}${l.strength_clip !== null && l.strength_clip !== undefined ? ` / ${l.strength_clip}` : ""})` : ""}`);
  const muse = s.muse_id ? h("a", { href: `#/muses?id=${encodeURIComponent(s.muse_id)}` }, museName(s.muse_id) || "a muse") : null;
  return h("dl", { class: cls },
    row("Prompt", p.prompt),
    row("Negative prompt", p.negative_prompt),
    row("Template", s.template ? `${s.template}${s.preset ? ` · ${s.preset} preset` : ""}` : "your own workflow"),
    row("Checkpoint", s.checkpoint ? h("code", {}, s.checkpoint) : null),
    row("Seed", p.seed !== undefined ? h("code", {}, String(p.seed)) : null),
    row("Size", p.width && p.height ? `${p.width}×${p.height}` : null),
    row("Steps", p.steps),
    row("LoRAs", loras.length ? loras.join(", ") : (s.template ? "none" : null)),
    row("Muse", muse));
}

/** Remember a generation's settings for the studio to load ("reuse these settings", "variation"). */
export function sendToStudio(settings, { newSeed = false } = {}) {
  const params = { ...(settings.params || {}) };
  if (newSeed) params.seed = crypto.getRandomValues(new Uint32Array(1))[0];
  sessionStorage.setItem("stoker.studio.reuse", JSON.stringify({ template: settings.template, preset: settings.preset,
    muse_id: settings.muse_id || null, params }));
}

/** A small dice icon (no emoji font is needed). */
export function diceIcon() {
  return s("svg", { viewBox: "0 0 16 16", width: 16, height: 16, class: "icon", "aria-hidden": "true", focusable: "false" },
    s("rect", { x: 1.5, y: 1.5, width: 13, height: 13, rx: 3, fill: "none", stroke: "currentColor", "stroke-width": 1.5 }),
    [[5, 5], [11, 5], [8, 8], [5, 11], [11, 11]].map(([cx, cy]) => s("circle", { cx, cy, r: 1.3, fill: "currentColor" })));
}

/** A muse's prompt for `prompt`, as the generation service renders it (for a preview beside the form). */
export function musePrompt(spec, prompt, variation = "") {
  const groups = {};
  for (const g of ["basics", "body", "face", "hair", "style", "personality"]) groups[g] = { ...(spec[g] || {}) };
  const chosen = (spec.variations || []).find((v) => v.name === variation);
  for (const [g, attrs] of Object.entries(chosen ? chosen.attributes || {} : {})) Object.assign(groups[g] || {}, attrs);
  const values = { name: spec.name, prompt };
  for (const [g, attrs] of Object.entries(groups)) values[g] = Object.values(attrs).filter((v) => v.trim()).join(", ");
  const text = (spec.prompt_template || "").replace(/\{(\w+)\}/g, (whole, key) => (key in values ? values[key] : whole));
  let positive = text.split(",").map((p) => p.trim()).filter(Boolean).join(", ");
  if (chosen && chosen.prompt_suffix && chosen.prompt_suffix.trim()) positive = `${positive}, ${chosen.prompt_suffix.trim()}`;
  return positive;
}
