"""Build a policy from its spec (the event's ``PolicySpec``), and the candidates the target knob tries."""

from __future__ import annotations

from libs.events import pool as ev

from .adaptive import Adaptive
from .base import Policy
from .histogram import HistogramKeepAlive
from .simple import Fixed, QueueDepth, Reactive, Schedule, Seed
from .timeofweek import TimeOfWeek


def make(spec: ev.PolicySpec) -> Policy:
    """A fresh policy (no history) for ``spec``; unknown parameters are refused."""
    p = dict(spec.params)
    try:
        match spec.kind:
            case "fixed":
                return Fixed(n=int(p.pop("n", 1)), idle_s=p.pop("idle_s", 900.0))
            case "seed":
                return Seed(idle_s=p.pop("idle_s", 900.0))
            case "reactive":
                return Reactive(idle_s=p.pop("idle_s", 120.0))
            case "queue_depth":
                return QueueDepth(target_s=p.pop("target_s", 120.0), idle_s=p.pop("idle_s", 300.0))
            case "histogram":
                return HistogramKeepAlive(head=p.pop("head", 0.05), tail=p.pop("tail", 0.9),
                                          range_h=p.pop("range_h", 4.0), margin=p.pop("margin", 1.1),
                                          fallback_idle_s=p.pop("fallback_idle_s", 600.0))
            case "time_of_week":
                return TimeOfWeek(threshold=p.pop("threshold", 0.5), idle_s=p.pop("idle_s", 300.0),
                                  bucket_min=p.pop("bucket_min", 60.0), min_weeks=p.pop("min_weeks", 1.0))
            case "adaptive":
                return Adaptive(tail=p.pop("tail", 0.95), threshold=p.pop("threshold", 2.0),
                                drain_s=p.pop("drain_s", 60.0))
            case "schedule":
                return Schedule(spec.windows, idle_s=p.pop("idle_s", 300.0))
    finally:
        if p:
            raise ValueError(f"policy {spec.kind!r} has no parameter(s) {sorted(p)}")
    raise ValueError(f"unknown policy {spec.kind!r}")


def describe(spec: ev.PolicySpec) -> str:
    """The policy's display name."""
    return make(spec).name


def candidates() -> list[ev.PolicySpec]:
    """The policies and parameters ``stoker simulate`` compares and the target knob chooses from."""
    spec = ev.PolicySpec
    out = [spec(kind="seed"), spec(kind="fixed", params={"n": 1})]
    out += [spec(kind="reactive", params={"idle_s": s}) for s in (60.0, 300.0, 600.0)]
    out += [spec(kind="queue_depth", params={"target_s": d, "idle_s": i}) for d in (60.0, 240.0)
            for i in (600.0, 900.0)]
    out += [spec(kind="histogram", params={"tail": q}) for q in (0.85, 0.9, 0.95, 0.99)]
    out += [spec(kind="time_of_week", params={"threshold": t, "idle_s": 600.0}) for t in (2.0, 6.0)]
    out += [spec(kind="adaptive", params={"tail": q, "threshold": t}) for q in (0.9, 0.95) for t in (0.0, 6.0)]
    out += [spec(kind="schedule", windows=(ev.ScheduleWindow(),))]
    return out
