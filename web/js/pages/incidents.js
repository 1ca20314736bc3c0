// Admin — incident review: the events of an instance, a correlation id or a time window, a scrubber
// replaying the pool as it was after each event (GET /api/v1/state?at=<event id>), and a JSON export.

import { api, ApiError } from "../api.js";
import { h, replace, field, utc, timeEl, short, badge, money, rate, duration, download, localInputToUtc, stateLabel } from "../dom.js";
import { pageHeader, busy, showError, showNotice, empty } from "../ui.js";

const CONTEXTS = ["pool", "acct", "gen", "audit"];
const PAGE = 500;
const MAX_PAGES = 4;
const BAD = new Set(["ExtractionFailed", "ProbeFailed", "RentFailed", "OrphanFound", "Unreadable"]);
const SUMMARY_FIELDS = ["status_msg", "message", "reason", "detail", "actual_status", "kind", "holder", "action", "outcome",
  "username", "enabled", "count", "dph", "base_url", "models"];

/** The interesting fields of an event's payload, as one line. */
function summarize(item) {
  if (item.error) return item.error;
  const d = item.data || {};
  const parts = [];
  for (const key of SUMMARY_FIELDS) {
    if (d[key] === undefined || d[key] === null || d[key] === "") continue;
    if (Array.isArray(d[key]) && !d[key].length) continue;
    parts.push(key === "status_msg" || key === "message" ? String(d[key]) : `${key}: ${Array.isArray(d[key]) ? d[key].join(", ") : d[key]}`);
  }
  if (d.offer && d.offer.gpu_name) parts.push(`${d.offer.gpu_name} @ ${rate(d.offer.dph)}`);
  if (d.config) parts.push(`desired ${d.config.desired_size}, max ${d.config.max_size}`);
  return parts.join(" · ");
}

async function fetchEvents(query, signal) {
  const contexts = query.context === "all" ? CONTEXTS : [query.context];
  const base = { since: query.since, until: query.until, correlation_id: query.correlation, limit: PAGE };
  if (query.instance) Object.assign(base, { aggregate_type: "instance", aggregate_id: query.instance });
  let truncated = false;
  const lists = await Promise.all(contexts.map(async (context) => {
    const out = [];
    let after;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const data = await api("GET", "/api/v1/events", { as: "admin", signal, query: { ...base, context, after } });
      out.push(...data.items);
      if (data.next === null || data.next === undefined) return out;
      after = data.next;
    }
    truncated = true;
    return out;
  }));
  const items = lists.flat().sort((a, b) => (Date.parse(a.occurred_at || 0) - Date.parse(b.occurred_at || 0)) || (a.seq - b.seq));
  return { items, truncated };
}

/** The audit records matching the events (by aggregate for an instance, else by event id within their time span). */
async function fetchAudit(query, events) {
  const ids = new Set(events.map((e) => e.id).filter(Boolean));
  const q = { limit: 1000, order: "asc" };
  if (query.instance) Object.assign(q, { aggregate_type: "instance", aggregate_id: query.instance });
  else if (events.length) {
    const times = events.map((e) => Date.parse(e.occurred_at)).filter((t) => !Number.isNaN(t));
    q.since = new Date(Math.min(...times) - 1000).toISOString();
    q.until = new Date(Math.max(...times) + 60000).toISOString();
  }
  const items = [];
  for (let page = 0; page < 5; page += 1) {
    const data = await api("GET", "/api/v1/audit", { as: "admin", query: q });
    items.push(...data.items.filter((r) => query.instance || ids.has(r.event_id)));
    if (data.next === null || data.next === undefined) break;
    q.after = data.next;
  }
  return items;
}

export function render(main, { params }) {
  const controller = new AbortController();
  const instance = field("Instance", { list: "instance-options", maxlength: 128, autocomplete: "off", spellcheck: "false",
    value: params.get("instance") || "", hint: "Pick one of the pool's instances, or paste an id." });
  const options = h("datalist", { id: "instance-options" });
  const correlation = field("Correlation id", { maxlength: 128, autocomplete: "off", spellcheck: "false",
    value: params.get("correlation") || "" });
  const since = field("From (UTC)", { kind: "datetime-local", step: 1, value: params.get("since") || "" });
  const until = field("To (UTC)", { kind: "datetime-local", step: 1, value: params.get("until") || "" });
  const context = field("Events of", { kind: "select", value: params.get("context") || "",
    options: [["", "Automatic"], ["all", "All contexts"], ["pool", "Pool"], ["acct", "Accounts"], ["gen", "Generation"], ["audit", "Audit"]],
    hint: "Automatic: the pool for an instance, every context otherwise." });
  const show = h("button", { type: "submit", class: "btn btn-primary" }, "Show timeline");
  const form = h("form", { class: "form-grid", "aria-label": "Choose what to review" },
    instance.wrap, options, correlation.wrap, since.wrap, until.wrap, context.wrap, h("div", { class: "form-actions" }, show));

  const scrub = h("input", { type: "range", id: "scrubber", min: 0, max: 0, value: 0, step: 1, disabled: true,
    "aria-describedby": "scrub-pos" });
  const position = h("span", { id: "scrub-pos", class: "muted", "aria-live": "polite" }, "No events");
  const prev = h("button", { type: "button", class: "btn", disabled: true }, "← Previous");
  const next = h("button", { type: "button", class: "btn", disabled: true }, "Next →");
  const exportButton = h("button", { type: "button", class: "btn", disabled: true }, "Export JSON");
  const scrubber = h("div", { class: "scrubber" }, h("label", { for: "scrubber" }, "Position in the timeline"), scrub,
    h("div", { class: "scrub-controls" }, prev, position, next, exportButton),
    h("p", { class: "hint" }, "Arrow keys move the slider; in the timeline, ↑ and ↓ step through events."));
  const timeline = h("ol", { class: "timeline", "aria-label": "Events, oldest first" });
  const timelineNote = h("div");
  const statePanel = h("div", { class: "state-panel", "aria-live": "polite" }, empty("Choose an event to see the pool as it was."));
  const review = h("div", { class: "review", hidden: true },
    h("section", { class: "card timeline-card", "aria-labelledby": "inc-timeline" }, h("h2", { id: "inc-timeline" }, "Timeline"), scrubber,
      timelineNote, timeline),
    h("section", { class: "card state-card", "aria-labelledby": "inc-state" }, h("h2", { id: "inc-state" }, "Pool as of the selected event"),
      statePanel));
  const emptyState = h("div", {}, empty("Choose an instance, a correlation id or a time window, then “Show timeline”."));

  let current = null; // {query, items}
  let index = -1;
  let stateTimer = null;
  let stateRequest = null;
  const states = new Map(); // event id -> state response

  function currentQuery() {
    const q = { instance: instance.input.value.trim(), correlation: correlation.input.value.trim(),
      since: localInputToUtc(since.input.value), until: localInputToUtc(until.input.value), context: context.input.value };
    if (!q.context) q.context = q.instance ? "pool" : "all";
    return q;
  }

  function remember(selectedId) {
    const p = new URLSearchParams();
    if (instance.input.value.trim()) p.set("instance", instance.input.value.trim());
    if (correlation.input.value.trim()) p.set("correlation", correlation.input.value.trim());
    if (since.input.value) p.set("since", since.input.value);
    if (until.input.value) p.set("until", until.input.value);
    if (context.input.value) p.set("context", context.input.value);
    if (selectedId) p.set("event", selectedId);
    history.replaceState(null, "", `#/admin/incidents${p.toString() ? `?${p}` : ""}`);
  }

  function eventRow(item, i) {
    const button = h("button", { type: "button", class: ["event", BAD.has(item.type) ? "event-bad" : null],
      "aria-current": null, dataset: { index: String(i) } },
      h("span", { class: "event-head" }, h("time", { datetime: item.occurred_at || "" }, item.occurred_at ? utc(item.occurred_at).slice(11) : "—"),
        h("span", { class: "event-type" }, item.type), item.context !== "pool" ? h("span", { class: "tag" }, item.context) : null),
      h("span", { class: "event-summary" }, summarize(item) || "—"),
      h("span", { class: "event-meta" }, `actor ${item.actor || "—"} · trace ${item.trace_id ? short(item.trace_id, 12) : "—"}`,
        !current?.query.instance ? ` · ${item.aggregate_type} ${short(item.aggregate, 14)}` : ""));
    button.addEventListener("click", () => select(i, { focus: false }));
    return h("li", {}, button);
  }

  function drawTimeline() {
    const { items, truncated } = current;
    replace(timeline, ...items.map(eventRow));
    replace(timelineNote, truncated ? h("p", { class: "hint" }, "Only the first events are shown: narrow the time window.") : null);
    scrub.max = String(Math.max(items.length - 1, 0));
    scrub.disabled = items.length < 2;
    exportButton.disabled = !items.length;
  }

  function select(i, { focus = false } = {}) {
    if (!current || !current.items.length) return;
    index = Math.min(Math.max(i, 0), current.items.length - 1);
    const item = current.items[index];
    scrub.value = String(index);
    scrub.setAttribute("aria-valuetext", `${index + 1} of ${current.items.length}: ${item.type}`);
    position.textContent = `${index + 1} of ${current.items.length} · ${item.type}`;
    prev.disabled = index === 0;
    next.disabled = index === current.items.length - 1;
    for (const el of timeline.querySelectorAll("button.event")) {
      const on = Number(el.dataset.index) === index;
      if (on) el.setAttribute("aria-current", "step");
      else el.removeAttribute("aria-current");
      if (on) {
        el.scrollIntoView({ block: "nearest" });
        if (focus) el.focus();
      }
    }
    remember(item.id);
    clearTimeout(stateTimer);
    stateTimer = setTimeout(() => loadState(item), states.has(item.id) ? 0 : 200); // scrubbing fast fetches only where it stops
  }

  async function loadState(item) {
    if (!item.id) {
      replace(statePanel, empty("This message could not be read, so the pool cannot be replayed to it."));
      return;
    }
    let data = states.get(item.id);
    if (!data) {
      if (stateRequest) stateRequest.abort();
      stateRequest = new AbortController();
      statePanel.classList.add("loading");
      try {
        data = await api("GET", "/api/v1/state", { query: { at: item.id }, as: "admin", signal: stateRequest.signal });
        states.set(item.id, data);
      } catch (error) {
        if (error.name !== "AbortError") {
          showError(error, "Replaying the pool");
          statePanel.classList.remove("loading");
        }
        return;
      }
      statePanel.classList.remove("loading");
    }
    if (current.items[index] !== item) return;
    drawState(item, data);
  }

  function drawState(item, data) {
    const pool = data.pool;
    const focusId = current.query.instance || (item.aggregate_type === "instance" ? item.aggregate : null);
    const row = focusId ? pool.instances.find((r) => r.id === focusId) : null;
    const live = pool.instances.filter((r) => !["terminated", "failed"].includes(r.state));
    const counts = {};
    for (const r of live) counts[r.state] = (counts[r.state] || 0) + 1;
    const instanceCard = focusId
      ? row
        ? h("div", { class: "instance-card" },
          h("p", { class: "big-state" }, "Instance ", h("code", {}, short(row.id, 18)), " is ", badge(row.state, "badge-big"),
            h("span", { class: "sr-only", id: "replayed-state" }, stateLabel(row))),
          h("dl", { class: "kv" },
            h("dt", {}, "Status"), h("dd", { class: "replayed-status" }, row.status_message || "—"),
            row.failure ? [h("dt", {}, "Failure"), h("dd", { class: "failure" }, row.failure)] : null,
            row.termination_reason ? [h("dt", {}, "Termination"), h("dd", {}, row.termination_reason)] : null,
            h("dt", {}, "GPU"), h("dd", {}, row.gpu || "—"),
            h("dt", {}, "Price"), h("dd", {}, rate(row.dph)),
            h("dt", {}, "Uptime"), h("dd", {}, duration(row.uptime_s)),
            h("dt", {}, "Accrued"), h("dd", {}, money(row.accrued_cost)),
            h("dt", {}, "Lease holder"), h("dd", {}, row.lease_holder || "—"),
            h("dt", {}, "Host"), h("dd", {}, row.host_id || "—")))
        : h("p", { class: "muted" }, "Instance ", h("code", {}, short(focusId, 18)), " is not in the pool at this point.")
      : null;
    replace(statePanel,
      h("p", { class: "as-of" }, "After ", h("strong", {}, item.type), " at ", timeEl(data.at), ` (pool stream #${data.seq})`),
      instanceCard,
      h("dl", { class: "kv" },
        h("dt", {}, "Safe mode"), h("dd", {}, pool.safe_mode ? `on (${pool.safe_mode_reason || "no reason"})` : "off"),
        h("dt", {}, "Live instances"), h("dd", {}, live.length ? Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") : "none"),
        h("dt", {}, "Spend rate"), h("dd", {}, rate(pool.spend_rate_dph)),
        h("dt", {}, "Desired size"), h("dd", {}, String(pool.config.desired_size))),
      h("details", {}, h("summary", {}, "The event's data"),
        h("dl", { class: "kv" }, h("dt", {}, "Event id"), h("dd", {}, h("code", {}, item.id || "—")),
          h("dt", {}, "Correlation"), h("dd", {}, item.correlation_id ? h("code", {}, item.correlation_id) : "—"),
          h("dt", {}, "Trace"), h("dd", {}, item.trace_id ? h("code", {}, item.trace_id) : "—"),
          h("dt", {}, "Actor"), h("dd", {}, item.actor || "—")),
        h("pre", { class: "json", tabindex: "0", "aria-label": "Event data" }, JSON.stringify(item.data, null, 2))),
    );
  }

  async function load() {
    const query = currentQuery();
    if (!query.instance && !query.correlation && !query.since && !query.until) {
      showError(new ApiError(0, "INPUT", "choose an instance, a correlation id or a time window"), "Incident review");
      return;
    }
    const data = await fetchEvents(query, controller.signal);
    current = { query, ...data };
    states.clear();
    review.hidden = false;
    emptyState.hidden = true;
    drawTimeline();
    if (!current.items.length) {
      replace(timeline, h("li", {}, empty("No events match.")));
      replace(statePanel, empty("Nothing to replay."));
      position.textContent = "No events";
      prev.disabled = next.disabled = true;
      remember(null);
      return;
    }
    const wanted = params.get("event");
    let start = current.items.findIndex((e) => e.id && e.id === wanted);
    if (start < 0) start = current.items.findIndex((e) => BAD.has(e.type));
    if (start < 0) start = current.items.length - 1;
    select(start);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    params.delete("event");
    await busy(show, load, "Loading events");
  });
  scrub.addEventListener("input", () => select(Number(scrub.value)));
  prev.addEventListener("click", () => select(index - 1));
  next.addEventListener("click", () => select(index + 1));
  timeline.addEventListener("keydown", (event) => {
    const step = { ArrowUp: -1, ArrowDown: 1, ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      select(event.key === "Home" ? 0 : current.items.length - 1, { focus: true });
    } else if (step) {
      event.preventDefault();
      select(index + step, { focus: true });
    }
  });
  exportButton.addEventListener("click", () => busy(exportButton, async () => {
    const { query, items } = current;
    let audit;
    try {
      audit = { items: await fetchAudit(query, items) };
    } catch (error) {
      audit = { error: { code: error.code || "ERROR", message: error.message } };
    }
    const name = query.instance || query.correlation || `${query.since || "start"}_${query.until || "now"}`;
    download(`incident-${name.replace(/[^A-Za-z0-9_.-]+/g, "_")}.json`, {
      exported_at: new Date().toISOString(), query, events: items, audit,
    });
    showNotice(`Exported ${items.length} event(s) and ${audit.items ? audit.items.length : 0} audit record(s).`);
  }, "Export"));

  replace(main,
    pageHeader("Incident review", "Replay what happened: each event with its actor and trace id, and the pool as it was right after it."),
    h("section", { class: "card", "aria-label": "What to review" }, form),
    emptyState,
    review,
  );
  api("GET", "/api/v1/pool", { as: "admin", signal: controller.signal }).then((pool) => {
    replace(options, ...[...pool.instances].reverse().map((r) =>
      h("option", { value: r.id }, `${r.state}${r.failure ? ` (${r.failure} failed)` : ""} · ${r.gpu || "?"} · ${r.id}`)));
  }).catch(() => {});
  if (params.get("instance") || params.get("correlation") || params.get("since") || params.get("until")) {
    load().catch((error) => showError(error, "Loading events"));
  }
  return () => {
    controller.abort();
    clearTimeout(stateTimer);
    if (stateRequest) stateRequest.abort();
  };
}
