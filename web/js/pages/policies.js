// Admin — warm-pool policies: the current policy and its decisions (with reasons), a simulation of the
// policies on the pool's own recent demand side by side with the oracle, and applying one (an audited event).

import { api } from "../api.js";
import { h, s, replace, field, dollars, utc } from "../dom.js";
import { pageHeader, section, busy, showError, showNotice, tableWrap, empty, confirmDialog } from "../ui.js";

function secs(v) {
  return v >= 90 ? `${(v / 60).toFixed(1)} min` : `${Math.round(v)} s`;
}

function policyText(p) {
  if (!p) return "none: min_size instances always, the rest end after idle_timeout_s";
  const params = Object.entries(p.params || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return `${p.kind}${params ? ` (${params})` : ""}`;
}

/** Demand (grey) and live instances (line) of one simulated policy over the trace, as an SVG. */
function timelineChart(name, timeline) {
  const width = 720, height = 180, pad = 40;
  if (!timeline || timeline.length < 2) return empty("No timeline.");
  const t0 = timeline[0][0], t1 = timeline[timeline.length - 1][0];
  const peak = Math.max(1, ...timeline.map((p) => Math.max(p[1], p[2])));
  const x = (t) => pad + ((t - t0) / Math.max(t1 - t0, 1)) * (width - 2 * pad);
  const y = (v) => height - pad + 10 - (v / peak) * (height - pad - 10);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `${name}: live instances (line) and demand (bars) from ${utc(new Date(t0 * 1000).toISOString())} to ${utc(new Date(t1 * 1000).toISOString())}; peak ${peak}` });
  for (const p of timeline) {
    if (p[1] > 0) svg.append(s("line", { x1: x(p[0]), x2: x(p[0]), y1: y(0), y2: y(p[1]), class: "grid" }));
  }
  let d = `M ${x(timeline[0][0])} ${y(timeline[0][2])}`;
  for (const p of timeline.slice(1)) d += ` H ${x(p[0])} V ${y(p[2])}`;
  svg.append(s("path", { d, class: "line" }),
    s("text", { x: pad - 6, y: y(peak) + 4, class: "axis", "text-anchor": "end" }, String(peak)),
    s("text", { x: pad - 6, y: y(0) + 4, class: "axis", "text-anchor": "end" }, "0"));
  return svg;
}

export function render(main) {
  const controller = new AbortController();
  const current = h("div");
  const decisions = h("div");
  const days = field("Days of history", { kind: "number", value: "14", min: "0.1", max: "60", step: "any" });
  const target = field("Target p95 wait (s)", { kind: "number", value: "", min: "0", step: "any",
    hint: "Empty: no target. With one, the cheapest policy that meets it is marked." });
  const run = h("button", { type: "submit", class: "btn btn-primary" }, "Simulate");
  const form = h("form", { class: "inline-form", "aria-label": "Simulation" }, days.wrap, target.wrap, run);
  const results = h("div");
  const chart = h("div", { class: "chart-box" });

  async function loadPool() {
    try {
      const pool = await api("GET", "/api/v1/pool", { as: "admin", signal: controller.signal });
      const clear = h("button", { type: "button", class: "btn", disabled: pool.policy ? null : "" }, "Remove policy");
      clear.addEventListener("click", () => apply(null, "remove the policy"));
      replace(current, h("p", { class: "policy-current" }, h("strong", {}, "Current policy: "), policyText(pool.policy)),
        h("p", { class: "hint" }, `min_size ${pool.config.min_size ?? pool.config.desired_size} (always kept) · idle timeout ${secs(pool.config.idle_timeout_s)} · max ${pool.config.max_size}`),
        h("p", {}, clear));
      const rows = pool.policy_decisions || [];
      replace(decisions, rows.length ? tableWrap("Recent decisions", h("table", {},
        h("thead", {}, h("tr", {}, ["When (UTC)", "Policy", "Keep", "Idle timeout", "Why"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, utc(r.at)), h("td", {}, r.policy),
          h("td", { class: "num" }, String(r.keep)), h("td", { class: "num" }, secs(r.idle_timeout_s)),
          h("td", { class: "reason" }, r.reason))))))
        : empty("No decisions yet: with a policy applied, each change of what it keeps appears here with its reason."));
    } catch (error) {
      showError(error, "Pool");
    }
  }

  async function apply(spec, label) {
    const answer = await confirmDialog({ title: spec ? `Apply ${label}?` : "Remove the policy?",
      body: spec ? "The pool starts following it at its next reconcile pass. This is recorded in the audit log."
        : "The pool goes back to min_size and idle_timeout_s alone.",
      confirmLabel: spec ? "Apply" : "Remove", fields: [{ name: "reason", label: "Reason (kept in the event)", value: "" }] });
    if (!answer) return;
    try {
      await api("PUT", "/api/v1/pool/policy", { as: "admin", body: { policy: spec, reason: answer.reason } });
      showNotice(spec ? `Policy ${label} applied.` : "Policy removed.");
      await loadPool();
    } catch (error) {
      showError(error, "Apply policy");
    }
  }

  function showResults(out) {
    const cols = ["Policy", "Total $", "Boot / idle / busy $", "Jobs (cold)", "Wait p50 / p95 / p99", "Max", "Oracle @p95 $"];
    const cheapest = Math.min(...out.rows.map((r) => r.total));
    const select = (name) => replace(chart, h("h3", {}, name), timelineChart(name, out.results[name]?.timeline));
    replace(results,
      h("p", {}, `${out.jobs} job${out.jobs === 1 ? "" : "s"} over ${out.days.toFixed(1)} days; ${out.model}. Oracle (perfect foresight, zero wait): ${dollars(out.oracle_zero_wait)}.`),
      out.chosen !== undefined && target.input.value !== ""
        ? h("p", { class: "policy-chosen" }, out.chosen ? `Cheapest meeting p95 ≤ ${target.input.value} s: ${out.chosen}` : "No policy meets that target.")
        : "",
      tableWrap("Policies compared", h("table", { class: "policies-table" },
        h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
        h("tbody", {}, out.rows.map((r) => {
          const applyBtn = h("button", { type: "button", class: "btn btn-small", "aria-label": `Apply ${r.policy}` }, "Apply");
          applyBtn.addEventListener("click", () => apply(r.spec, r.policy));
          const showBtn = h("button", { type: "button", class: "btn btn-small", "aria-label": `Chart of ${r.policy}` }, "Chart");
          showBtn.addEventListener("click", () => select(r.policy));
          return h("tr", { class: r.policy === out.chosen ? "chosen" : r.total === cheapest ? "cheapest" : null },
            h("th", { scope: "row" }, h("div", {}, r.policy,
              r.policy === out.chosen ? h("span", { class: "badge" }, " suggested") : "",
              r.total === cheapest ? h("span", { class: "badge" }, " cheapest") : ""),
            h("div", { class: "row-actions" }, showBtn, " ", applyBtn)),
            h("td", { class: "num" }, r.total.toFixed(2)),
            h("td", { class: "num" }, [r.booting, r.idle, r.busy].map((v) => v.toFixed(2)).join(" / ")),
            h("td", { class: "num" }, `${r.jobs} (${r.cold_waits})`),
            h("td", { class: "num" }, [r.p50, r.p95, r.p99].map(secs).join(" / ")),
            h("td", { class: "num" }, String(r.max_instances)), h("td", { class: "num" }, r.oracle_at_p95.toFixed(2)));
        })))));
    results.append(h("p", { class: "hint" }, "Oracle @p95: no schedule can cost less at that policy's p95 wait (a lower bound; "
      + "boots at their shortest, no failed rentals). Cold waits: jobs that waited at all."));
    select(out.chosen || out.rows.reduce((a, b) => (b.total < a.total ? b : a)).policy);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(run, async () => {
      try {
        const body = { days: Number(days.input.value || 14) };
        if (target.input.value !== "") body.target_p95 = Number(target.input.value);
        showResults(await api("POST", "/api/v1/pool/simulate", { as: "admin", body, signal: controller.signal }));
      } catch (error) {
        replace(results, empty("The simulation could not run."));
        showError(error, "Simulate");
      }
    }, "Simulate");
  });

  replace(main,
    pageHeader("Policies", "How many instances to keep warm, and for how long. Simulate the policies on this pool's own demand, then apply one."),
    section("Current policy", current, decisions),
    h("section", { class: "card", "aria-labelledby": "sim-h" }, h("h2", { id: "sim-h" }, "Simulate on recent demand"), form, results, chart),
  );
  loadPool();
  const refresh = setInterval(loadPool, 3000);  // decisions arrive at the pool's reconcile passes
  return () => {
    clearInterval(refresh);
    controller.abort();
  };
}
