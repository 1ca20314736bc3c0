// What the pool is doing that someone waiting for a GPU (or paying for one) should know, from GET /api/v1/pool:
// safe mode, a burst beyond the pool's minimum (and how long the extra instances bill), and the pool's problems.

import { h } from "./dom.js";

const LIVE = new Set(["renting", "loading", "ready", "claimed"]);
const SAFE_WHY = { admin: "an admin turned it on", budget_dph: "the spend-rate cap was reached",
  budget_day: "the daily spend cap was reached" };

/** "15 min", "90 s", "2 h". */
export function span(seconds) {
  if (!(seconds > 0)) return "0 s";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

/** The pool's minimum size (the policy split names it `min_size`; before that, `desired_size`). */
export function minimumOf(config) {
  if (!config) return 0;
  return Number(config.min_size ?? config.desired_size ?? 0);
}

/**
 * The pool's notes for people, each {kind: "safe"|"burst"|"problem", text}. A burst: more live instances than the
 * minimum; the extra ones are terminated once idle for the idle timeout, and bill until then.
 */
export function poolNotes(summary) {
  if (!summary || !summary.config) return [];
  const notes = [];
  if (summary.safe_mode) {
    const why = SAFE_WHY[summary.safe_mode_reason] || summary.safe_mode_reason;
    notes.push({ kind: "safe", text: `Safe mode is on${why ? ` (${why})` : ""}: ` +
      "the pool rents no GPU, so new generations wait until an admin turns it off." });
  }
  const live = (summary.instances || []).filter((row) => LIVE.has(row.state));
  const minimum = minimumOf(summary.config);
  const extra = live.length - minimum;
  if (!summary.safe_mode && extra > 0) {
    const idle = Number(summary.config.idle_timeout_s ?? summary.config.idle_s ?? 0);
    const billing = live.filter((row) => row.state !== "renting");
    const dph = billing.length ? billing.reduce((sum, row) => sum + (row.dph || 0), 0) / billing.length : 0;
    notes.push({ kind: "burst", extra, text: `The pool has grown to ${live.length} GPU instance${live.length === 1 ? "" : "s"}, ` +
      `above its minimum of ${minimum} (a burst of jobs or a prewarm). The ${extra} extra one${extra === 1 ? "" : "s"} ` +
      `${extra === 1 ? "stops" : "stop"} after ${span(idle)} without a job and ${extra === 1 ? "bills" : "bill"} until then` +
      `${dph ? ` (about $${(dph * extra).toFixed(2)}/h together)` : ""}.` });
  }
  for (const problem of summary.problems || []) { // the pool's own list, when it has one
    const text = typeof problem === "string" ? problem : problem.message || problem.text || problem.code;
    if (text) notes.push({ kind: "problem", text });
  }
  return notes;
}

/**
 * Fold the stream's pool messages into a summary for `poolNotes` (no polling: the rate limit is per credential).
 * `snapshot`: the whole summary; `pool`: one instance's row, or safe mode and the config.
 */
export function foldPool(summary, kind, data) {
  if (kind === "snapshot") return { ...data, instances: [...(data.instances || [])] };
  if (kind !== "pool" || !summary) return summary;
  const next = { ...summary };
  if (data.instance) {
    next.instances = [...summary.instances.filter((row) => row.id !== data.instance.id), data.instance];
  } else {
    if (typeof data.safe_mode === "boolean") {
      if (data.safe_mode !== summary.safe_mode) next.safe_mode_reason = "";
      next.safe_mode = data.safe_mode;
    }
    if (data.config) next.config = data.config;
  }
  return next;
}

/** The notes as banners (role=status: announced, not alarming), or nothing. */
export function poolNoteBanners(summary) {
  return poolNotes(summary).map((note) => h("p", { class: `banner banner-${note.kind === "burst" ? "info" : "warn"} pool-note`,
    "data-kind": note.kind }, note.text));
}
