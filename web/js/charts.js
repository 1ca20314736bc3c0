// Two small inline-SVG charts, no library: a stacked bar chart and a step line over time.
// Colours come from CSS classes (series-<name>); every chart has a text alternative. Pass the
// container's width so text stays at its real size on a phone (the SVG is drawn 1:1).

/** A drawing width for a chart in `box`: its width in CSS pixels, within sensible bounds. */
export function widthOf(box) {
  return Math.max(300, Math.min(1200, Math.round(box.clientWidth || 720)));
}

import { s } from "./dom.js";

function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * exp) return step * exp;
  return 10 * exp;
}

/**
 * Stacked bars: `bars` = [{label, parts: {series: value}}], `series` = names in stacking order.
 * `format(v)` labels the axis. Returns an <svg role="img"> described by `summary`.
 */
export function stackedBars({ bars, series, format, summary, height = 220, width = 720 }) {
  const pad = { top: 12, right: 12, bottom: 36, left: 64 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const totals = bars.map((b) => series.reduce((sum, k) => sum + (b.parts[k] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = plotW / Math.max(bars.length, 1);
  const barW = Math.max(2, Math.min(36, slot * 0.7));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": summary,
    preserveAspectRatio: "xMidYMid meet" });
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const y = pad.top + plotH * (1 - frac);
    svg.append(s("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }),
      s("text", { x: pad.left - 8, y: y + 4, class: "axis", "text-anchor": "end" }, format(max * frac)));
  }
  const labelEvery = Math.ceil(bars.length / 10);
  bars.forEach((bar, i) => {
    const x = pad.left + slot * i + (slot - barW) / 2;
    let y = pad.top + plotH;
    for (const key of series) {
      const value = bar.parts[key] || 0;
      if (value <= 0) continue;
      const hgt = (value / max) * plotH;
      y -= hgt;
      svg.append(s("rect", { x, y, width: barW, height: Math.max(hgt, 0.5), class: `bar series-${key}` },
        s("title", {}, `${bar.label} · ${key}: ${format(value)}`)));
    }
    if (i % labelEvery === 0) {
      svg.append(s("text", { x: x + barW / 2, y: height - pad.bottom + 16, class: "axis", "text-anchor": "middle" }, bar.label));
    }
  });
  return svg;
}

/**
 * A step line of `points` = [{t: ms, v}] over [from, to] (ms), filled below.
 * Returns an <svg role="img"> described by `summary`.
 */
export function stepLine({ points, from, to, format, summary, height = 160, width = 720 }) {
  const pad = { top: 12, right: 12, bottom: 28, left: 64 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = niceMax(Math.max(0, ...points.map((p) => p.v)));
  const x = (t) => pad.left + ((Math.min(Math.max(t, from), to) - from) / Math.max(to - from, 1)) * plotW;
  const y = (v) => pad.top + plotH * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": summary,
    preserveAspectRatio: "xMidYMid meet" });
  for (const frac of [0, 0.5, 1]) {
    const yy = pad.top + plotH * (1 - frac);
    svg.append(s("line", { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: "grid" }),
      s("text", { x: pad.left - 8, y: yy + 4, class: "axis", "text-anchor": "end" }, format(max * frac)));
  }
  const minutes = Math.round((to - from) / 60000);
  for (const [frac, label] of [[0, `−${minutes} min`], [0.5, `−${Math.round(minutes / 2)} min`], [1, "now"]]) {
    svg.append(s("text", { x: pad.left + plotW * frac, y: height - 8, class: "axis",
      "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle" }, label));
  }
  const sorted = points.filter((p) => p.t <= to).sort((a, b) => a.t - b.t);
  let last = 0;
  for (const p of sorted) if (p.t <= from) last = p.v;
  let d = `M ${x(from)} ${y(last)}`;
  for (const p of sorted) {
    if (p.t <= from) continue;
    d += ` H ${x(p.t)} V ${y(p.v)}`;
    last = p.v;
  }
  d += ` H ${x(to)}`;
  const area = `${d} V ${y(0)} H ${x(from)} Z`;
  svg.append(s("path", { d: area, class: "area" }), s("path", { d, class: "line" }));
  return svg;
}
