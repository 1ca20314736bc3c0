// The studio's current generation: its status and waiting reason, a progress bar fed by the stream, what has
// happened so far, then the result with downloads (or the error, with ComfyUI's node errors).

import { api } from "../api.js";
import { h, replace, duration } from "../dom.js";
import { ACTIVE, older, phaseOf, statusBadge, costOf, price, bytes, seconds, media, downloadLink, nodeErrors } from "../gen.js";
import { openLightbox } from "../lightbox.js";
import { busy } from "../ui.js";

const REFRESH_MS = 600; // coalesces bursts of pool changes into one read of the job
const POLL_MS = 5000; // while queued (the wait estimate moves) or while the stream is down

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

export class JobPanel {
  constructor({ signal, onSeed = () => {}, onFinished = () => {}, onChange = () => {} }) {
    this.signal = signal;
    this.onSeed = onSeed;
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

  /** Follow a job from now on (`fresh`: just submitted, so what happens is watched from the start). */
  track(job, { fresh = false } = {}) {
    this.job = job;
    this.latest = null;
    this.milestones = [];
    this.started = Date.now();
    this.lastRead = Date.now();
    if (fresh) this.note("Queued");
    else {
      const at = (when) => (when ? Date.parse(when) : null);
      this.started = at(job.created_at) || Date.now();
      this.note("Queued", this.started);
      if (job.started_at) this.note("Started on a GPU", at(job.started_at));
    }
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

  note(text, at = Date.now()) {
    const last = this.milestones[this.milestones.length - 1];
    if (last && last.text === text) return;
    this.milestones.push({ text, at });
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
    if (active) {
      const label = phase.step ? "sampling…" : phase.text;
      this.phase.textContent = capital(label);
      const step = label.startsWith("running ") ? "running the workflow…" : label.replace(/ \(about .*\)$/, "");
      this.note(capital(step)); // one line per phase, not per node or step
    } else if (job.status === "completed") {
      const took = job.seconds !== null && job.seconds !== undefined ? ` in ${seconds(job.seconds)} of GPU time` : "";
      this.phase.textContent = `Done${took}.`;
      this.note(`Completed${took}, cost ${price(job.cost)}`);
      this.elapsed.textContent = "";
    } else {
      this.phase.textContent = job.status === "failed" ? `Failed: ${job.error ? job.error.message : "unknown error"}` : "Cancelled.";
      this.note(capital(job.status));
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
    replace(this.list, this.milestones.map((m) => h("li", {},
      h("span", { class: "muted" }, `+${Math.max(0, (m.at - this.started) / 1000).toFixed(1)} s`), " ", m.text)));
    this.drawResult(job);
    this.onChange(job);
  }

  drawResult(job) {
    if (job.status === "failed" && job.error) {
      const where = job.error.node_id ? ` (node ${job.error.node_id}${job.error.node_type ? `, ${job.error.node_type}` : ""})` : "";
      replace(this.result, h("div", { class: "banner banner-danger" }, h("strong", {}, `${job.error.reason}${where}: `), job.error.message),
        nodeErrors(job.error.node_errors, "ComfyUI refused the workflow"));
      return;
    }
    if (job.status !== "completed" || this.drawn === job.id) {
      if (job.status !== "completed") {
        replace(this.result);
        this.drawn = null;
      }
      return;
    }
    this.drawn = job.id;
    const prompt = job.params && job.params.prompt ? job.params.prompt : "your generation";
    const outputs = job.outputs || [];
    const alt = (i) => `Result ${i + 1} of ${outputs.length}: ${prompt}`;
    const figures = outputs.map((out, i) => {
      const open = h("button", { type: "button", class: "thumb-button", "aria-label": `Open result ${i + 1} full size` },
        media(out, alt(i), { lazy: false, cls: "result-media" }));
      open.addEventListener("click", () => openLightbox(outputs, i, { altOf: (o) => alt(outputs.indexOf(o)) }));
      return h("figure", { class: "result-item" }, open,
        h("figcaption", {}, downloadLink(out), h("span", { class: "muted" }, ` ${bytes(out.size)}`)));
    });
    const p = job.params || {};
    const seed = p.seed !== undefined ? h("button", { type: "button", class: "btn btn-small" }, "Use this seed") : null;
    if (seed) seed.addEventListener("click", () => this.onSeed(p.seed));
    replace(this.result,
      outputs.length ? h("div", { class: "result-grid" }, figures) : h("p", { class: "empty" }, "The generation produced no outputs."),
      h("dl", { class: "kv facts" },
        p.seed !== undefined ? [h("dt", {}, "Seed"), h("dd", {}, h("code", {}, String(p.seed)), " ", seed)] : null,
        p.width ? [h("dt", {}, "Size"), h("dd", {}, `${p.width}×${p.height}, ${p.steps} steps`)] : null,
        job.checkpoint ? [h("dt", {}, "Checkpoint"), h("dd", {}, h("code", {}, job.checkpoint))] : null,
        [h("dt", {}, "Cost"), h("dd", {}, costOf(job), job.seconds ? ` for ${seconds(job.seconds)}` : "")]));
  }
}
