"""A PNG chart of a comparison: demand and instances over time, and cost over time, per policy."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from .report import Comparison

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
W, H, PAD = 1200, 760, 60


def render(c: Comparison, policies: list[str] | None = None) -> bytes:
    """PNG bytes: top, demand (grey) and live instances per policy; bottom, cumulative $ per policy."""
    from PIL import Image, ImageDraw  # pillow: imported here so the rest works without it

    if policies is None:  # the seed policy (the baseline) and the three cheapest others
        baseline = [r.policy for r in c.rows if r.spec.kind == "seed"]
        policies = baseline + [r.policy for r in sorted(c.rows, key=lambda r: r.total) if r.policy not in baseline][:3]
    names = policies
    series = {n: c.results[n].timeline for n in names if n in c.results and c.results[n].timeline}
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    if not series:
        d.text((PAD, PAD), "nothing to draw", fill="black")
        return _png(img)
    t0 = min(s[0][0] for s in series.values())
    t1 = max(s[-1][0] for s in series.values()) or t0 + 1
    top = (PAD, 40, W - 260, H // 2 - 30)
    bottom = (PAD, H // 2 + 20, W - 260, H - PAD)
    peak = max(max(p[1], p[2]) for s in series.values() for p in s) or 1
    cost = max(s[-1][3] for s in series.values()) or 1.0
    _frame(d, top, "instances (lines) and demand (grey: jobs running or waiting)", peak)
    _frame(d, bottom, "cumulative cost, $", cost)
    first = next(iter(series.values()))
    _bars(d, top, [(p[0], p[1]) for p in first], t0, t1, peak)
    for n, (name, s) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        _line(d, top, [(p[0], p[2]) for p in s], t0, t1, peak, color, step=True)
        _line(d, bottom, [(p[0], p[3]) for p in s], t0, t1, cost, color)
        d.rectangle((W - 240, 50 + n * 22, W - 226, 64 + n * 22), fill=color)
        d.text((W - 220, 51 + n * 22), f"{name[:30]}  ${s[-1][3]:.2f}", fill="black")
    for frame in (top, bottom):
        x0, _, x1, y1 = frame
        for k in range(5):
            t = t0 + (t1 - t0) * k / 4
            x = x0 + (x1 - x0) * k / 4
            d.text((x - 30, y1 + 4), datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M"), fill="black")
    return _png(img)


def _png(img: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")  # type: ignore[attr-defined]
    return out.getvalue()


def _frame(d: object, box: tuple[int, int, int, int], title: str, peak: float) -> None:
    x0, y0, x1, y1 = box
    d.rectangle(box, outline=(0, 0, 0))  # type: ignore[attr-defined]
    d.text((x0, y0 - 16), title, fill="black")  # type: ignore[attr-defined]
    d.text((x0 - 50, y0), f"{peak:.4g}", fill="black")  # type: ignore[attr-defined]
    d.text((x0 - 50, y1 - 10), "0", fill="black")  # type: ignore[attr-defined]


def _xy(box: tuple[int, int, int, int], t: float, y: float, t0: float, t1: float, peak: float) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    return x0 + (x1 - x0) * (t - t0) / max(t1 - t0, 1e-9), y1 - (y1 - y0) * min(y, peak) / peak


def _bars(d: object, box: tuple[int, int, int, int], pts: list[tuple[float, float]], t0: float, t1: float,
          peak: float) -> None:
    for t, y in pts:
        if y > 0:
            x, top = _xy(box, t, y, t0, t1, peak)
            d.line([(x, box[3]), (x, top)], fill=(200, 200, 200), width=2)  # type: ignore[attr-defined]


def _line(d: object, box: tuple[int, int, int, int], pts: list[tuple[float, float]], t0: float, t1: float,
          peak: float, color: tuple[int, int, int], step: bool = False) -> None:
    coords: list[tuple[float, float]] = []
    for t, y in pts:
        x, yy = _xy(box, t, y, t0, t1, peak)
        if step and coords:
            coords.append((x, coords[-1][1]))
        coords.append((x, yy))
    if len(coords) > 1:
        d.line(coords, fill=color, width=2)  # type: ignore[attr-defined]
