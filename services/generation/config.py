"""The generation service's settings, read from an environment-like mapping."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from libs.events import streams

from .cost import CostModel
from .follow import FollowSettings
from .runner import RunnerSettings
from .webhooks import WebhookSettings


class ConfigError(ValueError):
    """A setting has a value that cannot work."""


class GenConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one generation service process (API responder and, by default, a worker)."""

    nats_url: str = "nats://127.0.0.1:4222"
    stream_replicas: int = 1
    pool_id: str = "default"
    concurrency: int = 4
    worker: bool = True
    ack_wait_s: float = 5.0  # running jobs are held with in_progress every third of it
    drain_s: float = 10.0
    default_checkpoint: str | None = None
    byo_nodes: frozenset[str] | None = None  # node classes your own workflows may use (None: any)
    webhook_secret: str | None = None
    replica: str = ""
    runner: RunnerSettings = RunnerSettings()
    webhooks: WebhookSettings = WebhookSettings()
    cost: CostModel = CostModel()


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value:g}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0 (true/false), got {raw!r}")


def gen_config(env: Mapping[str, str]) -> GenConfig:
    """Read the settings (see the README table in ``services/generation/__main__.py``)."""
    dev = _bool(env, "STOKER_DEV", False)
    follow = FollowSettings(lost_after_s=_float(env, "STOKER_GEN_LOST_AFTER", 30.0, 0.1),
                            poll_s=_float(env, "STOKER_GEN_POLL", 2.0, 0.05))
    runner = RunnerSettings(
        max_attempts=int(_float(env, "STOKER_GEN_MAX_ATTEMPTS", 3, 1)),
        lease_s=_float(env, "STOKER_GEN_LEASE", 30.0, 3.0),
        job_timeout_s=_float(env, "STOKER_GEN_JOB_TIMEOUT", 1800.0, 1.0),
        claim_wait_s=_float(env, "STOKER_GEN_CLAIM_WAIT", 5.0),
        nak_s=_float(env, "STOKER_GEN_RETRY", 1.0, 0.05),
        autoscale=_bool(env, "STOKER_GEN_AUTOSCALE", True),
        follow=follow,
    )
    webhooks = WebhookSettings(
        max_attempts=int(_float(env, "STOKER_WEBHOOK_ATTEMPTS", 8, 5)),
        backoff_s=_float(env, "STOKER_WEBHOOK_BACKOFF", 2.0, 0.01),
        backoff_max_s=_float(env, "STOKER_WEBHOOK_BACKOFF_MAX", 3600.0, 0.01),
        timeout_s=_float(env, "STOKER_WEBHOOK_TIMEOUT", 10.0, 0.1),
        allow_private=_bool(env, "STOKER_WEBHOOK_ALLOW_PRIVATE", dev),
    )
    cost = CostModel(seconds_per_unit=_float(env, "STOKER_GEN_SECONDS_PER_UNIT", 0.05),
                     overhead_s=_float(env, "STOKER_GEN_OVERHEAD", 3.0),
                     default_dph=_float(env, "STOKER_GEN_DEFAULT_DPH", 0.5))
    concurrency = int(_float(env, "STOKER_GEN_CONCURRENCY", 4, 1))
    return GenConfig(
        nats_url=env.get("NATS_URL") or "nats://127.0.0.1:4222",
        stream_replicas=streams.replicas_from(env),
        pool_id=env.get("STOKER_POOL_ID") or "default",
        concurrency=concurrency,
        worker=_bool(env, "STOKER_GEN_WORKER", True),
        ack_wait_s=_float(env, "STOKER_GEN_ACK_WAIT", 5.0, 1.0),
        drain_s=_float(env, "STOKER_GEN_DRAIN", 10.0),
        default_checkpoint=env.get("STOKER_GEN_DEFAULT_CHECKPOINT") or None,
        byo_nodes=frozenset(n.strip() for n in env["STOKER_GEN_BYO_NODES"].split(",") if n.strip())
        if env.get("STOKER_GEN_BYO_NODES", "").strip() else None,
        webhook_secret=env.get("STOKER_WEBHOOK_SECRET") or None,
        replica=env.get("STOKER_REPLICA") or f"{socket.gethostname()}-{os.getpid()}",
        runner=runner, webhooks=webhooks, cost=cost,
    )
