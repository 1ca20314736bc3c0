"""Marketplace state machine, billing and fault model on a fake clock."""

import pytest

from services.pool.sim.clock import FakeClock
from services.pool.sim.config import SimConfig
from services.pool.sim.instance import CreateRequest, instance_row
from services.pool.sim.market import Market, MarketError

CFG = SimConfig(seed=3, schedule_delay=1.0, pull_seconds=4.0, extract_seconds=2.0, comfy_boot_delay=3.0,
                model_download_seconds=5.0)
REQ = CreateRequest(image="vastai/comfy:latest", env={"-p 8188:8188": "1", "STOKER_MODELS": "a.safetensors,loras/b.safetensors"},
                    disk=40.0, label="pool-a")


def market(**changes: object) -> tuple[Market, FakeClock]:
    clock = FakeClock()
    return Market(SimConfig(**{**{f: getattr(CFG, f) for f in CFG.__struct_fields__}, **changes}), clock), clock


def first_offer(m: Market) -> int:
    return int(m.search({"rentable": {"eq": True}, "verified": {"eq": True}, "external": {"eq": False},
                         "order": [["dph_total", "asc"]]})[0]["id"])


def test_rental_goes_scheduling_loading_running_with_docker_texts() -> None:
    m, clock = market()
    inst = m.create(first_offer(m), REQ)
    row = m.row(inst)
    assert row["actual_status"] is None and row["intended_status"] == "running"
    assert isinstance(row["start_date"], float) and row["extra_env"][0] == ["-p 8188:8188", "1"]
    clock.advance(2.0)
    row = m.row(inst)
    assert row["actual_status"] == "loading" and "Downloading [" in row["status_msg"]
    clock.advance(3.5)
    assert "Extracting [" in m.row(inst)["status_msg"]
    assert m.wanted_hosts() == {}
    clock.advance(1.5)
    row = m.row(inst)
    assert row["actual_status"] == "running" and row["status_msg"] == "success, running vastai/comfy:latest"
    spec = m.wanted_hosts()[inst.id]
    assert spec.ready_at == pytest.approx(clock.now() + 3.0)
    assert [(f, n) for f, n, _ in spec.models] == [("checkpoints", "a.safetensors"), ("loras", "b.safetensors")]
    assert "8188/tcp" not in row["ports"] and "22/tcp" in row["ports"]
    m.set_host_port(inst.id, 40123)
    assert m.row(inst)["ports"]["8188/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "40123"}]


def test_no_host_without_port_8188_mapping() -> None:
    m, clock = market()
    inst = m.create(first_offer(m), CreateRequest(image="x", env={"-p 22:22": "1"}))
    clock.advance(60)
    assert inst.phase(clock.now()) == "running" and m.wanted_hosts() == {}


def test_billing_is_price_times_time_and_stops_on_destroy() -> None:
    m, clock = market()
    inst = m.create(first_offer(m), REQ)
    clock.advance(1800)
    assert inst.billed(clock.now()) == pytest.approx(inst.dph_total / 2)
    assert m.billing_ids() == [inst.id]
    assert m.destroy(inst.id) is True
    clock.advance(3600)
    assert inst.billed(clock.now()) == pytest.approx(inst.dph_total / 2)
    assert m.billing_ids() == [] and m.visible(inst.id) is None
    assert m.credit() == pytest.approx(CFG.initial_credit - inst.dph_total / 2)
    with pytest.raises(MarketError) as err:
        m.destroy(inst.id)
    assert err.value.status == 404


def test_stopped_instance_bills_storage_only() -> None:
    m, clock = market()
    inst = m.create(first_offer(m), REQ)
    clock.advance(3600)
    m.set_state(inst.id, "stopped")
    clock.advance(3600)
    assert m.row(inst)["actual_status"] == "exited" and m.row(inst)["intended_status"] == "stopped"
    assert inst.billed(clock.now()) == pytest.approx(inst.dph_total + inst.storage_dph)
    m.set_state(inst.id, "running")
    assert inst.phase(clock.now()) == "loading"
    clock.advance(CFG.restart_seconds + 0.01)
    assert inst.phase(clock.now()) == "running" and inst.generation == 1


def test_storage_only_until_running_when_configured() -> None:
    m, clock = market(bill_gpu_before_running=False)
    inst = m.create(first_offer(m), REQ)
    running_at = inst.timeline.running_at
    assert running_at is not None
    clock.advance(running_at - clock.now() + 3600)
    expected = inst.storage_dph * (running_at - inst.timeline.created_at) / 3600 + inst.dph_total
    assert inst.billed(clock.now()) == pytest.approx(expected)


def test_forced_extraction_failure_keeps_billing_with_daemon_error() -> None:
    m, clock = market()
    m.forced.extraction_failures = 1
    inst = m.create(first_offer(m), REQ)
    clock.advance(3600)
    row = m.row(inst)
    assert row["actual_status"] == "created"
    assert row["status_msg"].startswith("Error response from daemon: failed to register layer")
    assert inst.id in m.billing_ids() and inst.billed(clock.now()) == pytest.approx(inst.dph_total)
    assert m.wanted_hosts() == {} and m.forced.extraction_failures == 0
    assert "Error response from daemon" in m.log_text(inst.id)


def test_bad_hosts_use_their_own_failure_rate() -> None:
    m, clock = market(bad_host_extraction_failure_rate=1.0, extraction_failure_rate=0.0, offer_count=40)
    results: dict[bool, set[bool]] = {True: set(), False: set()}
    for offer in m.search({"rentable": {"eq": True}}):
        inst = m.create(offer["id"], REQ)
        clock.advance(0.001)
        results[inst.host_bad].add(inst.timeline.fail_at is not None)
    assert results[True] == {True} and results[False] == {False}


def test_stuck_loading_never_runs_and_status_freezes() -> None:
    m, clock = market(stuck_loading_rate=1.0)
    inst = m.create(first_offer(m), REQ)
    clock.advance(10.0)
    frozen = m.row(inst)["status_msg"]
    assert "Downloading [" in frozen
    clock.advance(86400)
    row = m.row(inst)
    assert row["actual_status"] == "loading" and row["status_msg"] == frozen and inst.id in m.billing_ids()


def test_listing_lag_hides_new_instance_from_list_and_show() -> None:
    m, clock = market(listing_lag=5.0)
    inst = m.create(first_offer(m), REQ)
    assert m.visible(inst.id) is None and m.visible_instances() == []
    assert m.billing_ids() == [inst.id]
    clock.advance(5.0)
    assert m.visible(inst.id) is inst


def test_zombie_terminate_answers_success_but_keeps_billing() -> None:
    m, clock = market()
    m.forced.zombie_terminates = 1
    inst = m.create(first_offer(m), REQ)
    assert m.destroy(inst.id) is False
    clock.advance(60)
    assert m.billing_ids() == [inst.id] and m.visible(inst.id) is inst
    assert m.destroy(inst.id) is True and m.billing_ids() == []


def test_vanish_stops_billing_and_removes_the_machine() -> None:
    m, clock = market()
    offer_id = first_offer(m)
    inst = m.create(offer_id, REQ)
    clock.advance(100)
    m.vanish(inst.id)
    clock.advance(100)
    assert m.visible(inst.id) is None and m.billing_ids() == []
    assert inst.billed(clock.now()) == pytest.approx(inst.dph_total * 100 / 3600)
    assert offer_id not in {o["id"] for o in m.search({})}
    with pytest.raises(MarketError):
        m.create(offer_id, REQ)


def test_vanish_rate_schedules_host_death_after_running() -> None:
    m, clock = market(vanish_rate=3600.0)  # expected lifetime ~1 s of running
    inst = m.create(first_offer(m), REQ)
    assert inst.vanish_at is not None and inst.timeline.running_at is not None
    assert inst.vanish_at >= inst.timeline.running_at
    clock.advance(inst.vanish_at - clock.now())
    assert inst.phase(clock.now()) == "vanished" and m.billing_ids() == []


def test_offers_are_taken_and_returned() -> None:
    m, _ = market()
    offer_id = first_offer(m)
    inst = m.create(offer_id, REQ)
    assert offer_id not in {o["id"] for o in m.search({"rentable": {"eq": True}})}
    with pytest.raises(MarketError) as err:
        m.create(offer_id, REQ)
    assert err.value.error == "no_such_ask"
    m.destroy(inst.id)
    assert offer_id in {o["id"] for o in m.search({"rentable": {"eq": True}})}


def test_create_refusals() -> None:
    m, _ = market()
    with pytest.raises(MarketError) as err:
        m.create(1, REQ)
    assert err.value.status == 404
    with pytest.raises(MarketError):
        m.create(first_offer(m), CreateRequest())
    m.forced.offer_races = 1
    offer_id = first_offer(m)
    with pytest.raises(MarketError):
        m.create(offer_id, REQ)
    assert offer_id != first_offer(m)
    m2, _ = market(initial_credit=0.0)
    with pytest.raises(MarketError) as err:
        m2.create(first_offer(m2), REQ)
    assert err.value.error == "insufficient_credit"


def test_rate_limit_bursts() -> None:
    m, _ = market(rate_limit_burst_rate=1.0, rate_limit_burst_length=3, rate_limit_retry_after=2.5)
    assert [m.rate_limited() for _ in range(3)] == [2.5, 2.5, 2.5]
    m2, _ = market()
    m2.forced.rate_limited_requests = 2
    assert [m2.rate_limited() for _ in range(3)] == [1.0, 1.0, None]


def test_same_seed_same_market() -> None:
    def run() -> list[object]:
        m, clock = market(timing_jitter=0.3, extraction_failure_rate=0.3, stuck_loading_rate=0.2)
        out: list[object] = []
        for offer in m.search({"rentable": {"eq": True}})[:10]:
            inst = m.create(offer["id"], REQ)
            out.append((inst.id, inst.timeline))
        return out
    assert run() == run()


def test_rows_for_every_phase_have_cli_required_fields() -> None:
    m, clock = market()
    inst = m.create(first_offer(m), REQ)
    for dt in (0.0, 2.0, 10.0):
        clock.advance(dt)
        row = instance_row(inst, clock.now(), "created")
        assert isinstance(row["start_date"], float) and isinstance(row["extra_env"], list)
