"""min_size (always kept) vs demand instances (end after idle_timeout_s), and desired_size as its old name."""

from datetime import timedelta

import msgspec

from libs.events import pool as ev
from libs.events.codec import decoder_for
from services.pool import planner

from tests.unit.test_pool_domain import POOL, T0, Given, listed


def idle_ends(plan: planner.Plan) -> set[str]:
    return {iid for iid, evs in plan.events.items()
            if any(isinstance(e, ev.TerminateRequested) and e.reason == "idle" for e in evs)}


def test_an_old_config_event_decodes_with_min_size_equal_to_desired_size():
    old = b'{"type":"PoolConfigured","pool_id":"p1","config":{"desired_size":2,"max_size":4}}'
    event = decoder_for(ev.PoolEvent).decode(old)
    assert isinstance(event, ev.PoolConfigured)
    assert event.config.min_size == 2 and event.config.desired_size == 2


def test_min_size_and_desired_size_stay_equal():
    assert ev.PoolConfig(min_size=3).desired_size == 3
    assert msgspec.convert({"min_size": 1, "desired_size": 5}, ev.PoolConfig).desired_size == 1
    assert ev.PoolConfig(desired_size=2).min_size == 2


def test_with_min_size_0_a_prewarmed_instance_ends_after_its_idle_timeout():
    g = Given(ev.PoolConfig(min_size=0, idle_timeout_s=900)).ready("i1", "1")
    still_warm = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(seconds=899))
    assert idle_ends(still_warm) == set() and still_warm.rent == 0
    ended = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(seconds=900))
    assert idle_ends(ended) == {"i1"}
    assert ended.rent == 0, "a demand instance that idled out is not replaced"


def test_with_min_size_1_one_instance_stays_however_long_it_idles():
    g = Given(ev.PoolConfig(min_size=1, idle_timeout_s=900)).ready("i1", "1").ready("i2", "2")
    plan = planner.plan(g.view, [listed("1", "i1"), listed("2", "i2")], T0 + timedelta(days=2))
    assert len(idle_ends(plan)) == 1
    alone = Given(ev.PoolConfig(min_size=1, idle_timeout_s=900)).ready("i1", "1")
    assert idle_ends(planner.plan(alone.view, [listed("1", "i1")], T0 + timedelta(days=2))) == set()


def test_a_policy_target_keeps_more_but_never_fewer_than_min_size():
    g = Given(ev.PoolConfig(min_size=1, max_size=4, idle_timeout_s=900)).ready("i1", "1")
    more = planner.plan(g.view, [listed("1", "i1")], T0, target=planner.Target(keep=3, idle_timeout_s=60))
    assert more.rent == 2
    fewer = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(hours=1),
                         target=planner.Target(keep=0, idle_timeout_s=60))
    assert idle_ends(fewer) == set(), "min_size wins over a policy that keeps 0"
    capped = planner.plan(g.view, [listed("1", "i1")], T0, target=planner.Target(keep=10, idle_timeout_s=60))
    assert capped.rent == 3, "never past max_size"


def test_a_policy_idle_timeout_replaces_the_config_one():
    g = Given(ev.PoolConfig(min_size=0, idle_timeout_s=900)).ready("i1", "1")
    plan = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(seconds=61),
                        target=planner.Target(keep=0, idle_timeout_s=60))
    assert idle_ends(plan) == {"i1"}
    assert POOL == g.view.pool_id


def test_a_queue_rule_cuts_the_generation_service_s_prewarms_but_never_an_operator_s():
    from services.pool.policies.live import cap_prewarm

    g = Given(ev.PoolConfig(min_size=0, max_size=8)).rented("i1", "1")  # one instance booting
    g.config(ev.PolicyApplied(pool_id=POOL, policy=ev.PolicySpec(kind="queue_depth",
                                                                 params={"target_s": 240.0, "idle_s": 600.0})))
    count, why = cap_prewarm(g.view, T0, 1, "prewarm:gen:p1:7:1")
    assert count == 0 and "drains within 240 s on 1 instance" in why
    # asked for 7 beyond the 1 coming: 8 waiting jobs of 60 s drain in 240 s on 2 instances
    assert cap_prewarm(g.view, T0, 7, "prewarm:gen:p1:8:7")[0] == 1
    assert cap_prewarm(g.view, T0, 1, "prewarm:admin-key")[0] == 1
    g.config(ev.PolicyApplied(pool_id=POOL, policy=ev.PolicySpec(kind="seed")))
    assert cap_prewarm(g.view, T0, 3, "prewarm:gen:p1:9:3")[0] == 3, "no queue rule: one per waiting job"


def test_the_initial_min_size_comes_from_stoker_pool_min_size_or_its_old_name():
    from services.pool.app import service_config

    assert service_config({"STOKER_PROVIDER": "vastai"}).initial_desired_size == 0
    assert service_config({"STOKER_PROVIDER": "sim"}).initial_desired_size == 1
    assert service_config({"STOKER_POOL_DESIRED_SIZE": "2"}).initial_desired_size == 2
    assert service_config({"STOKER_POOL_MIN_SIZE": "3", "STOKER_POOL_DESIRED_SIZE": "2"}).initial_desired_size == 3
