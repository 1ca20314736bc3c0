"""Demand and the boot model from recorded events (pure)."""

from datetime import datetime, timedelta, timezone

import pytest

from libs.events import Envelope, Recorded
from libs.events import generation as gen
from libs.events import pool as ev
from services.pool.policies.history import jobs_from, jobs_from_claims, model_from
from services.pool.policies.model import BootModel

T0 = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
OFFER = ev.Offer(offer_id="o", gpu_name="RTX 4090", dph=0.6, host_id="h", machine_id="m")


def rec(agg_type, agg_id, event, seconds, seq=[0]):
    seq[0] += 1
    env = Envelope(id=f"e{seq[0]}", schema=1, aggregate_type=agg_type, aggregate_id=agg_id, aggregate_version=1,
                   occurred_at=T0 + timedelta(seconds=seconds), actor="t", event=event)
    return Recorded("S", "s", seq[0], env)


def test_jobs_come_from_requests_with_completed_seconds_or_the_estimate():
    records = [rec(gen.JOB, "j1", gen.GenerationRequested(user_id="u", expected_seconds=30, checkpoint="sdxl"), 0),
               rec(gen.JOB, "j2", gen.GenerationRequested(user_id="u"), 50),
               rec(gen.JOB, "j1", gen.GenerationCompleted(prompt_id="p", seconds=42.0), 60),
               rec(gen.JOB, "old", gen.GenerationRequested(user_id="u"), -7200)]
    jobs = jobs_from(records, since=T0 - timedelta(hours=1))
    assert [(j.gpu_s, j.checkpoint) for j in jobs] == [(42.0, "sdxl"), (60.0, "")]


def test_claims_are_the_pool_s_own_demand():
    records = [rec(ev.INSTANCE, "i1", ev.Claimed(pool_id="p", lease_id="l", holder="h", expires_at=T0), 10),
               rec(ev.INSTANCE, "i1", ev.Released(pool_id="p", lease_id="l"), 40)]
    [job] = jobs_from_claims(records)
    assert job.arrival == (T0 + timedelta(seconds=10)).timestamp() and job.gpu_s == 30


def test_the_boot_model_is_fitted_from_rentals_or_defaults():
    records = []
    for n in range(12):
        iid = f"i{n}"
        records.append(rec(ev.INSTANCE, iid, ev.InstanceRented(pool_id="p", provider="sim", provider_id=str(n),
                                                               offer=OFFER, dph=0.6, label="l"), n * 1000))
        if n < 9:
            records.append(rec(ev.INSTANCE, iid, ev.Ready(pool_id="p", base_url="u"), n * 1000 + 100 + n * 10))
        else:
            records.append(rec(ev.INSTANCE, iid, ev.ExtractionFailed(pool_id="p", kind="extraction", status_msg="x",
                                                                     host_id="h", machine_id="m"), n * 1000 + 50))
    model = model_from(records)
    assert model.dph == 0.6 and model.failure_rate == pytest.approx(3 / 12)
    assert 100 <= model.boot_min_s < model.boot_max_s <= 180
    assert model_from([]) == BootModel()
