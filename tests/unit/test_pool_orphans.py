"""A terminated rental's provider id is not "known" (issue 12 item 15): an instance listed under it is an orphan."""

from datetime import timedelta

from libs.events import pool as ev
from services.pool import planner

from tests.unit.test_pool_domain import POOL, T0, Given, listed


def test_an_instance_listed_under_a_terminated_rentals_id_is_an_orphan_to_terminate() -> None:
    g = Given(ev.PoolConfig(desired_size=0)).ready("i1", "27000001")
    g.instance("i1", ev.TerminateRequested(pool_id=POOL, reason="admin"),
               ev.Terminated(pool_id=POOL, reason="admin", provider_id="27000001"))
    assert g.view.instances["i1"].phase == "terminated"
    # The provider shows an instance with that id again (a zombie, or an id the provider reused).
    plan = planner.plan(g.view, [listed("27000001", "i1", "running")], T0 + timedelta(minutes=5))
    assert [p.provider_id for p in plan.orphans] == ["27000001"]


def test_a_live_rental_is_still_known() -> None:
    g = Given(ev.PoolConfig(desired_size=1)).ready("i1", "27000001")
    plan = planner.plan(g.view, [listed("27000001", "i1", "running")], T0 + timedelta(minutes=5))
    assert plan.orphans == []
