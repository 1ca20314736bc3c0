// The pool as it changes: a snapshot then every change from GET /api/v1/stream, with uptimes and costs
// advanced locally each second (no polling: the rate limit is per credential), and the spend-rate history.

import { api, stream } from "./api.js";

/** States in which the provider may be charging (the pool's BILLING_PHASES). */
export const BILLING = new Set(["loading", "ready", "claimed", "terminating"]);
export const ENDED = new Set(["terminated", "failed"]);
const HISTORY_MS = 60 * 60 * 1000;
const SAMPLE_EVERY_MS = 10000;

export class LivePool {
  constructor({ onChange = () => {}, onEvent = () => {}, onState = () => {}, onHistory = () => {} } = {}) {
    this.onChange = onChange;
    this.onHistory = onHistory;
    this.onEvent = onEvent;
    this.onState = onState;
    this.summary = null;
    this.rows = new Map(); // id -> instance row as last received, plus seenAt (ms)
    this.spendToday = 0;
    this.samples = []; // [{t, v}] spend rate ($/h) over time
    this.lastTick = Date.now();
    this.lastSample = 0;
    this.seeded = false;
  }

  start() {
    this.feed = stream("/api/v1/stream", { as: "admin", onEvent: (kind, data) => this.receive(kind, data), onState: this.onState });
    this.timer = setInterval(() => this.tick(), 1000);
  }

  stop() {
    if (this.feed) this.feed.close();
    clearInterval(this.timer);
  }

  receive(kind, data) {
    const now = Date.now();
    if (kind === "snapshot") {
      this.summary = data;
      this.rows = new Map(data.instances.map((row) => [row.id, { ...row, seenAt: now }]));
      this.spendToday = data.spend_today;
      this.lastTick = now;
      this.sample(now, true);
      this.onChange("snapshot");
      if (!this.seeded) {
        this.seeded = true;
        this.seed().catch(() => {}); // the chart then starts from now: not worth an error
      }
      return;
    }
    if (kind !== "pool" || !this.summary) return;
    if (data.instance) {
      this.rows.set(data.instance.id, { ...data.instance, seenAt: now });
    } else {
      if (typeof data.safe_mode === "boolean") {
        if (data.safe_mode !== this.summary.safe_mode) this.summary.safe_mode_reason = "";
        this.summary.safe_mode = data.safe_mode;
      }
      if (data.config) this.summary.config = data.config;
      if (data.problems) this.summary.problems = data.problems;
      if (data.type === "SafeModeChanged" && data.safe_mode) this.fetchReason();
    }
    this.sample(now, true);
    this.onEvent(data);
    this.onChange(data.instance ? "instance" : "config", data);
  }

  /** Why safe mode is on (the stream carries the flag, not the reason): one read of the summary. */
  async fetchReason() {
    try {
      const summary = await api("GET", "/api/v1/pool", { as: "admin" });
      if (this.summary && summary.safe_mode === this.summary.safe_mode) {
        this.summary.safe_mode_reason = summary.safe_mode_reason;
        this.onChange("config");
      }
    } catch {
      // the banner then shows no reason; not worth an error
    }
  }

  /** The current spend rate in $/h. */
  rate() {
    let total = 0;
    for (const row of this.rows.values()) if (BILLING.has(row.state)) total += row.dph || 0;
    return total;
  }

  /** A row with uptime and accrued cost advanced to now. */
  current(row, now = Date.now()) {
    if (!BILLING.has(row.state)) return row;
    const elapsed = Math.max(0, (now - row.seenAt) / 1000);
    return { ...row, uptime_s: row.uptime_s + elapsed, accrued_cost: row.accrued_cost + ((row.dph || 0) * elapsed) / 3600 };
  }

  tick() {
    const now = Date.now();
    if (new Date(now).getUTCDate() !== new Date(this.lastTick).getUTCDate()) this.spendToday = 0; // a new UTC day
    this.spendToday += (this.rate() * (now - this.lastTick)) / 3600000;
    this.lastTick = now;
    this.sample(now, false);
    this.onChange("tick");
  }

  sample(now, changed) {
    if (!changed && now - this.lastSample < SAMPLE_EVERY_MS) return;
    this.lastSample = now;
    this.samples.push({ t: now, v: this.rate() });
    const cutoff = now - HISTORY_MS;
    while (this.samples.length > 2 && this.samples[1].t < cutoff) this.samples.shift();
  }

  /** Rebuild the last hour's spend rate from the pool's events (rented → terminated, per instance). */
  async seed() {
    const now = Date.now();
    const since = new Date(now - HISTORY_MS).toISOString();
    const spans = new Map(); // id -> {start, end, dph}
    const recent = [];
    let after;
    for (let page = 0; page < 3; page += 1) {
      const data = await api("GET", "/api/v1/events", { as: "admin",
        query: { context: "pool", aggregate_type: "instance", since, after, limit: 500 } });
      recent.push(...data.items.slice(-20));
      for (const item of data.items) {
        if (!item.occurred_at) continue;
        const t = Date.parse(item.occurred_at);
        const span = spans.get(item.aggregate) || { start: null, end: null, dph: null };
        if (item.type === "InstanceRented") {
          span.start = t;
          span.dph = item.data.dph;
        } else if (item.type === "Terminated" || item.type === "RentFailed") {
          span.end = t;
        }
        spans.set(item.aggregate, span);
      }
      if (data.next === null || data.next === undefined) break;
      after = data.next;
    }
    for (const row of this.rows.values()) { // billing since before the window
      if (BILLING.has(row.state) && !spans.has(row.id)) spans.set(row.id, { start: null, end: null, dph: row.dph });
    }
    const from = now - HISTORY_MS;
    const changes = [];
    for (const [id, span] of spans) {
      const dph = span.dph ?? this.rows.get(id)?.dph ?? 0;
      if (!dph || (span.start === null && span.end === null && !BILLING.has(this.rows.get(id)?.state))) continue;
      changes.push({ t: span.start ?? from, d: dph });
      if (span.end !== null) changes.push({ t: span.end, d: -dph });
    }
    changes.sort((a, b) => a.t - b.t);
    const history = [];
    let level = 0;
    for (const change of changes) {
      level = Math.max(0, level + change.d);
      history.push({ t: Math.max(change.t, from), v: Math.round(level * 1e6) / 1e6 });
    }
    const firstLive = this.samples.length ? this.samples[0].t : now;
    this.samples = [...history.filter((p) => p.t < firstLive), ...this.samples];
    this.onHistory(recent.slice(-20));
    this.onChange("history");
  }
}
