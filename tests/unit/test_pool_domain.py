"""The pool's pure core: instance evolution, the view, and reconcile planning — no I/O."""

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from libs.events import Envelope, Recorded
from libs.events import pool as ev
from services.pool import planner
from services.pool import view as v
from services.pool.instance import PoolError, decide_claim, decide_release
from services.pool.providers.base import ProviderInstance
from services.pool.status import fatal_failure, label_for, parse_label

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
OFFER = ev.Offer(offer_id="o1", gpu_name="RTX 4090", dph=0.5, host_id="h1", machine_id="m1")
POOL = "p1"


class Given:
    """Build a view from events, as the projection would."""

    def __init__(self, config: ev.PoolConfig | None = None) -> None:
        self.view = v.PoolView(pool_id=POOL)
        self.seq = 0
        self.versions: dict[str, int] = {}
        if config is not None:
            self.config(ev.PoolConfigured(pool_id=POOL, config=config))

    def _rec(self, agg_type: str, agg_id: str, event: ev.Event, at: datetime) -> None:
        self.seq += 1
        self.versions[agg_id] = self.versions.get(agg_id, 0) + 1
        env = Envelope(id=f"e{self.seq}", schema=1, aggregate_type=agg_type, aggregate_id=agg_id,
                       aggregate_version=self.versions[agg_id], occurred_at=at, actor="test", event=event)
        self.view = v.project(self.view, Recorded("EVENTS_POOL", f"ev.pool.{agg_type}.{agg_id}", self.seq, env))

    def config(self, event: ev.Event, at: datetime = T0) -> "Given":
        self._rec(ev.CONFIG, POOL, event, at)
        return self

    def instance(self, iid: str, *events: ev.Event, at: datetime = T0) -> "Given":
        for event in events:
            self._rec(ev.INSTANCE, iid, event, at)
        return self

    def rented(self, iid: str, pid: str, at: datetime = T0, offer: ev.Offer = OFFER) -> "Given":
        return self.instance(
            iid,
            ev.RentRequested(pool_id=POOL, idempotency_key=iid, offer=offer, provider="sim",
                             label=label_for(POOL, iid)),
            ev.InstanceRented(pool_id=POOL, provider="sim", provider_id=pid, offer=offer, dph=offer.dph,
                              label=label_for(POOL, iid)), at=at)

    def ready(self, iid: str, pid: str, at: datetime = T0) -> "Given":
        self.rented(iid, pid, at)
        return self.instance(iid, ev.Ready(pool_id=POOL, base_url=f"http://127.0.0.1/{iid}", models=("a.safetensors",)),
                             at=at)


def listed(pid: str, iid: str, status: str = "running", msg: str | None = None, url: str | None = "http://x") -> ProviderInstance:
    return ProviderInstance(provider_id=pid, label=label_for(POOL, iid), actual_status=status, status_msg=msg,
                            host_id="h1", machine_id="m1", dph=0.5, comfy_url=url)


def events_of(plan: planner.Plan, iid: str) -> list[type]:
    return [type(e) for e in plan.events.get(iid, [])]


def test_converges_to_desired_size():
    g = Given(ev.PoolConfig(desired_size=3, max_size=4))
    assert planner.plan(g.view, [], T0).rent == 3
    g.rented("i1", "1")
    assert planner.plan(g.view, [listed("1", "i1", "loading")], T0).rent == 2


def test_never_rents_above_max_size_or_in_safe_mode():
    g = Given(ev.PoolConfig(desired_size=9, max_size=2))
    assert planner.plan(g.view, [], T0).rent == 2
    g.config(ev.SafeModeChanged(pool_id=POOL, enabled=True, reason="admin"))
    assert planner.plan(g.view, [], T0).rent == 0


def test_extraction_failure_is_terminated_at_once_and_host_avoided():
    g = Given(ev.PoolConfig(desired_size=1)).rented("i1", "1")
    msg = "Error response from daemon: failed to register layer: write /x: no space left on device"
    plan = planner.plan(g.view, [listed("1", "i1", "loading", msg)], T0 + timedelta(seconds=5))
    assert events_of(plan, "i1") == [ev.InstanceStatusChanged, ev.ExtractionFailed, ev.TerminateRequested]
    assert [i.id for i in plan.destroy] == ["i1"]
    g.instance("i1", *plan.events["i1"], at=T0 + timedelta(seconds=5))
    assert g.view.instances["i1"].phase == "terminating"
    assert "h1" in {p.host_id for p in g.view.penalties.values()}
    from services.pool.reputation import avoided_hosts
    assert avoided_hosts(g.view.penalties, T0 + timedelta(minutes=30)) == {"h1"}
    assert avoided_hosts(g.view.penalties, T0 + timedelta(days=2)) == frozenset()


def test_fatal_status_messages():
    assert fatal_failure("loading", "failed to register layer: no space left on device") == "extraction"
    assert fatal_failure("loading", "pull access denied for x, repository does not exist") == "pull"
    assert fatal_failure("exited", None) == "start"
    assert fatal_failure("loading", "Pulling fs layer 3/12") is None
    assert fatal_failure("running", "success, running vastai/comfy") is None


def test_terminated_only_when_the_provider_confirms():
    g = Given(ev.PoolConfig()).rented("i1", "1").instance("i1", ev.TerminateRequested(pool_id=POOL, reason="admin"))
    later = T0 + timedelta(minutes=5)
    still_there = planner.plan(g.view, [listed("1", "i1")], later)
    assert [i.id for i in still_there.destroy] == ["i1"] and not still_there.events
    gone = planner.plan(g.view, [], later)
    assert [i.id for i in gone.confirm_gone] == ["i1"] and not gone.events


def test_listing_lag_is_not_loss():
    g = Given(ev.PoolConfig(desired_size=1)).ready("i1", "1")
    assert planner.plan(g.view, [], T0 + timedelta(seconds=5)).confirm_gone == []
    assert [i.id for i in planner.plan(g.view, [], T0 + timedelta(minutes=5)).confirm_gone] == ["i1"]


def test_orphans_are_found_by_label():
    g = Given(ev.PoolConfig()).ready("i1", "1")
    stray = ProviderInstance(provider_id="99", label=label_for(POOL, "unknown"), actual_status="running")
    other_pool = ProviderInstance(provider_id="98", label="stoker:otherpool:x", actual_status="running")
    not_ours = ProviderInstance(provider_id="97", label="my-own-box", actual_status="running")
    plan = planner.plan(g.view, [listed("1", "i1"), stray, other_pool, not_ours], T0)
    assert [p.provider_id for p in plan.orphans] == ["99"]


def test_pending_rent_is_adopted_by_label_after_a_crash():
    g = Given(ev.PoolConfig(desired_size=1)).instance("i1", ev.RentRequested(
        pool_id=POOL, idempotency_key="k", offer=OFFER, provider="sim", label=label_for(POOL, "i1")))
    plan = planner.plan(g.view, [listed("7", "i1", "loading")], T0 + timedelta(seconds=1))
    assert events_of(plan, "i1") == [ev.InstanceRented] and plan.events["i1"][0].provider_id == "7"
    assert plan.rent == 0, "a pending rent counts toward the desired size"
    assert plan.orphans == []
    # In flight (this process is still calling the provider): leave it alone.
    assert planner.plan(g.view, [listed("7", "i1")], T0, in_flight=frozenset({"i1"})).events == {}


def test_pending_rent_never_seen_fails_after_grace():
    g = Given(ev.PoolConfig(desired_size=1)).instance("i1", ev.RentRequested(
        pool_id=POOL, idempotency_key="k", offer=OFFER, provider="sim", label=label_for(POOL, "i1")))
    assert planner.plan(g.view, [], T0 + timedelta(seconds=10)).events == {}
    plan = planner.plan(g.view, [], T0 + timedelta(minutes=5))
    assert events_of(plan, "i1") == [ev.RentFailed]
    assert plan.rent == 1


def test_idle_instances_beyond_desired_end_after_idle_timeout():
    g = Given(ev.PoolConfig(desired_size=1, idle_timeout_s=60)).ready("i1", "1").ready("i2", "2")
    listing = [listed("1", "i1"), listed("2", "i2")]
    assert planner.plan(g.view, listing, T0 + timedelta(seconds=30)).events == {}
    plan = planner.plan(g.view, listing, T0 + timedelta(seconds=61))
    assert sum(1 for evs in plan.events.values() if any(isinstance(e, ev.TerminateRequested) for e in evs)) == 1
    assert all(e.reason == "idle" for evs in plan.events.values() for e in evs)


def test_expired_lease_is_released():
    g = Given(ev.PoolConfig(desired_size=1)).ready("i1", "1")
    claim = decide_claim(g.view.instances["i1"], lease_id="L", holder="job-1", lease_s=60, lease_max_s=1800,
                         checkpoint=None, now=T0)
    g.instance("i1", *claim)
    assert planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(seconds=30)).events == {}
    plan = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(seconds=61))
    assert plan.events["i1"] == [ev.Released(pool_id=POOL, lease_id="L", reason="lease_expired")]


def test_claim_requires_ready_and_caps_the_lease():
    g = Given(ev.PoolConfig()).rented("i1", "1")
    with pytest.raises(PoolError):
        decide_claim(g.view.instances["i1"], lease_id="L", holder="h", lease_s=10, lease_max_s=60,
                     checkpoint=None, now=T0)
    g.instance("i1", ev.Ready(pool_id=POOL, base_url="http://x"))
    [claimed] = decide_claim(g.view.instances["i1"], lease_id="L", holder="h", lease_s=9999, lease_max_s=60,
                             checkpoint=None, now=T0)
    assert claimed.expires_at == T0 + timedelta(seconds=60)
    g.instance("i1", claimed)
    assert decide_release(g.view.instances["i1"], "other") == []


def test_safe_mode_terminates_everything_in_one_pass():
    g = Given(ev.PoolConfig(desired_size=2)).ready("i1", "1").rented("i2", "2")
    g.config(ev.SafeModeChanged(pool_id=POOL, enabled=True, reason="admin"))
    plan = planner.plan(g.view, [listed("1", "i1"), listed("2", "i2", "loading")], T0)
    assert {iid for iid, evs in plan.events.items() if ev.TerminateRequested in map(type, evs)} == {"i1", "i2"}
    assert all(e.reason == "safe_mode" for evs in plan.events.values() for e in evs)


def test_spend_cap_trips_safe_mode_with_a_reason():
    g = Given(ev.PoolConfig(desired_size=1, spend_caps=ev.SpendCaps(max_per_day=1.0))).ready("i1", "1")
    assert planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(hours=1)).config_events == []
    plan = planner.plan(g.view, [listed("1", "i1")], T0 + timedelta(hours=2, minutes=1))
    assert plan.config_events == [ev.SafeModeChanged(pool_id=POOL, enabled=True, reason="budget_day",
                                                     detail=plan.config_events[0].detail)]
    assert "$1.00/day" in plan.config_events[0].detail
    assert ev.TerminateRequested in map(type, plan.events["i1"]) and plan.rent == 0


def test_costs_accrue_per_state():
    g = Given(ev.PoolConfig()).rented("i1", "1", at=T0)
    g.instance("i1", ev.Ready(pool_id=POOL, base_url="http://x"), at=T0 + timedelta(hours=1))
    g.instance("i1", *decide_claim(g.view.instances["i1"], lease_id="L", holder="h", lease_s=60, lease_max_s=3600,
                                   checkpoint=None, now=T0), at=T0 + timedelta(hours=2))
    g.instance("i1", ev.TerminateRequested(pool_id=POOL, reason="admin"), at=T0 + timedelta(hours=4))
    g.instance("i1", ev.Terminated(pool_id=POOL, reason="admin"), at=T0 + timedelta(hours=4, minutes=6))
    costs = g.view.instances["i1"].cost_by_phase
    assert costs == pytest.approx({"loading": 0.5, "idle": 0.5, "busy": 1.0, "terminating": 0.05})
    assert v.spend_rate(g.view) == 0
    assert v.spend_today(g.view, T0 + timedelta(hours=5)) == pytest.approx(0.5 * 4.1)


def test_labels_round_trip():
    assert parse_label(label_for("p", "abc")) == ("p", "abc")
    assert parse_label("other") is None and parse_label(None) is None


def test_view_survives_a_checkpoint_round_trip():
    g = Given(ev.PoolConfig(desired_size=1)).ready("i1", "1")
    data = msgspec.json.encode(g.view)
    assert msgspec.json.decode(data, type=v.PoolView) == g.view


def test_other_pools_events_are_ignored():
    g = Given(ev.PoolConfig(desired_size=1))
    g.instance("x", ev.RentRequested(pool_id="someone-else", idempotency_key="k", offer=OFFER, provider="sim",
                                     label="stoker:someone-else:x"))
    assert g.view.instances == {}


def test_configuration_cannot_leak_secrets_or_overflow():
    from services.pool.policy import validate_config
    from services.pool.reconciler import instance_env

    with pytest.raises(PoolError, match="token_env"):
        validate_config(ev.PoolConfig(template=ev.InstanceTemplate(token_env=("STOKER_ADMIN_KEY",))))
    with pytest.raises(PoolError, match="timeouts"):
        validate_config(ev.PoolConfig(idle_timeout_s=1e300))
    with pytest.raises(PoolError, match="desired_size"):
        validate_config(ev.PoolConfig(desired_size=5, max_size=2))
    validate_config(ev.PoolConfig())
    env = {"HF_TOKEN": "hf", "STOKER_ADMIN_KEY": "admin-secret"}
    template = ev.InstanceTemplate(token_env=("HF_TOKEN", "STOKER_ADMIN_KEY"), models=("https://x/m.safetensors",))
    assert instance_env(env, template) == {"HF_TOKEN": "hf", "STOKER_MODELS": "https://x/m.safetensors"}


def test_subject_tokens_reject_trailing_newlines():
    from libs.events.ids import is_subject_token

    assert is_subject_token("abc-1") and not is_subject_token("abc\n")


def test_problems_are_raised_once_and_cleared_when_gone() -> None:
    from datetime import UTC, datetime

    from libs.events import pool as ev
    from services.pool import problems
    from services.pool.providers.base import ProviderError

    code, message = problems.from_provider_error(ProviderError("Vast.ai list instances failed with error 401: "
                                                               "Invalid user key", status=401), "listing instances")
    assert code == "provider_auth" and "VASTAI_API_KEY" in message
    assert problems.from_provider_error(ProviderError("timeout", retryable=True), "listing")[0] == "provider_unreachable"
    raised = problems.changes("p", {}, {code: message}, set(problems.LISTING))
    assert [type(e).__name__ for e in raised] == ["ProblemRaised"]
    current = {code: ev.Problem(code=code, message=message, since=datetime.now(UTC))}
    assert problems.changes("p", current, {code: message}, set(problems.LISTING)) == []  # no churn
    assert problems.changes("p", current, {}, {"no_offers"}) == []  # not looked at: stays
    cleared = problems.changes("p", current, {}, set(problems.LISTING))
    assert [type(e).__name__ for e in cleared] == ["ProblemCleared"]


def test_agent_reports_only_what_is_new() -> None:
    from services.pool.agent_report import report_of
    from services.pool.instance import Instance
    from services.pool.probe import AgentStatus, ProbeResult

    inst = Instance(id="i", pool_id="p", base_url="http://h:1")
    first = report_of(inst, ProbeResult(False, agent=AgentStatus("downloading", bytes_done=0, bytes_total=1000)))
    assert first is not None and first.phase == "downloading" and first.base_url == "http://h:1"
    seen = Instance(id="i", pool_id="p", agent_phase="downloading", bytes_done=0, bytes_total=1000)
    assert report_of(seen, ProbeResult(False, agent=AgentStatus("downloading", bytes_done=50, bytes_total=1000))) is None
    assert report_of(seen, ProbeResult(False, agent=AgentStatus("downloading", bytes_done=150, bytes_total=1000)))
    assert report_of(seen, ProbeResult(False, agent=AgentStatus("ready", bytes_done=0, bytes_total=1000)))
    assert report_of(seen, ProbeResult(False, agent=None)) is None  # a host without an agent reports nothing
    unreachable = report_of(seen, ProbeResult(False, agent=AgentStatus("unreachable"), error="ConnectError"))
    assert unreachable is not None and unreachable.probe_error == "ConnectError"


def test_which_events_alert_and_how_they_look() -> None:
    import hashlib
    import hmac
    import json
    from datetime import UTC, datetime

    from libs.events import Recorded
    from libs.events import pool as ev
    from libs.events.envelope import Envelope
    from services.pool.alerts import WebhookConfig, alert_of, payload, webhook_config

    def rec(event: object, kind: str = ev.INSTANCE) -> Recorded:
        env = Envelope(id="e1", schema=1, aggregate_type=kind, aggregate_id="i1", aggregate_version=1,
                       occurred_at=datetime(2026, 1, 1, tzinfo=UTC), actor="pool", event=event)  # type: ignore[arg-type]
        return Recorded("s", "ev.pool.instance.i1", 1, env)

    assert alert_of(rec(ev.ProbeFailed(pool_id="p", reason="not ready after 600s"))).kind == "probe_timeout"
    assert alert_of(rec(ev.Terminated(pool_id="p", reason="provider_lost"))).kind == "node_lost"
    assert alert_of(rec(ev.Terminated(pool_id="p", reason="idle"))) is None
    budget = ev.SafeModeChanged(pool_id="p", enabled=True, reason="budget_day", detail="spent $30")
    assert alert_of(rec(budget, ev.CONFIG)).kind == "spend_cap"
    assert alert_of(rec(ev.SafeModeChanged(pool_id="p", enabled=True, reason="admin"), ev.CONFIG)).kind == "safe_mode"
    assert alert_of(rec(ev.SafeModeChanged(pool_id="p", enabled=False, reason="admin"), ev.CONFIG)) is None
    assert alert_of(rec(ev.ProblemRaised(pool_id="p", code="no_offers", message="x"), ev.CONFIG)) is None
    failed = ev.ExtractionFailed(pool_id="p", kind="extraction", status_msg="no space left on device", host_id="7",
                                 machine_id="8")
    alert = alert_of(rec(failed))
    assert alert is not None and alert.kind == "extraction_failed" and "no space left" in alert.message

    slack = webhook_config({"STOKER_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"})
    assert slack is not None and slack.format == "slack"
    body, _ = payload(slack, "p", alert, rec(failed), 1700000000)
    assert set(json.loads(body)) == {"text"} and "no space left" in json.loads(body)["text"]
    generic = WebhookConfig("https://ntfy.sh/x", "generic", "k3y-secret")
    body, headers = payload(generic, "p", alert, rec(failed), 1700000000)
    mac = hmac.new(b"k3y-secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Stoker-Signature"] == f"sha256={mac}" and json.loads(body)["event_id"] == "e1"
    assert "k3y-secret" not in repr(generic) and webhook_config({}) is None
