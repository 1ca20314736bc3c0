// The studio's current generation: its status and waiting reason, a progress bar fed by the stream, what has
// happened so far, then the result with downloads (or the error, with ComfyUI's node errors).

import { api } from "../api.js";
import { h, replace, duration } from "../dom.js";
import { ACTIVE, older, phaseOf, statusBadge, costOf, price, bytes, seconds, media, downloadLink, nodeErrors,
  settingsList } from "../gen.js";
import { openLightbox } from "../lightbox.js";
import { busy } from "../ui.js";

const REFRESH_MS = 600; // coalesces bursts of pool changes into one read of the job
const POLL_MS = 5000; // while queued (the wait estimate moves) or while the stream is down

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

const FAILURES = { validation: "ComfyUI refused the workflow", execution_error: "a node failed while running",
  instance_lost: "the GPU was lost", timeout: "it took too long", interrupted: "it was interrupted" };

/** A recorded step of the job (GET /api/v1/generations/{id} → timeline) in words. */
function milestoneText(m, job) {
  switch (m.kind) {
    case "queued": return "Queued";
    case "claimed": return m.detail ? `Got a GPU (${m.detail})` : "Got a GPU";
    case "started": return "Started on the GPU";
    case "attempt_lost": return `Lost the GPU${m.detail ? `: ${m.detail}` : ""}; trying again`;
    case "cancel_requested": return "Cancel requested";
    case "completed": return `Completed${job.seconds !== null && job.seconds !== undefined
      ? ` in ${seconds(job.seconds)} of GPU time` : ""}, cost ${price(job.cost)}`;
    case "failed": return `Failed${FAILURES[m.detail] ? `: ${FAILURES[m.detail]}` : ""}`;
    case "cancelled": return "Cancelled";
    default: return capital(m.kind.replace(/_/g, " "));
  }
}

export class JobPanel {
  constructor({ signal, onSeed = () => {}, onFinished = () => {}, onChange = () => {}, onReuse = () => {},
    museName = () => null }) {
    this.signal = signal;
    this.onSeed = onSeed;
    this.onReuse = onReuse;
    this.museName = museName;
    this.onFinished = onFinished;
    this.onChange = onChange;
    this.job = null;
    this.latest = null; // the newest progress event of the job
    this.milestones = [];
    this.started = 0;
    this.streamLive = false;
    this.badge = h("span");
    this.phase = h("strong", { id: "job-phase", role: "status", "aria-live": "polite" });
    this.elapsed = h("span", { class: "muted" });
    this.cancel = h("button", { type: "button", class: "btn btn-small btn-danger" }, "Cancel");
    this.cancel.addEventListener("click", () => this.cancelJob());
    this.bar = h("progress", { id: "job-progress", max: 1, "aria-labelledby": "job-phase" });
    this.step = h("span", { id: "job-step", class: "step" });
    this.list = h("ol", { class: "milestones", "aria-label": "What happened" });
    this.result = h("div", { class: "result" });
    this.body = h("div", { class: "job", hidden: true },
      h("div", { class: "job-head" }, this.badge, this.phase, this.elapsed, this.cancel),
      h("div", { class: "job-bar" }, this.bar, this.step), this.list, this.result);
    this.none = h("p", { class: "empty" }, "Nothing is generating. Write a prompt and press Generate: progress shows here.");
    this.el = h("section", { class: "card job-card", "aria-labelledby": "job-title" },
      h("h2", { id: "job-title" }, "Current generation"), this.none, this.body);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  stop() {
    clearInterval(this.ticker);
    clearTimeout(this.refreshTimer);
  }

  /**
   * Follow a job from now on (`fresh`: just submitted, so what happens is watched from the start). The timeline
   * is the job's recorded steps (server times) plus the phases watched live here; a fresh job's live phases are
   * moved onto the server's clock (the browser's may differ), an old job's are taken as they are.
   */
  track(job, { fresh = false } = {}) {
    this.job = job;
    this.latest = null;
    this.milestones = []; // phases seen live: {text, at} in server time
    this.drawn = null;
    const created = job.created_at ? Date.parse(job.created_at) : NaN;
    this.skew = fresh && !Number.isNaN(created) ? created - Date.now() : 0;
    this.base = Number.isNaN(created) ? Date.now() : created;
    this.started = this.base - this.skew; // the browser's clock, for the elapsed time
    this.lastRead = Date.now();
    this.render();
    if (ACTIVE.has(job.status) && !job.waiting && !job.progress) this.scheduleRefresh(0);
  }

  /** A newer view of a job (from the stream or a read); ignored unless it is the current one. */
  update(job) {
    if (!this.job || job.id !== this.job.id || older(job, this.job)) return;
    const was = this.job;
    const next = { ...job };
    if (!next.waiting && next.status === "queued" && was.status === "queued") next.waiting = was.waiting; // the stream has none
    if (next.progress && this.latest && next.progress.seq < this.latest.seq) next.progress = this.latest;
    if (!next.loras?.length && was.loras?.length) next.loras = was.loras; // the stream's view does not read them
    this.job = next;
    this.render();
    if (ACTIVE.has(was.status) && !ACTIVE.has(next.status)) this.onFinished(next);
    if (next.status === "queued" && !next.waiting) this.scheduleRefresh();
  }

  /** A progress event of the stream. */
  progress(event) {
    if (!this.job || event.job_id !== this.job.id || (this.latest && event.seq <= this.latest.seq)) return;
    this.latest = event;
    if (this.job.status === "queued") this.job = { ...this.job, status: "running", waiting: null };
    if (ACTIVE.has(this.job.status)) this.render();
  }

  /** The pool changed: a queued job's waiting reason may have too. */
  poolChanged() {
    if (this.job && this.job.status === "queued") this.scheduleRefresh();
  }

  /** The stream went live (again) or stopped: catch up with one read. */
  streamState(live) {
    this.streamLive = live;
    if (live && this.job && ACTIVE.has(this.job.status)) this.scheduleRefresh(0);
  }

  scheduleRefresh(delay = REFRESH_MS) {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh();
    }, delay);
  }

  async refresh() {
    if (!this.job) return;
    this.lastRead = Date.now();
    try {
      this.update(await api("GET", `/api/v1/generations/${encodeURIComponent(this.job.id)}`, { as: "user", signal: this.signal }));
    } catch {
      // the next event or poll tries again; the stream's own state is shown
    }
  }

  tick() {
    const job = this.job;
    if (!job || !ACTIVE.has(job.status)) return;
    this.elapsed.textContent = `· ${duration((Date.now() - this.started) / 1000) || "0s"}`;
    const quiet = Date.now() - (this.lastRead || 0) > POLL_MS;
    if (quiet && (job.status === "queued" || !this.streamLive)) this.scheduleRefresh(0);
  }

  note(text) {
    const last = this.milestones[this.milestones.length - 1];
    if (last && last.text === text) return;
    this.milestones.push({ text, at: Date.now() + this.skew });
  }

  /** The recorded steps and the live phases, in time order, each "+x.x s" after the job was queued. */
  timeline(job) {
    const recorded = (job.timeline || []).map((m) => ({ text: milestoneText(m, job), at: Date.parse(m.at) }));
    const entries = [...recorded, ...this.milestones].sort((a, b) => a.at - b.at);
    const out = [];
    for (const e of entries) if (!out.length || out[out.length - 1].text !== e.text) out.push(e);
    return out;
  }

  async cancelJob() {
    const job = this.job;
    const done = await busy(this.cancel, () => api("POST", `/api/v1/generations/${encodeURIComponent(job.id)}/cancel`,
      { as: "user" }), "Cancel");
    if (done) this.update(done);
  }

  render() {
    const job = this.job;
    this.none.hidden = Boolean(job);
    this.body.hidden = !job;
    if (!job) return;
    const active = ACTIVE.has(job.status);
    const phase = phaseOf(job, this.latest);
    replace(this.badge, statusBadge(job.status));
    this.cancel.hidden = !active;
    this.phase.classList.toggle("phase-blocked", Boolean(phase.blocked));
    if (active) {
      const label = phase.step ? "sampling…" : phase.text;
      this.phase.textContent = capital(label);
      const step = label.startsWith("running ") ? "running the workflow…" : label.replace(/ \(about .*\)$/, "");
      // One line per phase, not per node or step; "starting" is the recorded "Got a GPU" already.
      if (!phase.blocked && !/^starting/.test(step)) this.note(capital(step));
    } else if (job.status === "completed") {
      const took = job.seconds !== null && job.seconds !== undefined ? ` in ${seconds(job.seconds)} of GPU time` : "";
      this.phase.textContent = `Done${took}.`;
      this.elapsed.textContent = "";
    } else {
      const why = job.error && FAILURES[job.error.reason];
      this.phase.textContent = job.status === "failed" ? `Failed${why ? `: ${why}` : ""}.` : "Cancelled.";
      this.elapsed.textContent = "";
    }
    if (phase.step) {
      this.bar.max = phase.max;
      this.bar.value = phase.step;
      this.step.textContent = `Step ${phase.step} of ${phase.max}`;
    } else if (active) {
      this.bar.removeAttribute("value"); // indeterminate while waiting
      this.step.textContent = "";
    } else {
      this.bar.max = 1;
      this.bar.value = job.status === "completed" ? 1 : 0;
      this.step.textContent = "";
    }
    this.bar.hidden = !active && job.status !== "completed";
    replace(this.list, this.timeline(job).map((m) => h("li", {},
      h("span", { class: "muted" }, `+${Math.max(0, (m.at - this.base) / 1000).toFixed(1)} s`), " ", m.text)));
    this.drawResult(job);
    this.onChange(job);
  }

  drawResult(job) {
    if (job.status === "failed" && job.error) {
      // ComfyUI's words once: the message, then only the node errors it does not already say.
      const e = job.error;
      const where = e.node_id ? `Node ${e.node_id}${e.node_type ? ` (${e.node_type})` : ""}: ` : "";
      replace(this.result, h("div", { class: "banner banner-danger", id: "job-error" }, where ? h("strong", {}, where) : null,
        e.message), nodeErrors(e.node_errors, "More from ComfyUI", { omit: e.message }), this.facts(job));
      this.drawn = null;
      return;
    }
    const key = `${job.id}:${(job.loras || []).length}`;
    if (job.status !== "completed" || this.drawn === key) {
      if (job.status !== "completed") {
        replace(this.result);
        this.drawn = null;
      }
      return;
    }
    this.drawn = key;
    const prompt = job.params && job.params.prompt ? job.params.prompt : "your generation";
    const outputs = job.outputs || [];
    const alt = (i) => `Result ${i + 1} of ${outputs.length}: ${prompt}`;
    const figures = outputs.map((out, i) => {
      const open = h("button", { type: "button", class: "thumb-button", "aria-label": `Open result ${i + 1} full size` },
        media(out, alt(i), { lazy: false, cls: "result-media" }));
      open.addEventListener("click", () => openLightbox(outputs, i, { altOf: (o) => alt(outputs.indexOf(o)),
        caption: () => settingsList(job, { museName: this.museName }) }));
      return h("figure", { class: "result-item" }, open,
        h("figcaption", {}, downloadLink(out), h("span", { class: "muted" }, ` ${bytes(out.size)}`)));
    });
    replace(this.result,
      outputs.length ? h("div", { class: "result-grid" }, figures) : h("p", { class: "empty" }, "The generation produced no outputs."),
      this.facts(job));
  }

  /** How the job was made (prompt, seed, size, checkpoint, LoRAs, muse…), its cost, and what to do with it. */
  facts(job) {
    const p = job.params || {};
    const buttons = [];
    if (p.seed !== undefined) {
      const seed = h("button", { type: "button", class: "btn btn-small" }, "Use this seed");
      seed.addEventListener("click", () => this.onSeed(p.seed));
      buttons.push(seed);
    }
    if (job.template) {
      const reuse = h("button", { type: "button", class: "btn btn-small" }, "Reuse these settings");
      reuse.addEventListener("click", () => this.onReuse(job, { newSeed: false }));
      const variation = h("button", { type: "button", class: "btn btn-small" }, "Variation (new seed)");
      variation.addEventListener("click", () => this.onReuse(job, { newSeed: true }));
      buttons.push(reuse, variation);
    }
    const list = settingsList(job, { museName: this.museName, cls: "kv facts settings" });
    list.append(h("dt", {}, "Cost"), h("dd", {}, costOf(job), job.seconds ? ` for ${seconds(job.seconds)}` : ""));
    return [list, buttons.length ? h("div", { class: "actions result-actions" }, buttons) : null];
  }
}
