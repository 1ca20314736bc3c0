// Admin — the live pool: instances as they change (SSE), actions, spend, and the pool's settings.

import { api } from "../api.js";
import { h, replace, badge, money, dollars, rate, duration, short, utc, stateLabel, field } from "../dom.js";
import { stepLine, widthOf } from "../charts.js";
import { LivePool, ENDED } from "../pool-live.js";
import { pageHeader, section, busy, confirmDialog, showNotice, tableWrap, empty } from "../ui.js";
import { poolNoteBanners } from "../pool-notes.js";
import { settingsSection, providerKeySection } from "./pool-settings.js";
import { boxesSection } from "./pool-boxes.js";

const LIVE_COLUMNS = ["Instance", "State", "Status", "Host", "GPU", "$/h", "Uptime", "Accrued", "Lease holder", "Actions"];
const ENDED_COLUMNS = ["Instance", "Final state", "Why", "GPU", "$/h", "Cost", "Review"];
const FEED_SIZE = 12;

const GB = 1024 ** 3;

/** What the host's agent says: its phase, download progress, or why it failed. */
export function agentText(row) {
  const agent = row.agent || {};
  if (!agent.phase) return row.status_message || "—";
  if (agent.phase === "downloading" && agent.bytes_total) {
    const pct = Math.floor((100 * agent.bytes_done) / agent.bytes_total);
    return `downloading models ${pct}% (${(agent.bytes_done / GB).toFixed(1)} of ${(agent.bytes_total / GB).toFixed(1)} GB)`;
  }
  return agent.reason ? `${agent.phase}: ${agent.reason}` : agent.phase.replace("_", " ");
}

async function showLogs(row, button) {
  const logs = await busy(button, () => api("GET", `${row.logs_url}?tail=200`, { as: "admin" }), "Logs");
  if (!logs) return;
  await confirmDialog({ title: `Logs of ${short(row.id, 14)}`, confirmLabel: "Close",
    body: h("div", { class: "logs" },
      h("h3", {}, "Agent"), h("pre", { class: "log" }, logs.agent.join("\n") || "(empty)"),
      h("h3", {}, "ComfyUI"), h("pre", { class: "log" }, logs.comfyui.join("\n") || "(empty)")) });
}

function reviewLink(id, text = short(id, 14)) {
  return h("a", { href: `#/admin/incidents?instance=${encodeURIComponent(id)}`, title: `Review ${id}` }, text);
}

export function render(main) {
  const pool = new LivePool({ onChange, onEvent, onState, onHistory });
  const conn = h("span", { class: "conn conn-connecting", role: "status" }, "Connecting…");
  const safeBanner = h("div", { class: "banner banner-danger", id: "safe-mode-banner", role: "status", hidden: true });
  const notesBox = h("div", { class: "pool-notes", id: "pool-notes", role: "status", "aria-live": "polite" });
  const stats = h("dl", { class: "stats" });
  const problems = h("div", { class: "banner banner-danger", id: "pool-problems", role: "status", hidden: true });
  const chartBox = h("div", { class: "chart-box" }, h("p", { class: "muted" }, "Waiting for the pool…"));
  const liveBody = h("tbody");
  const liveTable = h("table", { class: "instances cards-on-phone" }, h("caption", { class: "sr-only" }, "Live instances"),
    h("thead", {}, h("tr", {}, LIVE_COLUMNS.map((t) => h("th", { scope: "col" }, t)))), liveBody);
  const liveWrap = tableWrap("Live instances table", liveTable);
  const liveEmpty = empty("No live instances. Prewarm one, or raise the desired size below.");
  const endedBody = h("tbody");
  const endedTable = h("table", { class: "cards-on-phone" }, h("caption", { class: "sr-only" }, "Ended instances"),
    h("thead", {}, h("tr", {}, ENDED_COLUMNS.map((t) => h("th", { scope: "col" }, t)))), endedBody);
  const endedCount = h("span", {}, "0");
  const feed = h("ol", { class: "feed", "aria-label": "Recent pool changes" });
  const rows = new Map(); // id -> {tr, cells, ended}

  // --- actions ---------------------------------------------------------------------------
  const count = field("Instances", { kind: "number", min: 1, max: 64, value: "1", required: true, class: "narrow" });
  const prewarm = h("button", { type: "submit", class: "btn btn-primary" }, "Prewarm");
  const prewarmForm = h("form", { class: "inline-form", "aria-label": "Prewarm instances" }, count.wrap, prewarm);
  prewarmForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { count: Number(count.input.value), idempotency_key: `ui-${crypto.randomUUID()}` };
    const result = await busy(prewarm, () => api("POST", "/api/v1/pool/prewarm", { body, as: "admin" }), "Prewarm");
    if (result) showNotice(`Renting ${result.instance_ids.length} instance(s): ${result.instance_ids.join(", ")}.`);
  });

  const safeButton = h("button", { type: "button", class: "btn btn-danger", id: "safe-mode-button" }, "Enter safe mode…");
  safeButton.addEventListener("click", async () => {
    const on = !pool.summary?.safe_mode;
    const values = await confirmDialog({
      title: on ? "Enter safe mode?" : "Leave safe mode?",
      body: on
        ? h("p", {}, "Safe mode ", h("strong", {}, "terminates every instance now"), " and rents nothing until you leave it.")
        : h("p", {}, "The pool will rent again to reach its desired size."),
      confirmLabel: on ? "Enter safe mode" : "Leave safe mode", danger: on,
      fields: [{ name: "reason", label: "Reason (kept in the event)", value: "admin" }],
    });
    if (!values) return;
    const result = await busy(safeButton, () => api("POST", "/api/v1/pool/safe-mode",
      { body: { enabled: on, reason: values.reason || "admin" }, as: "admin" }), "Safe mode");
    if (result) showNotice(result.safe_mode ? "Safe mode is on." : "Safe mode is off.");
  });

  const resetButton = h("button", { type: "button", class: "btn" }, "Reset…");
  resetButton.addEventListener("click", async () => {
    const values = await confirmDialog({ title: "Reset the pool?", confirmLabel: "Reset",
      body: h("p", {}, "Gives up pending rentals, clears stuck requests, and forgets host penalties (hosts avoided after failures) and pool problems. Running instances are kept."),
      fields: [{ name: "reason", label: "Reason", value: "" }] });
    if (!values) return;
    const result = await busy(resetButton, () => api("POST", "/api/v1/pool/reset", { body: { reason: values.reason }, as: "admin" }),
      "Reset");
    if (result) showNotice(`Pool reset; ${result.pending_rentals_given_up} pending rental(s) given up.`);
  });

  async function terminate(row, button) {
    const values = await confirmDialog({ title: `Terminate ${short(row.id, 14)}?`, confirmLabel: "Terminate", danger: true,
      body: h("p", {}, "The instance is destroyed at the provider and stops billing."),
      fields: [{ name: "reason", label: "Reason (kept in the event)", value: "admin" }] });
    if (!values) return;
    const result = await busy(button, () => api("POST", `/api/v1/pool/instances/${encodeURIComponent(row.id)}/terminate`,
      { body: { reason: values.reason || "admin" }, as: "admin" }), "Terminate");
    if (result) showNotice(result.terminating ? `Terminating ${row.id}.` : `${row.id} was already terminating.`);
  }

  // --- rendering -------------------------------------------------------------------------
  function liveRow(row) {
    const stop = h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Terminate ${row.id}` }, "Terminate");
    stop.addEventListener("click", () => terminate(pool.rows.get(row.id) || row, stop));
    const logs = h("button", { type: "button", class: "btn btn-small", "aria-label": `Logs of ${row.id}` }, "Logs");
    logs.addEventListener("click", () => showLogs(pool.rows.get(row.id) || row, logs));
    const cell = (label, cls) => h("td", { class: cls, "data-label": label });
    const cells = { state: cell("State"), status: cell("Status", "status"), host: cell("Host", "host"), gpu: cell("GPU"),
      dph: cell("$/h", "num"), uptime: cell("Uptime", "num"), cost: cell("Accrued", "num"), lease: cell("Lease holder"), stop, logs };
    const tr = h("tr", { dataset: { id: row.id } }, h("th", { scope: "row" }, reviewLink(row.id)), cells.state, cells.status,
      cells.host, cells.gpu, cells.dph, cells.uptime, cells.cost, cells.lease, h("td", { "data-label": "Actions" }, logs, " ", stop));
    return { tr, cells, ended: false, state: null };
  }

  function fillLive(entry, row) {
    const { cells } = entry;
    if (entry.state !== stateLabel(row)) {
      entry.state = stateLabel(row);
      replace(cells.state, badge(row.state), row.failure ? h("span", { class: "failure" }, ` ${row.failure} failed`) : null);
    }
    cells.status.textContent = agentText(row);
    replace(cells.host,
      row.provider_id ? h("span", { title: "provider contract id" }, `#${row.provider_id}`) : "—",
      row.ssh_host ? h("code", { class: "ssh" }, ` ssh -p ${row.ssh_port} root@${row.ssh_host}`) : null,
      row.last_probe_error ? h("span", { class: "failure" }, ` probe: ${row.last_probe_error}`) : null);
    cells.logs.disabled = !row.logs_url || !row.agent || !row.agent.phase;
    cells.gpu.textContent = row.gpu || "—";
    cells.dph.textContent = rate(row.dph);
    cells.uptime.textContent = duration(row.uptime_s);
    cells.cost.textContent = money(row.accrued_cost);
    cells.lease.textContent = row.lease_holder || "—";
    cells.stop.disabled = row.state === "terminating";
  }

  function endedRow(row) {
    return { tr: h("tr", {}, h("th", { scope: "row" }, h("code", {}, short(row.id, 14))),
      h("td", { "data-label": "Final state" }, badge(row.state)),
      h("td", { "data-label": "Why" }, [row.termination_reason, row.failure ? `${row.failure} failed` : null].filter(Boolean).join(", ") || "—"),
      h("td", { "data-label": "GPU" }, row.gpu || "—"), h("td", { class: "num", "data-label": "$/h" }, rate(row.dph)),
      h("td", { class: "num", "data-label": "Cost" }, money(row.accrued_cost)),
      h("td", { "data-label": "Review" }, reviewLink(row.id, "Timeline"))), ended: true };
  }

  function drawRows() {
    const now = Date.now();
    for (const [id, row] of pool.rows) {
      const ended = ENDED.has(row.state);
      let entry = rows.get(id);
      if (entry && entry.ended !== ended) {
        entry.tr.remove();
        entry = null;
      }
      if (!entry) {
        entry = ended ? endedRow(row) : liveRow(row);
        rows.set(id, entry);
        (ended ? endedBody : liveBody).append(entry.tr);
      }
      if (!ended) fillLive(entry, pool.current(row, now));
    }
    for (const [id, entry] of rows) {
      if (!pool.rows.has(id)) {
        entry.tr.remove();
        rows.delete(id);
      }
    }
    const live = liveBody.children.length;
    liveWrap.hidden = !live;
    liveEmpty.hidden = Boolean(live);
    endedCount.textContent = String(endedBody.children.length);
  }

  function drawSummary() {
    const s = pool.summary;
    const liveRows = [...pool.rows.values()].filter((r) => !ENDED.has(r.state));
    const ready = liveRows.filter((r) => r.state === "ready").length;
    const caps = s.config.spend_caps || {};
    const entries = [
      ["Spend rate", rate(pool.rate()), caps.max_dph ? `cap ${rate(caps.max_dph)}` : "no cap"],
      ["Spent today (UTC)", dollars(pool.spendToday), caps.max_per_day ? `cap ${dollars(caps.max_per_day)}` : "no cap"],
      ["Live instances", String(liveRows.length), `${ready} ready · desired ${s.config.desired_size} · max ${s.config.max_size}`],
      ["Idle timeout", duration(s.config.idle_timeout_s), `pool ${s.pool_id}`],
    ];
    replace(stats, ...entries.map(([term, value, note]) => h("div", { class: "stat" }, h("dt", {}, term),
      h("dd", {}, h("span", { class: "stat-value" }, value), h("span", { class: "stat-note" }, note)))));
    const found = s.problems || [];
    problems.hidden = !found.length;
    replace(problems, h("strong", {}, found.length === 1 ? "The pool has a problem" : "The pool has problems"),
      h("ul", {}, found.map((p) => h("li", { dataset: { code: p.code } }, h("strong", {}, p.code.replaceAll("_", " ")), ` — ${p.message} (since ${utc(p.since)})`))));
    safeBanner.hidden = !s.safe_mode;
    replace(safeBanner, h("strong", {}, "Safe mode is on"),
      ` — the pool terminates everything and rents nothing${s.safe_mode_reason ? ` (${s.safe_mode_reason})` : ""}.`);
    // A burst beyond the minimum (and how long it bills); safe mode and problems have their banners above.
    const notes = poolNoteBanners({ ...s, instances: liveRows }).filter((el) => el.dataset.kind === "burst");
    if (notes.map((el) => el.textContent).join("\n") !== [...notesBox.children].map((el) => el.textContent).join("\n")) {
      replace(notesBox, notes);
    }
    safeButton.textContent = s.safe_mode ? "Leave safe mode…" : "Enter safe mode…";
    safeButton.className = s.safe_mode ? "btn btn-primary" : "btn btn-danger";
    prewarm.disabled = s.safe_mode;
  }

  function drawChart() {
    const now = Date.now();
    const from = now - 60 * 60 * 1000;
    const current = pool.rate();
    const peak = Math.max(current, ...pool.samples.filter((p) => p.t >= from).map((p) => p.v));
    replace(chartBox, stepLine({ points: [...pool.samples, { t: now, v: current }], from, to: now, width: widthOf(chartBox),
      format: (v) => `$${v.toFixed(2)}`, summary: `Spend rate over the last hour: now ${rate(current)}, peak ${rate(peak)}.` }),
    h("p", { class: "hint" }, `Now ${rate(current)} · peak ${rate(peak)} in the last hour · today ${dollars(pool.spendToday)}`));
  }

  let lastChart = 0;
  function onChange(kind) {
    if (!pool.summary) return;
    drawRows();
    drawSummary();
    settings.update(pool.summary.config, kind === "config" || kind === "snapshot");
    if (kind !== "tick" || Date.now() - lastChart > 5000) {
      lastChart = Date.now();
      drawChart();
    }
  }

  const inFeed = new Set(); // stream sequences shown (history and live may overlap)
  function addToFeed({ seq, type, aggregate_type: kind, aggregate_id: id, occurred_at: at, state }, { newest = true } = {}) {
    if (inFeed.has(seq)) return;
    inFeed.add(seq);
    const who = kind === "instance" ? reviewLink(id) : h("span", {}, `${kind} ${short(id, 14)}`);
    const item = h("li", {}, h("time", { datetime: at }, utc(at).slice(11)), " ", h("span", { class: "event-type" }, type), " ",
      who, state ? [" → ", badge(state)] : null);
    if (newest) feed.prepend(item);
    else feed.append(item);
    while (feed.children.length > FEED_SIZE) feed.lastElementChild.remove();
  }

  function onEvent(data) {
    addToFeed({ ...data, state: data.instance ? data.instance.state : null });
  }

  function onHistory(items) { // the last hour's events, oldest first: shown under anything live
    for (const item of items.slice(-FEED_SIZE).reverse()) {
      if (feed.children.length >= FEED_SIZE) break;
      addToFeed({ seq: item.seq, type: item.type, aggregate_type: item.aggregate_type, aggregate_id: item.aggregate, occurred_at: item.occurred_at },
        { newest: false });
    }
  }

  function onState(state, error) {
    const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", stopped: "Disconnected" }[state] || state;
    conn.className = `conn conn-${state}`;
    conn.textContent = error ? `${text}: ${error.message}` : text;
  }

  const settings = settingsSection({ instances: () => [...pool.rows.values()] });
  replace(main,
    pageHeader("Pool", "Instances update live; uptime and cost advance every second.", conn),
    safeBanner,
    problems,
    notesBox,
    h("section", { class: "card", "aria-label": "Pool actions" }, h("div", { class: "toolbar" }, prewarmForm,
      h("div", { class: "toolbar-right" }, resetButton, safeButton))),
    h("section", { class: "card", "aria-labelledby": "pool-spend" }, h("h2", { id: "pool-spend" }, "Spend"), stats, chartBox),
    section("Live instances", liveWrap, liveEmpty),
    h("div", { class: "grid-2" },
      section("Recent changes", feed, h("p", { class: "hint" }, "Changes appear here as they happen.")),
      h("section", { class: "card", "aria-labelledby": "pool-ended" }, h("h2", { id: "pool-ended" }, "Ended instances"),
        h("details", {}, h("summary", {}, "Ended in the last 24 h (", endedCount, ")"), tableWrap("Ended instances table", endedTable)))),
    settings.element,
    boxesSection().element,
    providerKeySection(),
  );
  liveWrap.hidden = true;
  liveEmpty.hidden = true;
  pool.start();
  return () => pool.stop();
}
