"""Rules a pool configuration must follow before it is accepted (pure)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from libs.events import pool as ev

from .instance import PoolError

# Only these environment variables of the pool service may be passed on to rented machines
# (model download tokens). An allowlist: any other name could hand a Stoker secret to a stranger's host.
INSTANCE_TOKEN_ENV = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "CIVITAI_API_TOKEN"})
MAX_SECONDS = 7 * 24 * 3600.0
MAX_SIZE = 1000


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MULTILINE = frozenset({"template.onstart"})  # may hold line breaks and tabs


def parse_config(data: Any) -> ev.PoolConfig:
    """A whole configuration from JSON-like data, every field within its bounds (PoolError names the field)."""
    try:
        cfg = msgspec.convert(data, ev.PoolConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise PoolError(f"invalid configuration: {exc}", "VALIDATION_FAILED") from None
    _no_control_characters(msgspec.to_builtins(cfg), "")
    validate_config(cfg)
    return cfg


def _no_control_characters(value: Any, where: str) -> None:
    # The schema's patterns let a trailing line break through (``$`` matches before it); this does not.
    if isinstance(value, str):
        allowed = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]") if where in _MULTILINE else _CONTROL
        if allowed.search(value):
            raise PoolError(f"invalid configuration: {where} must not contain control characters",
                            "VALIDATION_FAILED")
    elif isinstance(value, dict) and where != "readiness.warmup_workflow":
        for key, item in value.items():
            _no_control_characters(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for item in value:
            _no_control_characters(item, where)


def validate_config(cfg: ev.PoolConfig) -> None:
    """Refuse configurations that cannot work or would leak a secret."""
    bad_env = sorted(set(cfg.template.token_env) - INSTANCE_TOKEN_ENV)
    if bad_env:
        raise PoolError(f"template.token_env may only name {sorted(INSTANCE_TOKEN_ENV)}; refused: {bad_env}",
                        "VALIDATION_FAILED")
    if cfg.max_size > MAX_SIZE:
        raise PoolError(f"max_size is capped at {MAX_SIZE}", "VALIDATION_FAILED")
    timeouts = [cfg.idle_timeout_s, cfg.lease_max_s, cfg.readiness.probe_timeout_s,
                cfg.readiness.probe_initial_backoff_s, cfg.readiness.probe_max_backoff_s]
    if any(not (0 < t <= MAX_SECONDS) for t in timeouts):
        raise PoolError(f"timeouts must be between 0 and {MAX_SECONDS:.0f} seconds", "VALIDATION_FAILED")
    if cfg.desired_size < 0 or cfg.max_size < 0:
        raise PoolError("sizes cannot be negative", "VALIDATION_FAILED")
    if cfg.desired_size > cfg.max_size:
        raise PoolError(f"desired_size {cfg.desired_size} is above max_size {cfg.max_size}", "VALIDATION_FAILED")
