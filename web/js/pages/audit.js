// Admin — the audit log: filtered, keyset-paginated records, and verification of the chain.

import { api } from "../api.js";
import { h, replace, field, timeEl, short, localInputToUtc } from "../dom.js";
import { pageHeader, section, busy, showError, tableWrap, empty } from "../ui.js";

const FILTERS = ["since", "until", "actor", "type", "aggregate_type", "aggregate_id", "order", "limit"];
const DEFAULTS = { order: "desc", limit: "50" };

export function render(main, { params }) {
  const controller = new AbortController();
  const f = {
    since: field("From (UTC)", { kind: "datetime-local", step: 1, value: params.get("since") || "" }),
    until: field("To (UTC)", { kind: "datetime-local", step: 1, value: params.get("until") || "" }),
    actor: field("Actor", { maxlength: 200, placeholder: "user:… or admin:…", value: params.get("actor") || "" }),
    type: field("Event type", { maxlength: 64, placeholder: "UserRegistered", value: params.get("type") || "" }),
    aggregate_type: field("Aggregate type", { maxlength: 128, placeholder: "instance", value: params.get("aggregate_type") || "" }),
    aggregate_id: field("Aggregate id", { maxlength: 128, value: params.get("aggregate_id") || "" }),
    order: field("Order", { kind: "select", options: [["desc", "Newest first"], ["asc", "Oldest first"]], value: params.get("order") || "desc" }),
    limit: field("Per page", { kind: "select", options: [["10", "10"], ["50", "50"], ["200", "200"]], value: params.get("limit") || "50" }),
  };
  const apply = h("button", { type: "submit", class: "btn btn-primary" }, "Apply filters");
  const clear = h("button", { type: "button", class: "btn" }, "Clear");
  const form = h("form", { class: "form-grid", "aria-label": "Audit filters" }, Object.values(f).map((x) => x.wrap),
    h("div", { class: "form-actions" }, apply, clear));
  const results = h("div", { "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  const cursors = []; // cursors of the pages before the current one
  let cursor = null; // this page's cursor (null: first page)
  let start = params.get("after") ? { after: params.get("after") } : null;
  if (start) f.order.input.value = "asc";

  function query() {
    const q = { limit: Number(f.limit.input.value), order: f.order.input.value };
    for (const name of ["actor", "type", "aggregate_type", "aggregate_id"]) q[name] = f[name].input.value.trim();
    q.since = localInputToUtc(f.since.input.value);
    q.until = localInputToUtc(f.until.input.value);
    return q;
  }

  function detailsRow(r, cols) {
    return h("tr", { class: "detail-row" }, h("td", { colspan: cols },
      h("dl", { class: "kv" },
        h("dt", {}, "Event id"), h("dd", {}, h("code", {}, r.event_id)),
        h("dt", {}, "Stream"), h("dd", {}, `${r.stream} #${r.stream_seq} (${r.subject})`),
        h("dt", {}, "Recorded"), h("dd", {}, timeEl(r.recorded_at)),
        h("dt", {}, "Key id"), h("dd", {}, h("code", {}, r.key_id)),
        h("dt", {}, "Hash"), h("dd", {}, h("code", { class: "wrap" }, r.hash))),
      h("pre", { class: "json", tabindex: "0", "aria-label": "Record payload" }, JSON.stringify(r.payload, null, 2))));
  }

  function draw(page) {
    if (!page.items.length) {
      replace(results, empty(cursor ? "No more records." : "No audit records match these filters."));
    } else {
      const cols = ["Seq", "Occurred (UTC)", "Type", "Aggregate", "Actor", "Kind", "Details"];
      const body = h("tbody");
      for (const r of page.items) {
        const toggle = h("button", { type: "button", class: "btn btn-small", "aria-expanded": "false",
          "aria-label": `Details of record ${r.seq}` }, "Show");
        const tr = h("tr", {}, h("th", { scope: "row", class: "num" }, String(r.seq)), h("td", {}, timeEl(r.occurred_at)),
          h("td", {}, h("span", { class: "event-type" }, r.type)),
          h("td", {}, `${r.aggregate_type} `, h("code", { title: r.aggregate_id }, short(r.aggregate_id, 18))),
          h("td", {}, h("code", { title: r.actor }, short(r.actor, 22))), h("td", {}, r.kind), h("td", {}, toggle));
        let extra = null;
        toggle.addEventListener("click", () => {
          if (extra) {
            extra.remove();
            extra = null;
          } else {
            extra = detailsRow(r, cols.length);
            tr.after(extra);
          }
          toggle.setAttribute("aria-expanded", String(Boolean(extra)));
          toggle.textContent = extra ? "Hide" : "Show";
        });
        body.append(tr);
      }
      replace(results, tableWrap("Audit records", h("table", { class: "audit" },
        h("caption", { class: "sr-only" }, "Audit records"),
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))), body)));
    }
    const prev = h("button", { type: "button", class: "btn", disabled: !cursors.length && cursor === null }, "← Previous page");
    const next = h("button", { type: "button", class: "btn", disabled: page.next === null || page.next === undefined }, "Next page →");
    prev.addEventListener("click", () => {
      cursor = cursors.length ? cursors.pop() : null;
      load();
    });
    next.addEventListener("click", () => {
      cursors.push(cursor);
      cursor = page.next;
      load();
    });
    replace(pager, prev, h("span", { class: "muted" }, `Page ${cursors.length + 1} · ${page.items.length} record(s)`), next);
  }

  async function load() {
    const q = query();
    if (cursor !== null) q[q.order === "desc" ? "before" : "after"] = cursor;
    if (start) Object.assign(q, start, { order: "asc" });
    start = null;
    try {
      draw(await api("GET", "/api/v1/audit", { query: q, as: "admin", signal: controller.signal }));
    } catch (error) {
      showError(error, "Audit log");
      replace(results, empty("The audit log could not be read."));
      replace(pager);
    }
  }

  function remember() {
    const q = new URLSearchParams();
    for (const name of FILTERS) if (f[name].input.value && f[name].input.value !== DEFAULTS[name]) q.set(name, f[name].input.value);
    history.replaceState(null, "", `#/admin/audit${q.toString() ? `?${q}` : ""}`);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    cursors.length = 0;
    cursor = null;
    remember();
    await busy(apply, load, "Audit log");
  });
  clear.addEventListener("click", () => {
    for (const name of FILTERS) f[name].input.value = DEFAULTS[name] || "";
    cursors.length = 0;
    cursor = null;
    remember();
    load();
  });

  // --- verification -------------------------------------------------------------------
  const deep = field("Deep: also check every event id against the streams (slower)", { kind: "checkbox" });
  const verify = h("button", { type: "button", class: "btn btn-primary" }, "Verify chain");
  const report = h("div", { class: "verify-report" });
  verify.addEventListener("click", async () => {
    replace(report, h("p", { class: "muted", role: "status" }, "Verifying…"));
    const result = await busy(verify, () => api("POST", "/api/v1/audit/verify", { body: { deep: deep.input.checked }, as: "admin" }),
      "Verify");
    if (!result) {
      replace(report);
      return;
    }
    const lag = Object.entries(result.lag || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
    const facts = h("p", { class: "muted" }, `${result.records} record(s), seq ${result.first_seq}–${result.last_seq}, `,
      `${result.checkpoints} checkpoint(s). Not yet audited: ${lag}.`);
    if (result.ok) {
      replace(report, h("div", { class: "banner banner-ok", role: "status" }, h("strong", {}, "✓ Verified: "),
        "the chain, HMACs and checkpoints are intact."), facts);
      return;
    }
    const first = result.first;
    const show = h("a", { href: `#/admin/audit?after=${Math.max(0, first.seq - 1)}` }, `show record #${first.seq}`);
    show.addEventListener("click", (event) => {
      event.preventDefault();
      for (const name of FILTERS) f[name].input.value = DEFAULTS[name] || "";
      f.order.input.value = "asc";
      cursors.length = 0;
      cursor = null;
      start = { after: Math.max(0, first.seq - 1) };
      load();
      results.scrollIntoView({ block: "start" });
    });
    replace(report,
      h("div", { class: "banner banner-danger", role: "alert" }, h("strong", {}, "✗ Verification failed. "),
        `First bad record: #${first.seq} — ${first.kind}: ${first.reason}. `, show),
      facts,
      result.problems.length > 1 ? h("details", {}, h("summary", {}, `All ${result.problems.length} problems`),
        h("ul", {}, result.problems.slice(0, 50).map((p) => h("li", {}, `#${p.seq} ${p.kind}: ${p.reason}`)))) : null);
  });

  replace(main,
    pageHeader("Audit", "Every event, hash-chained and signed by the audit service. Times are UTC."),
    section("Verify", h("div", { class: "inline-form" }, deep.wrap, verify), report),
    section("Filter", form),
    h("section", { class: "card", "aria-labelledby": "audit-records" }, h("h2", { id: "audit-records" }, "Records"), results, pager),
  );
  load();
  return () => controller.abort();
}
