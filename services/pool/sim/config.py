"""Fault-model knobs of the marketplace simulator; every field has a default."""

from __future__ import annotations

from typing import Any

import msgspec


class SimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All simulator settings. Durations are seconds, rates are probabilities unless noted."""

    seed: int = 1
    # Vast account
    api_key: str | None = None  # None: any non-empty bearer key is accepted
    initial_credit: float = 100.0
    offer_count: int = 30
    bad_host_fraction: float = 0.25
    # instance lifecycle (defaults reach "ComfyUI answering" in ~10 s)
    schedule_delay: float = 1.0  # actual_status null before the pull starts
    pull_seconds: float = 3.0
    extract_seconds: float = 2.0
    comfy_boot_delay: float = 4.0  # after "running" until ComfyUI answers
    model_download_seconds: float = 2.0  # per model listed in STOKER_MODELS / onstart
    restart_seconds: float = 2.0  # start after stop, reboot
    timing_jitter: float = 0.0  # +- fraction applied to every duration above, per instance
    bill_gpu_before_running: bool = True  # False: storage-only price until "running"
    # faults
    extraction_failure_rate: float = 0.0
    bad_host_extraction_failure_rate: float = 0.0  # replaces the rate above on bad hosts
    extraction_failure_status: str = "created"  # actual_status of an instance whose image failed
    stuck_loading_rate: float = 0.0
    listing_lag: float = 0.0  # a new instance is missing from list/show for this long
    vanish_rate: float = 0.0  # expected host deaths per running instance-hour
    zombie_terminate_rate: float = 0.0  # DELETE says success but the instance keeps billing
    offer_race_rate: float = 0.0  # create fails because someone else rented the offer first
    rate_limit_burst_rate: float = 0.0  # chance that a request starts a burst of 429s
    rate_limit_burst_length: int = 3  # requests answered 429 in one burst
    rate_limit_retry_after: float = 1.0  # Retry-After header (seconds) of a 429
    # ComfyUI host
    step_seconds: float = 0.05  # per sampler step
    node_seconds: float = 0.005  # per node without steps
    model_load_seconds: float = 0.2  # first use of a checkpoint on a host
    send_previews: bool = True  # binary preview frames during sampling
    vanish_mid_job_rate: float = 0.0  # chance that a job kills its host half-way
    tick_seconds: float = 0.1  # background reconcile period

    @classmethod
    def realistic(cls, **overrides: Any) -> SimConfig:
        """A preset with minutes-long rentals and the failure rates seen on the real market."""
        base: dict[str, Any] = dict(
            schedule_delay=15.0, pull_seconds=150.0, extract_seconds=60.0, comfy_boot_delay=40.0,
            model_download_seconds=90.0, restart_seconds=30.0, timing_jitter=0.3,
            extraction_failure_rate=0.03, bad_host_extraction_failure_rate=0.35,
            stuck_loading_rate=0.03, listing_lag=4.0, vanish_rate=0.05, zombie_terminate_rate=0.05,
            offer_race_rate=0.05, rate_limit_burst_rate=0.02, rate_limit_burst_length=3,
            step_seconds=0.25, node_seconds=0.05, model_load_seconds=8.0, vanish_mid_job_rate=0.002,
            bill_gpu_before_running=False,
        )
        base.update(overrides)
        return cls(**base)


class ForcedFaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Counters that force the next N occurrences of a fault, regardless of the rates."""

    extraction_failures: int = 0
    stuck_loadings: int = 0
    zombie_terminates: int = 0
    rate_limited_requests: int = 0
    offer_races: int = 0
    mid_job_deaths: int = 0


def merge_config(config: SimConfig, changes: dict[str, Any]) -> SimConfig:
    """Return ``config`` with the fields in ``changes`` replaced (validated by msgspec)."""
    merged = msgspec.to_builtins(config)
    merged.update(changes)
    return msgspec.convert(merged, SimConfig)
