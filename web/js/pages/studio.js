// Studio: write a prompt (or upload your own workflow), see what it costs, generate, watch it live over the
// stream, get the result; recent generations below.

import { hasAccount } from "../session.js";
import { api } from "../api.js";
import { h, replace, money, timeEl } from "../dom.js";
import { ACTIVE, older, followJobs, loadMuses, statusBadge, costOf, media, listAll } from "../gen.js";
import { foldPool, poolNoteBanners } from "../pool-notes.js";
import { pageHeader, section, showError, clearErrors, tableWrap, empty, busy } from "../ui.js";
import { studioForm } from "./studio-form.js";
import { JobPanel } from "./studio-job.js";

const ESTIMATE_DELAY_MS = 450;
const HISTORY_PAGE = 10;
const POOL_DRAW_MS = 500; // pool changes come in bursts; the notes are redrawn once per burst
const KEPT = "stoker.studio.form";
const REUSE = "stoker.studio.reuse"; // settings the gallery sends ("reuse these settings", "variation")
let keptWorkflow = null; // the uploaded workflow, kept in memory while you visit other pages

function loadKept() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(KEPT) || "null");
    return kept ? { ...kept, ...(keptWorkflow || {}) } : null;
  } catch {
    return null;
  }
}

function keep(state) {
  const { workflow, fileName, ...rest } = state;
  keptWorkflow = workflow ? { workflow, fileName } : null;
  try {
    sessionStorage.setItem(KEPT, JSON.stringify(rest));
  } catch {
    // storage full or off: the form is then only kept while the page is open
  }
}

function takeReuse() {
  const raw = sessionStorage.getItem(REUSE);
  sessionStorage.removeItem(REUSE);
  try {
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

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
  const generate = h("button", { type: "submit", class: "btn btn-primary btn-big", "aria-keyshortcuts": "Control+Enter Meta+Enter",
    title: "Generate (Ctrl+Enter)" }, "Generate");
  const poolNotes = h("div", { class: "pool-notes", id: "pool-notes", role: "status", "aria-live": "polite" });
  const formCard = h("section", { class: "card", "aria-labelledby": "new-gen" }, h("h2", { id: "new-gen" }, "New generation"),
    h("p", { class: "muted" }, "Loading templates…"));
  const museName = (id) => muses.find((m) => m.id === id)?.muse.name;
  const reuse = (job, options) => {
    if (form && form.reuse(job, options)) {
      form.focus();
      formCard.scrollIntoView({ block: "nearest" });
    }
  };
  const panel = new JobPanel({ signal, onSeed: (seed) => form && form.setSeed(seed), onFinished: finished,
    onChange: (job) => history.upsert(job), onReuse: reuse, museName });
  const history = historyTable({ signal, onShow: (job) => { panel.track(job); panel.el.scrollIntoView({ block: "nearest" }); },
    onReuse: (job) => reuse(job), onCancel: (job) => panel.update(job), museName });
  let form = null;
  let muses = [];

  // --- the estimate, debounced; stale answers are dropped ------------------------------------
  let estimateTimer = null;
  let estimateSeq = 0;
  let estimateAbort = null;
  function scheduleEstimate() {
    clearTimeout(estimateTimer);
    const missing = form ? form.missing() : "";
    if (missing) { // said at once (a template change, a file that is not JSON): nothing to ask the gateway
      estimateSeq += 1;
      if (estimateAbort) estimateAbort.abort();
      form.showProblems(null);
      estimate.textContent = missing;
      return;
    }
    estimate.textContent = "Estimating…";
    estimateTimer = setTimeout(runEstimate, ESTIMATE_DELAY_MS);
  }
  async function runEstimate() {
    const missing = form.missing();
    form.showProblems(null);
    if (missing) {
      estimateSeq += 1; // an answer still on its way is stale now
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
    const missing = form.missing();
    if (!form.el.reportValidity()) return;
    const body = form.body();
    if (!body || missing) { // say why nothing runs (a file that is not JSON, no image chosen yet)
      replace(estimate, h("span", { class: "estimate-error" }, missing || "Nothing to generate yet."));
      return;
    }
    generate.disabled = true;
    generate.setAttribute("aria-busy", "true");
    try {
      const created = await api("POST", "/api/v1/generations", { as: "user",
        body: { ...body, idempotency_key: `ui-${crypto.randomUUID()}` } });
      clearErrors();
      form.showProblems(null);
      panel.track(created.generation, { fresh: true });
      history.upsert(created.generation, { prepend: true });
      panel.el.scrollIntoView({ block: "nearest" });
    } catch (error) {
      const listed = error.details && error.details.node_errors && Object.keys(error.details.node_errors).length;
      if (listed) { // the problems are listed under the form: say so once here instead of repeating them
        const short = Object.assign(Object.create(Object.getPrototypeOf(error)), error,
          { message: "invalid workflow: nothing was queued; the problems are listed under the form" });
        showError(short, "Generate");
        form.showProblems(error.details, "Problems in your workflow");
      } else {
        showError(error, "Generate");
      }
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
    form = studioForm({ info, muses, onChange: () => { keep(form.state()); scheduleEstimate(); },
      loadOutputs: () => listAll("/api/v1/gallery", { query: { limit: 50 }, cursorParam: "before", max: 50, signal }).catch(() => []),
      actions: h("div", { class: "generate-bar" }, estimate,
        h("div", { class: "generate-go" }, generate, h("span", { class: "hint shortcut" }, "or ", h("kbd", {}, /Mac|iP(hone|ad)/.test(navigator.platform) ? "⌘" : "Ctrl"), "+",
          h("kbd", {}, "Enter")))) });
    form.el.addEventListener("submit", submit);
    form.el.addEventListener("keydown", (event) => { // Ctrl+Enter (Cmd+Enter on a Mac) generates from anywhere in the form
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !generate.disabled) {
        event.preventDefault();
        form.el.requestSubmit(generate);
      }
    });
    form.restore(loadKept());
    const sent = takeReuse();
    if (sent) form.reuse(sent);
    const museId = params.get("muse");
    if (museId) form.setMuse(museId);
    keep(form.state());
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
    onPool: (kind, data) => {
      panel.poolChanged();
      poolState = foldPool(poolState, kind, data);
      if (kind === "snapshot") drawPool(); // the first picture at once; changes come in bursts
      else schedulePoolDraw();
    },
    onState: (state, error) => {
      const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", stopped: "Disconnected" }[state] || state;
      conn.className = `conn conn-${state}`;
      conn.textContent = error ? `${text}: ${error.message}` : text;
      panel.streamState(state === "live");
    },
  });

  // --- the pool's notes (safe mode, a burst beyond its minimum and how long it bills), from the stream ---
  let poolState = null;
  let poolTimer = null;
  function schedulePoolDraw() {
    if (!poolTimer) poolTimer = setTimeout(drawPool, POOL_DRAW_MS);
  }
  function drawPool() {
    clearTimeout(poolTimer);
    poolTimer = null;
    const banners = poolNoteBanners(poolState);
    if (banners.map((el) => el.textContent).join("\n") !== [...poolNotes.children].map((el) => el.textContent).join("\n")) {
      replace(poolNotes, banners);
    }
  }

  replace(main,
    pageHeader("Studio", "Generate images and short videos on the pool's GPUs; progress is live.", conn),
    poolNotes,
    h("div", { class: "studio" }, formCard, panel.el),
    section("Recent generations", history.el));
  start();
  return () => {
    clearTimeout(poolTimer);
    if (form) keep(form.state());
    controller.abort();
    feed.close();
    panel.stop();
    clearTimeout(estimateTimer);
    if (estimateAbort) estimateAbort.abort();
  };
}

/** The recent generations table: loaded once, then kept current from the stream. */
function historyTable({ signal, onShow, onReuse, onCancel, museName }) {
  const rows = new Map(); // id -> tr
  const body = h("tbody");
  const table = h("table", { class: "history cards-on-phone" },
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
    const cancel = ACTIVE.has(job.status) && !job.cancel_requested
      ? h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Cancel generation ${job.id}` }, "Cancel")
      : null;
    if (cancel) {
      cancel.addEventListener("click", async () => {
        const done = await busy(cancel, () => api("POST", `/api/v1/generations/${encodeURIComponent(job.id)}/cancel`,
          { as: "user" }), "Cancel");
        if (done) {
          onCancel(done);
          upsert(done);
        }
      });
    }
    const out = (job.outputs || [])[0];
    return h("tr", { "data-id": job.id },
      h("td", { "data-label": "Created" }, timeEl(job.created_at)), h("td", { "data-label": "Status" }, statusBadge(job.status)),
      h("td", { class: "what", "data-label": "What" }, h("span", {}, h("span", { class: "tag" }, what), " ",
        h("span", { title: prompt }, prompt.length > 90 ? `${prompt.slice(0, 90)}…` : prompt))),
      h("td", { class: "num", "data-label": "Cost" }, job.status === "completed" || job.cost !== null ? costOf(job) : "—"),
      h("td", { "data-label": "Result" }, out ? media(out, `Result of ${prompt || job.id}`, { cls: "history-thumb" }) : "—"),
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, show, reuse, cancel)));
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

  /** Show a job's newest state (a new one goes on top). */
  function upsert(job, { prepend = false } = {}) {
    const known = rows.get(job.id);
    if (known) {
      if (older(job, known.job)) return;
      if (known.job.status === job.status && known.job.outputs?.length === job.outputs?.length
        && known.job.cancel_requested === job.cancel_requested) return;
      const tr = row(job);
      known.tr.replaceWith(tr);
      rows.set(job.id, { tr, job });
    } else if (prepend) {
      const tr = row(job);
      body.prepend(tr);
      rows.set(job.id, { tr, job });
      draw();
    }
  }

  return { el: box, load, upsert };
}
