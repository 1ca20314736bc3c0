"""Rules a pool configuration must follow before it is accepted (pure)."""

from __future__ import annotations

from libs.events import pool as ev

from .instance import PoolError

# Only these environment variables of the pool service may be passed on to rented machines
# (model download tokens). An allowlist: any other name could hand a Stoker secret to a stranger's host.
INSTANCE_TOKEN_ENV = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "CIVITAI_API_TOKEN"})
MAX_SECONDS = 7 * 24 * 3600.0
MAX_SIZE = 1000


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
