// Admin — usage: GPU hours and cost per UTC day and per instance state, as a stacked bar chart and tables.

import { api } from "../api.js";
import { h, replace, field, money, dollars, rate } from "../dom.js";
import { stackedBars, widthOf } from "../charts.js";
import { pageHeader, section, busy, showError, tableWrap, empty } from "../ui.js";

const STATES = ["loading", "idle", "busy", "failed", "terminating"];
const MAX_BARS = 400;

function hours(v) {
  return `${v.toFixed(v && Math.abs(v) < 1 ? 3 : 1)} h`;
}

const METRICS = { cost: ["Cost", dollars], gpu_hours: ["GPU hours", hours] };

/** Every UTC day from `since` to `until` (the report lists only days with usage). */
function allDays(report) {
  const byDate = new Map(report.days.map((d) => [d.date, d]));
  const out = [];
  const end = Date.parse(`${report.until}T00:00:00Z`);
  for (let t = Date.parse(`${report.since}T00:00:00Z`); t <= end && out.length < MAX_BARS; t += 86400000) {
    const date = new Date(t).toISOString().slice(0, 10);
    out.push(byDate.get(date) || { date, instance_hours: 0, gpu_hours: 0, cost: 0, by_state: {} });
  }
  return out;
}

export function render(main, { params }) {
  const controller = new AbortController();
  const since = field("From (UTC day)", { kind: "date", value: params.get("since") || "" });
  const until = field("To (UTC day)", { kind: "date", value: params.get("until") || "" });
  const metric = field("Chart", { kind: "select", options: [["cost", "Cost ($)"], ["gpu_hours", "GPU hours"]],
    value: params.get("metric") || "cost" });
  const show = h("button", { type: "submit", class: "btn btn-primary" }, "Show");
  const form = h("form", { class: "inline-form", "aria-label": "Usage range" }, since.wrap, until.wrap, metric.wrap, show,
    h("p", { class: "hint" }, "Empty: the last 30 days."));
  const totals = h("dl", { class: "stats" });
  const chart = h("div", { class: "chart-box" });
  const legend = h("ul", { class: "legend", "aria-label": "Chart legend" },
    STATES.map((s) => h("li", {}, h("span", { class: `swatch series-${s}`, "aria-hidden": "true" }), s)));
  const daily = h("div");
  const byState = h("div");
  let report = null;

  function drawChart() {
    const [label, fmt] = METRICS[metric.input.value] || METRICS.cost;
    const days = allDays(report);
    if (!report.days.length) {
      replace(chart, empty("No usage in this range."));
      return;
    }
    const total = METRICS[metric.input.value] ? report.total[metric.input.value] : report.total.cost;
    replace(chart, stackedBars({
      width: widthOf(chart),
      bars: days.map((d) => ({ label: d.date.slice(5), parts: Object.fromEntries(STATES.map((s) => [s, d.by_state[s]?.[metric.input.value] || 0])) })),
      series: STATES, format: fmt,
      summary: `${label} per day from ${report.since} to ${report.until}, stacked by instance state; total ${fmt(total)}. The table below has the numbers.`,
    }));
  }

  function draw() {
    const t = report.total;
    replace(totals, ...[
      ["Cost", dollars(t.cost), `${report.since} – ${report.until}`],
      ["GPU hours", hours(t.gpu_hours), `${hours(t.instance_hours)} of instances`],
      ["Spend rate now", rate(report.spend_rate_dph), "running instances"],
    ].map(([term, value, note]) => h("div", { class: "stat" }, h("dt", {}, term),
      h("dd", {}, h("span", { class: "stat-value" }, value), h("span", { class: "stat-note" }, note)))));
    drawChart();
    const active = report.days.filter((d) => d.instance_hours > 0 || d.cost > 0);
    replace(daily, active.length ? tableWrap("Usage per day", h("table", {},
      h("caption", { class: "sr-only" }, "Cost and GPU hours per UTC day and state"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day (UTC)"), STATES.map((s) => h("th", { scope: "col", class: "num" }, `${s} $`)),
        h("th", { scope: "col", class: "num" }, "GPU h"), h("th", { scope: "col", class: "num" }, "Cost"))),
      h("tbody", {}, active.map((d) => h("tr", {}, h("th", { scope: "row" }, d.date),
        STATES.map((s) => h("td", { class: "num" }, d.by_state[s] ? money(d.by_state[s].cost) : "—")),
        h("td", { class: "num" }, d.gpu_hours.toFixed(3)), h("td", { class: "num" }, money(d.cost))))),
      h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "Total"),
        STATES.map((s) => h("td", { class: "num" }, report.by_state[s] ? money(report.by_state[s].cost) : "—")),
        h("td", { class: "num" }, t.gpu_hours.toFixed(3)), h("td", { class: "num" }, money(t.cost))))))
      : empty("No usage in this range: no instance billed."));
    replace(byState, tableWrap("Usage per state", h("table", {},
      h("caption", { class: "sr-only" }, "Totals per instance state"),
      h("thead", {}, h("tr", {}, ["State", "Instance hours", "GPU hours", "Cost"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
      h("tbody", {}, STATES.map((s) => {
        const b = report.by_state[s] || { instance_hours: 0, gpu_hours: 0, cost: 0 };
        return h("tr", {}, h("th", { scope: "row" }, h("span", { class: `swatch series-${s}`, "aria-hidden": "true" }), s),
          h("td", { class: "num" }, b.instance_hours.toFixed(3)), h("td", { class: "num" }, b.gpu_hours.toFixed(3)),
          h("td", { class: "num" }, money(b.cost)));
      })))));
  }

  async function load() {
    try {
      report = await api("GET", "/api/v1/usage", { as: "admin", signal: controller.signal,
        query: { since: since.input.value, until: until.input.value } });
      draw();
    } catch (error) {
      showError(error, "Usage");
      replace(chart, empty("Usage could not be loaded."));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (since.input.value) q.set("since", since.input.value);
    if (until.input.value) q.set("until", until.input.value);
    if (metric.input.value !== "cost") q.set("metric", metric.input.value);
    await busy(show, load, "Usage");
    history.replaceState(null, "", `#/admin/usage${q.toString() ? `?${q}` : ""}`);
  });
  metric.input.addEventListener("change", () => report && drawChart());
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => report && drawChart(), 200);
  };
  window.addEventListener("resize", onResize);

  replace(main,
    pageHeader("Usage", "GPU hours and cost per UTC day and per instance state (idle: ready but unclaimed; busy: claimed)."),
    h("section", { class: "card", "aria-label": "Range" }, form),
    h("section", { class: "card", "aria-labelledby": "usage-chart" }, h("h2", { id: "usage-chart" }, "Per day"), totals, chart, legend),
    section("Daily breakdown", daily),
    section("By state", byState),
  );
  load();
  return () => {
    controller.abort();
    window.removeEventListener("resize", onResize);
  };
}
