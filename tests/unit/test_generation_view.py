"""The read model folds jobs, queue, gallery and muses; waiting reasons and cost are pure answers."""

from datetime import timedelta

import msgspec

from libs.events import Aggregate, Metadata, Position, Recorded
from libs.events import generation as ev
from libs.events import pool as pev
from libs.events.store import EventStore
from services.generation import domain as d
from services.generation.api import Progress
from services.generation.cost import CostModel, estimate, pool_dph
from services.generation.fakes import T0
from services.generation.view import JobsView, project
from services.generation.waiting import explain, instances_wanted, typical_start_s
from services.pool.instance import Instance
from services.pool.view import PoolView

STORE = EventStore(None, clock=lambda: T0)  # type: ignore[arg-type]


class Log:
    def __init__(self) -> None:
        self.seq = 0
        self.versions: dict[str, int] = {}
        self.view = JobsView()

    def add(self, kind: str, agg_id: str, event: object, at=T0) -> Recorded:
        self.seq += 1
        version = self.versions.get(agg_id, 0) + 1
        self.versions[agg_id] = version
        env = STORE.envelope(Aggregate("gen", kind, agg_id), event, version, Metadata(actor="t"))
        env = msgspec.structs.replace(env, occurred_at=at)
        rec = Recorded("EVENTS_GEN", f"ev.gen.{kind}.{agg_id}", self.seq, env)
        self.view = project(self.view, rec)
        return rec


def req(user: str = "u1", seconds: float = 10.0) -> ev.GenerationRequested:
    return ev.GenerationRequested(user_id=user, template="txt2img", prompt={"big": "workflow"}, expected_seconds=seconds)


def claimed(iid: str = "i1") -> ev.GenerationClaimed:
    return ev.GenerationClaimed(instance_id=iid, lease_id="l", base_url="http://h", prompt_id="p", client_id="c")


OUT = ev.Output(object_name="gen/u1/j1/00-a.png", filename="a.png", content_type="image/png", size=3, sha256="ab")


def test_jobs_queue_and_gallery_follow_the_events() -> None:
    log = Log()
    for j in ("j1", "j2", "j3"):
        log.add("job", j, req())
    log.add("job", "jx", req(user="u2"))
    view = log.view
    assert list(view.queued) == ["j1", "j2", "j3", "jx"] and view.by_user["u1"] == ["j1", "j2", "j3"]
    assert view.jobs["j1"].request.prompt == {}  # the read model drops workflows
    assert [j.id for j in view.queue_ahead("j3")] == ["j1", "j2"]
    log.add("job", "j1", claimed())
    assert "j1" not in view.queued and view.running == {"j1"}
    assert [j.id for j in view.queue_ahead("j3")] == ["j2"]
    log.add("job", "j1", ev.GenerationCompleted(prompt_id="p", outputs=(OUT,)))
    assert view.running == set() and view.jobs["j1"].status == "completed"
    assert list(view.gallery["u1"]) == [OUT.object_name]
    log.add("job", "j1", ev.OutputTagged(object_name=OUT.object_name, tags=("fox",)))
    assert view.gallery["u1"][OUT.object_name].tags == ("fox",)
    log.add("job", "j1", ev.OutputDeleted(object_name=OUT.object_name))
    assert view.gallery["u1"] == {}
    assert view.job_of("u2", "j1") is None and view.job_of("u1", "j1") is not None


def test_muses_are_listed_per_user_until_deleted() -> None:
    log = Log()
    log.add("muse", "m1", ev.MuseCreated(user_id="u1", muse=ev.MuseSpec(name="A")))
    log.add("muse", "m2", ev.MuseCreated(user_id="u1", muse=ev.MuseSpec(name="B")))
    log.add("muse", "m1", ev.MuseUpdated(muse=ev.MuseSpec(name="A2")))
    assert log.view.muses["m1"].spec.name == "A2" and log.view.muses["m1"].position == Position(2, 3)
    log.add("muse", "m2", ev.MuseDeleted())
    assert log.view.muses_by_user["u1"] == ["m1"] and not log.view.muses["m2"].exists


def inst(iid: str, phase: str, **kw) -> Instance:
    return Instance(id=iid, pool_id="p", phase=phase, dph=kw.pop("dph", 0.4), **kw)


def pool(*instances: Instance, max_size: int = 4) -> PoolView:
    cfg = pev.PoolConfig(max_size=max_size)
    return PoolView(pool_id="p", config=cfg, instances={i.id: i for i in instances})


def job(status: str = "queued", seconds: float = 10.0, claimed_at=None) -> d.Job:
    cur = d.Attempt(number=1, instance_id="i", lease_id="l", base_url="b", prompt_id="p", client_id="c",
                    claimed_at=claimed_at) if claimed_at else None
    return d.Job(id="j", status=status, request=req(seconds=seconds), current=cur)  # type: ignore[arg-type]


def test_waiting_reasons() -> None:
    now = T0 + timedelta(seconds=100)
    running = [job("running", 30.0, claimed_at=now - timedelta(seconds=10))]
    behind = explain(job(), [job(), job()], running, pool(inst("a", "claimed")), now)
    assert behind.reason == "behind_jobs" and behind.jobs_ahead == 2 and behind.expected_wait_s == 40.0
    assert explain(job(), [], running, pool(inst("a", "claimed")), now).reason == "instances_busy"
    assert explain(job(), [], [], pool(inst("a", "ready")), now).reason == "starting"
    loading = explain(job(), [], [], pool(inst("a", "loading", rented_at=now - timedelta(seconds=60))), now)
    assert loading.reason == "instance_loading" and loading.expected_wait_s == 240.0
    renting = explain(job(), [], [], pool(inst("a", "renting", requested_at=now)), now)
    assert renting.reason == "renting_instance" and "renting" in renting.message
    assert explain(job(), [], [], pool(), now).reason == "no_instance"
    downloading = inst("a", "loading", rented_at=now, agent_phase="downloading", bytes_done=40, bytes_total=100)
    assert "downloading its models (40 %)" in explain(job(), [], [], pool(downloading), now).message
    stuck = msgspec.structs.replace(pool(), problems={"provider_auth": pev.Problem(
        code="provider_auth", message="the provider refused the API key", since=now)})
    blocked = explain(job(), [], [], stuck, now)
    assert blocked.reason == "pool_problem" and "refused the API key" in blocked.message
    loading_model = Progress(job_id="j", seq=3, kind="executing", node="4", node_type="CheckpointLoaderSimple")
    assert explain(job("running"), [], [], None, now, loading_model).reason == "loading_model"
    assert explain(job("running"), [], [], None, now, None) is None
    assert explain(job("completed"), [], [], None, now) is None


def test_a_job_the_pool_will_not_serve_says_why_instead_of_an_endless_estimate() -> None:
    now = T0 + timedelta(seconds=100)
    safe = msgspec.structs.replace(pool(), safe_mode=True, safe_mode_reason="admin")
    waiting = explain(job(), [job()], [], safe, now)  # even behind other jobs: nothing will run them either
    assert waiting.reason == "safe_mode" and "safe mode is on" in waiting.message and "admin" in waiting.message
    assert waiting.expected_wait_s is None
    capped = msgspec.structs.replace(pool(), safe_mode=True, safe_mode_reason="budget_day")
    assert "daily spend cap" in explain(job(), [], [], capped, now).message
    closed = explain(job(), [], [], pool(max_size=0), now)
    assert closed.reason == "pool_closed" and closed.expected_wait_s is None
    refused = inst("r", "failed", failure="no offers match the filter", terminated_at=now - timedelta(seconds=30))
    cannot = explain(job(), [], [], pool(refused), now)
    assert cannot.reason == "cannot_rent" and "no offers match the filter" in cannot.message
    old = inst("r", "failed", failure="x", terminated_at=now - timedelta(hours=1))
    assert explain(job(), [], [], pool(old), now).reason == "no_instance"  # an old refusal explains nothing now
    renting = inst("b", "renting", requested_at=now)
    assert explain(job(), [], [], pool(refused, renting), now).reason == "renting_instance"  # a retry is under way
    ended = inst("e", "failed", failure="x", rented_at=T0, terminated_at=now)  # failed after renting: not a refusal
    assert explain(job(), [], [], pool(ended), now).reason == "no_instance"
    asked = msgspec.structs.replace(job(), requested_at=T0)
    assert explain(asked, [], [], pool(), T0 + timedelta(seconds=100)).reason == "no_instance"  # within the usual start
    stuck = explain(asked, [], [], pool(), T0 + timedelta(seconds=700))  # nothing even renting, long past it
    assert stuck.reason == "cannot_rent" and "700 s" in stuck.message and stuck.expected_wait_s is None


def test_typical_start_learns_from_the_pool() -> None:
    ready = inst("a", "ready", requested_at=T0, ready_at=T0 + timedelta(seconds=90))
    assert typical_start_s(pool(ready)) == 90.0 and typical_start_s(None) == 300.0


def test_estimate_is_price_times_expected_seconds() -> None:
    model = CostModel(seconds_per_unit=0.1, overhead_s=2.0, default_dph=0.5)
    assert estimate(100, model, 0.36) == (12.0, 0.36, round(0.36 * 12 / 3600, 6))
    assert estimate(100, model, None).dph == 0.5
    assert abs(pool_dph(pool(inst("a", "ready", dph=0.2), inst("b", "claimed", dph=0.4))) - 0.3) < 1e-9
    assert pool_dph(pool()) is None


def test_instances_wanted_stays_within_max_size() -> None:
    assert instances_wanted(pool(), 3) == 3
    assert instances_wanted(pool(max_size=2), 3) == 2
    assert instances_wanted(pool(inst("a", "renting")), 1) == 0
    assert instances_wanted(pool(inst("a", "claimed"), max_size=1), 2) == 0
    assert instances_wanted(PoolView(pool_id="p", safe_mode=True), 3) == 0
