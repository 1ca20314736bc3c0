// Studio: write a prompt (or upload your own workflow), see what it costs, generate, watch it live over the
// stream, get the result; recent generations below.

import { hasAccount } from "../session.js";
import { api } from "../api.js";
import { h, replace, money, timeEl } from "../dom.js";
import { ACTIVE, older, followJobs, loadMuses, statusBadge, costOf, media, listAll } from "../gen.js";
import { pageHeader, section, showError, clearMessages, tableWrap, empty } from "../ui.js";
import { studioForm } from "./studio-form.js";
import { JobPanel } from "./studio-job.js";

const ESTIMATE_DELAY_MS = 450;
const HISTORY_PAGE = 10;

export function render(main, { params, session }) {
  if (!hasAccount()) {
    replace(main, pageHeader("Studio", "Generate images and short videos on the pool's GPUs."),
      h("p", {}, "Generations belong to accounts. ",
        h("a", { href: "#/signin?next=%2Fstudio" }, "Sign in"), " with your account or the admin key to use the studio."));
    return () => {};
  }
  const controller = new AbortController();
  const signal = controller.signal;
  const conn = h("span", { class: "conn conn-connecting", role: "status" }, "Connecting…");
  const estimate = h("p", { class: "estimate", id: "estimate", role: "status", "aria-live": "polite" });
  const generate = h("button", { type: "submit", class: "btn btn-primary btn-big" }, "Generate");
  const formCard = h("section", { class: "card", "aria-labelledby": "new-gen" }, h("h2", { id: "new-gen" }, "New generation"),
    h("p", { class: "muted" }, "Loading templates…"));
  const panel = new JobPanel({ signal, onSeed: (seed) => form && form.setSeed(seed), onFinished: finished,
    onChange: (job) => history.upsert(job) });
  const history = historyTable({ signal, onShow: (job) => { panel.track(job); panel.el.scrollIntoView({ block: "nearest" }); },
    onReuse: (job) => form && form.reuse(job) && form.focus(), museName: (id) => muses.find((m) => m.id === id)?.muse.name });
  let form = null;
  let muses = [];

  // --- the estimate, debounced; stale answers are dropped ------------------------------------
  let estimateTimer = null;
  let estimateSeq = 0;
  let estimateAbort = null;
  function scheduleEstimate() {
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(runEstimate, ESTIMATE_DELAY_MS);
  }
  async function runEstimate() {
    const missing = form.missing();
    form.showProblems(null);
    if (missing) {
      estimate.textContent = missing;
      return;
    }
    const seq = ++estimateSeq;
    if (estimateAbort) estimateAbort.abort();
    estimateAbort = new AbortController();
    estimate.textContent = "Estimating…";
    try {
      const e = await api("POST", "/api/v1/generations/estimate", { body: form.body(), as: "user", signal: estimateAbort.signal });
      if (seq !== estimateSeq) return;
      replace(estimate, "Estimated cost ", h("strong", {}, `≈ ${money(e.estimated_cost)}`),
        ` · about ${Math.max(1, Math.round(e.expected_seconds))} s of GPU time at $${e.dph.toFixed(2)}/h`,
        e.checkpoint ? [" · ", h("code", {}, e.checkpoint)] : null);
    } catch (error) {
      if (error.name === "AbortError" || seq !== estimateSeq) return;
      const listed = error.details && error.details.node_errors && Object.keys(error.details.node_errors).length;
      replace(estimate, h("span", { class: "estimate-error" },
        listed ? "Cannot estimate: fix the problems above first." : `Cannot estimate: ${error.message}`));
      if (listed) form.showProblems(error.details, "Problems in your workflow");
    }
  }

  async function submit(event) {
    event.preventDefault();
    if (!form.el.reportValidity()) return;
    const body = form.body();
    if (!body) return;
    generate.disabled = true;
    generate.setAttribute("aria-busy", "true");
    try {
      const created = await api("POST", "/api/v1/generations", { as: "user",
        body: { ...body, idempotency_key: `ui-${crypto.randomUUID()}` } });
      clearMessages({ keepSticky: true });
      form.showProblems(null);
      panel.track(created.generation, { fresh: true });
      history.upsert(created.generation, { prepend: true });
      panel.el.scrollIntoView({ block: "nearest" });
    } catch (error) {
      showError(error, "Generate");
      if (error.details) form.showProblems(error.details, "Problems in your workflow");
    } finally {
      generate.disabled = false;
      generate.removeAttribute("aria-busy");
    }
  }

  function finished(job) {
    history.upsert(job);
  }

  async function start() {
    let info;
    try {
      [info, muses] = await Promise.all([api("GET", "/api/v1/templates", { as: "user", signal }), loadMuses(signal)]);
    } catch (error) {
      showError(error, "Loading templates");
      replace(formCard, h("h2", { id: "new-gen" }, "New generation"), empty("The templates could not be loaded; reload to try again."));
      return;
    }
    form = studioForm({ info, muses, onChange: scheduleEstimate,
      loadOutputs: () => listAll("/api/v1/gallery", { query: { limit: 50 }, cursorParam: "before", max: 50, signal }).catch(() => []),
      actions: h("div", { class: "generate-bar" }, estimate, generate) });
    form.el.addEventListener("submit", submit);
    const museId = params.get("muse");
    if (museId) form.setMuse(museId);
    replace(formCard, h("h2", { id: "new-gen" }, "New generation"), form.el);
    runEstimate();
    const active = await history.load();
    if (active && !panel.job) panel.track(active);
  }

  const feed = followJobs({
    onJob: (job) => {
      panel.update(job);
      history.upsert(job, { prepend: true });
    },
    onProgress: (event) => panel.progress(event),
    onPool: () => panel.poolChanged(),
    onState: (state, error) => {
      const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", stopped: "Disconnected" }[state] || state;
      conn.className = `conn conn-${state}`;
      conn.textContent = error ? `${text}: ${error.message}` : text;
      panel.streamState(state === "live");
    },
  });

  replace(main,
    pageHeader("Studio", "Generate images and short videos on the pool's GPUs; progress is live.", conn),
    h("div", { class: "studio" }, formCard, panel.el),
    section("Recent generations", history.el));
  start();
  return () => {
    controller.abort();
    feed.close();
    panel.stop();
    clearTimeout(estimateTimer);
    if (estimateAbort) estimateAbort.abort();
  };
}

/** The recent generations table: loaded once, then kept current from the stream. */
function historyTable({ signal, onShow, onReuse, museName }) {
  const rows = new Map(); // id -> tr
  const body = h("tbody");
  const table = h("table", { class: "history" },
    h("thead", {}, h("tr", {}, ["Created (UTC)", "Status", "What", "Cost", "Result", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Show older");
  const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  let next = null;

  function row(job) {
    const prompt = job.params && job.params.prompt ? String(job.params.prompt) : "";
    const what = [job.template || "own workflow", job.muse_id ? ` · muse ${museName(job.muse_id) || ""}` : ""].join("");
    const show = h("button", { type: "button", class: "btn btn-small", "aria-label": `Show generation ${job.id}` }, "Show");
    show.addEventListener("click", () => onShow(job));
    const reuse = job.template ? h("button", { type: "button", class: "btn btn-small", "aria-label": `Reuse the settings of ${job.id}` },
      "Reuse") : null;
    if (reuse) reuse.addEventListener("click", () => onReuse(job));
    const out = (job.outputs || [])[0];
    return h("tr", { "data-id": job.id },
      h("td", {}, timeEl(job.created_at)), h("td", {}, statusBadge(job.status)),
      h("td", { class: "what" }, h("span", { class: "tag" }, what), " ",
        h("span", { title: prompt }, prompt.length > 90 ? `${prompt.slice(0, 90)}…` : prompt)),
      h("td", { class: "num" }, job.status === "completed" || job.cost !== null ? costOf(job) : "—"),
      h("td", {}, out ? media(out, `Result of ${prompt || job.id}`, { cls: "history-thumb" }) : "—"),
      h("td", {}, h("div", { class: "actions" }, show, reuse)));
  }

  function draw() {
    replace(box, rows.size ? tableWrap("Recent generations", table) : empty("No generations yet: your first one appears here."), more);
  }

  async function load(before = null) {
    try {
      const page = await api("GET", "/api/v1/generations", { as: "user", signal, query: { limit: HISTORY_PAGE, before } });
      for (const job of page.items) if (!rows.has(job.id)) {
        const tr = row(job);
        rows.set(job.id, { tr, job });
        body.append(tr);
      }
      next = page.next ?? null;
      more.hidden = next === null;
      draw();
      return before ? null : page.items.find((j) => ACTIVE.has(j.status)) || null;
    } catch (error) {
      showError(error, "Recent generations");
      replace(box, empty("Your generations could not be listed."));
      return null;
    }
  }
  more.addEventListener("click", () => load(next));

  return {
    el: box,
    load,
    /** Show a job's newest state (a new one goes on top). */
    upsert(job, { prepend = false } = {}) {
      const known = rows.get(job.id);
      if (known) {
        if (older(job, known.job)) return;
        if (known.job.status === job.status && known.job.outputs?.length === job.outputs?.length) return;
        const tr = row(job);
        known.tr.replaceWith(tr);
        rows.set(job.id, { tr, job });
      } else if (prepend) {
        const tr = row(job);
        body.prepend(tr);
        rows.set(job.id, { tr, job });
        draw();
      }
    },
  };
}
