"""The job runner against in-memory fakes: success, ComfyUI's errors, lost hosts, resume, exactly once, cancel."""

import asyncio
from datetime import timedelta

import pytest

from libs.contracts.host_files import BLANK_PNG
from libs.events import NEW, Metadata, codec
from libs.events import generation as ev
from services.generation import domain as d
from services.generation.api import Progress
from services.generation.fakes import (
    T0,
    FakeClock,
    FakeHost,
    FakeHosts,
    FakePool,
    MemoryEventStore,
)
from services.generation.follow import FollowSettings
from services.generation.outputs import MemoryObjects
from services.generation.runner import (
    Ack,
    Deps,
    JobRunner,
    Nak,
    RunnerSettings,
    Signal,
    job_aggregate,
)
from services.pool.instance import Instance, Lease
from services.pool.view import PoolView

pytestmark = pytest.mark.timeout(10)
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {}}}
FAST = RunnerSettings(claim_wait_s=0.05, nak_s=0.1, lease_s=30,
                      follow=FollowSettings(lost_after_s=0.05, poll_s=0.05, retry_s=0.01, interrupt_grace_s=1))


class World:
    def __init__(self, *hosts: FakeHost, settings: RunnerSettings = FAST) -> None:
        self.hosts = hosts or (FakeHost("http://h1"),)
        self.store = MemoryEventStore()
        self.pool = FakePool({f"i{n + 1}": h.base_url for n, h in enumerate(self.hosts)})
        self.objects = MemoryObjects()
        self.published: list[Progress] = []
        self.webhooks: list[str] = []
        self.clock = FakeClock(step=0.5)
        self.pool_view: PoolView | None = None

        async def publish(subject: str, data: bytes) -> None:
            self.published.append(codec.decoder_for(Progress).decode(data))

        async def enqueue_webhook(job_id: str) -> None:
            self.webhooks.append(job_id)

        self.runner = JobRunner(Deps(store=self.store, pool=self.pool, hosts=FakeHosts(*self.hosts),
                                     objects=self.objects, publish=publish, pool_view=lambda: self.pool_view,
                                     waiting_jobs=lambda: 1, enqueue_webhook=enqueue_webhook, clock=self.clock,
                                     pool_changed=Signal()), settings)

    async def submit(self, job_id: str = "j1", **kw) -> None:
        request = ev.GenerationRequested(user_id="u1", prompt=PROMPT, checkpoint="sd15", **kw)
        await self.store.append(job_aggregate(job_id), [request], NEW, Metadata(actor="t"))

    async def job(self, job_id: str = "j1") -> d.Job:
        return await self.runner.load(job_id)

    async def types(self, job_id: str = "j1") -> list[str]:
        return [type(r.event).__name__ for r in await self.store.load(job_aggregate(job_id))]


async def test_a_job_runs_to_completion_with_outputs_progress_and_a_charge() -> None:
    w = World()
    await w.submit(webhook_url="https://example.com/h")
    assert await w.runner.run("j1", "sd15", redelivered=False) == Ack()
    assert await w.types() == ["GenerationRequested", "GenerationClaimed", "GenerationStarted",
                               "GenerationCompleted", "GenerationCharged"]
    job = await w.job()
    [out] = job.outputs
    data, ctype = w.objects.data[out.object_name]
    assert data.startswith(b"\x89PNG") and ctype == "image/png" and out.size == len(data)
    assert out.object_name.startswith("gen/u1/j1/00-")
    assert job.charged == job.cost > 0 and w.pool.claims == [("i1", "sd15")]
    assert [p.seq for p in w.published] == list(range(1, len(w.published) + 1))
    assert [p.step for p in w.published if p.kind == "progress"] == [1, 2, 3]
    await w.runner.drain()
    assert w.pool.releases == ["i1"] and w.webhooks == ["j1"]


async def test_validation_errors_fail_the_job_with_comfyuis_words() -> None:
    w = World()
    w.hosts[0].reject = ({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
                         {"1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                            "details": "ckpt_name: 'x' not in []"}], "class_type": "Ckpt"}})
    await w.submit()
    assert await w.runner.run("j1", None, redelivered=False) == Ack()
    job = await w.job()
    assert job.status == "failed" and job.failure.reason == "validation"
    assert "node 1 (Ckpt): Value not in list: ckpt_name: 'x' not in []" in job.failure.message
    assert job.failure.node_errors["1"]["class_type"] == "Ckpt"


async def test_an_execution_error_names_the_node() -> None:
    w = World(FakeHost("http://h1", mode="error"))
    await w.submit()
    await w.runner.run("j1", None, redelivered=False)
    job = await w.job()
    assert job.failure.reason == "execution_error" and job.failure.message == "SaveImage (node 2): boom"


async def test_a_host_that_dies_mid_job_moves_the_job_to_another_instance() -> None:
    w = World(FakeHost("http://h1", mode="die", steps=4), FakeHost("http://h2"))
    await w.submit()
    assert await w.runner.run("j1", None, redelivered=False) == Ack()
    assert await w.types() == ["GenerationRequested", "GenerationClaimed", "GenerationStarted",
                               "GenerationAttemptLost", "GenerationClaimed", "GenerationStarted",
                               "GenerationCompleted", "GenerationCharged"]
    job = await w.job()
    assert job.current.instance_id == "i2" and job.attempts == 2 and job.status == "completed"


async def test_losing_every_instance_fails_with_a_reason() -> None:
    w = World(FakeHost("http://h1", mode="die"), settings=RunnerSettings(
        max_attempts=1, claim_wait_s=0.05, follow=FollowSettings(lost_after_s=0.05, poll_s=0.05, retry_s=0.01)))
    await w.submit()
    await w.runner.run("j1", None, redelivered=False)
    job = await w.job()
    assert job.failure.reason == "instance_lost" and "lost 1 time(s)" in job.failure.message


async def claimed_elsewhere(w: World, post: bool) -> d.Job:
    """A worker claimed and (maybe) posted the job, then died."""
    job = await w.runner.decide(await w.job(), d.Claim(instance_id="i1", lease_id="l0", base_url="http://h1",
                                                       prompt_id="p-fixed", client_id="c-fixed", dph=0.4))
    w.pool.held["i1"] = "l0"
    if post:
        await w.hosts[0].post_prompt(PROMPT, prompt_id="p-fixed", client_id="c-fixed")
        job = await w.runner.decide(job, d.Start(prompt_id="p-fixed"))
    return job


async def test_a_redelivered_job_resumes_the_same_prompt_without_posting_again() -> None:
    w = World()
    await w.submit()
    await claimed_elsewhere(w, post=True)
    assert await w.runner.run("j1", None, redelivered=True) == Ack()
    assert w.hosts[0].posted == ["p-fixed"]
    assert (await w.job()).status == "completed" and w.pool.claims == []


async def test_a_redelivered_job_whose_prompt_never_reached_comfyui_posts_it_under_the_recorded_id() -> None:
    w = World()
    await w.submit()
    await claimed_elsewhere(w, post=False)
    await w.runner.run("j1", None, redelivered=True)
    assert w.hosts[0].posted == ["p-fixed"] and (await w.job()).status == "completed"


async def test_two_workers_on_one_job_complete_and_charge_it_once() -> None:
    w = World()
    await w.submit()
    await claimed_elsewhere(w, post=True)
    results = await asyncio.gather(w.runner.run("j1", None, True), w.runner.run("j1", None, True))
    assert results == [Ack(), Ack()]
    types = await w.types()
    assert types.count("GenerationCompleted") == 1 and types.count("GenerationCharged") == 1


async def test_a_duplicate_first_delivery_of_a_running_job_is_dropped() -> None:
    w = World()
    await w.submit()
    await claimed_elsewhere(w, post=True)
    assert await w.runner.run("j1", "sd15", redelivered=False) == Ack()
    assert (await w.job()).status == "running"
    await w.runner.drain()
    assert w.pool.releases == []  # the instance stays with the worker that runs the job


async def test_cancel_interrupts_a_running_job_on_its_host() -> None:
    w = World(FakeHost("http://h1", mode="hang"))
    await w.submit()
    task = asyncio.create_task(w.runner.run("j1", None, redelivered=False))
    for _ in range(200):
        if (await w.job()).current and (await w.job()).current.started_at:
            break
        await asyncio.sleep(0.01)
    job = await w.runner.decide(await w.job(), d.Cancel(at=w.clock()))
    assert job.cancel_requested
    w.runner.notify_cancel("j1")
    assert await task == Ack()
    job = await w.job()
    assert job.status == "cancelled" and w.hosts[0].interrupted == {job.current.prompt_id}


async def test_no_free_instance_means_nak_and_a_request_for_one() -> None:
    w = World()
    w.pool.held["i1"] = "someone"
    await w.submit()
    assert await w.runner.run("j1", None, redelivered=False) == Nak(0.1)
    assert (await w.job()).status == "queued" and w.pool.prewarms == []  # no pool view: nothing to size from


async def test_a_job_past_its_timeout_is_stopped() -> None:
    w = World(FakeHost("http://h1", mode="hang"), settings=RunnerSettings(
        job_timeout_s=0.2, follow=FollowSettings(poll_s=0.05, retry_s=0.01)))
    w.clock.step = 0.0
    await w.submit()
    await w.runner.run("j1", None, redelivered=False)
    job = await w.job()
    assert job.failure.reason == "timeout" and w.hosts[0].interrupted


async def test_a_resumed_job_whose_lease_ended_before_posting_takes_a_fresh_claim() -> None:
    w = World()
    await w.submit()
    await claimed_elsewhere(w, post=False)
    del w.pool.held["i1"]  # the dead worker's lease expired
    assert await w.runner.run("j1", None, redelivered=True) == Ack()
    types = await w.types()
    assert types.count("GenerationAttemptLost") == 1 and types.count("GenerationClaimed") == 2
    assert (await w.job()).status == "completed" and "p-fixed" not in w.hosts[0].posted


async def test_a_dropped_socket_falls_back_to_polling_history() -> None:
    w = World(FakeHost("http://h1", mode="drop", steps=4), settings=RunnerSettings(
        follow=FollowSettings(lost_after_s=5, poll_s=0.05, retry_s=0.01)))
    await w.submit()
    assert await w.runner.run("j1", None, redelivered=False) == Ack()
    job = await w.job()
    assert job.status == "completed" and job.attempts == 1 and len(job.outputs) == 1
    assert [p.step for p in w.published if p.kind == "progress"] == [1, 2]  # then the socket was gone


INPUT = "stoker/" + "ab" * 16 + "/image.png"


async def test_a_job_finds_the_instance_wiped_and_leaves_nothing_of_its_own_behind() -> None:
    w = World()
    host = w.hosts[0]
    host.uploads["victim.png"] = b"another tenant's image"  # left by someone (a crash, an old version)
    host.files["theirs_00001_.png"] = b"another tenant's output"
    await w.objects.put("gen/u1/j0/00-a.png", b"\x89PNG private", "image/png")
    await w.submit(uploads={INPUT: "gen/u1/j0/00-a.png"})
    assert await w.runner.run("j1", None, redelivered=False) == Ack()
    await w.runner.drain()
    assert host.wipes == 1 and host.placed == [INPUT]  # wiped when claimed, then the job's input placed
    assert host.uploads == {} and host.files == {}  # its input and its output are gone after it
    [out] = (await w.job()).outputs
    assert w.objects.data[out.object_name][0].startswith(b"\x89PNG fake")  # stored before they were removed
    assert w.pool.releases == ["i1"]


async def test_on_a_plain_comfyui_the_jobs_files_are_blanked_since_they_cannot_be_deleted() -> None:
    w = World()
    host = w.hosts[0]
    host.agent = False
    await w.objects.put("gen/u1/j0/00-a.png", b"\x89PNG private", "image/png")
    await w.submit(uploads={INPUT: "gen/u1/j0/00-a.png"})
    await w.runner.run("j1", None, redelivered=False)
    await w.runner.drain()
    assert host.wipes == 0 and host.uploads == {INPUT: BLANK_PNG}
    assert list(host.files.values()) == [BLANK_PNG]


async def test_a_queued_workflow_that_loads_someone_elses_file_is_refused_before_it_runs() -> None:
    w = World()
    w.hosts[0].uploads["victim.png"] = b"x"
    stolen = {"1": {"class_type": "LoadImage", "inputs": {"image": "victim.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    await w.store.append(job_aggregate("j1"), [ev.GenerationRequested(user_id="u2", workflow=stolen)], NEW,
                         Metadata(actor="t"))
    assert await w.runner.run("j1", None, redelivered=False) == Ack()
    job = await w.job()
    assert job.failure.reason == "validation" and "victim.png" in job.failure.message
    assert w.hosts[0].posted == []


async def test_a_resumed_job_is_charged_until_its_prompt_ended_not_until_a_new_worker_found_it() -> None:
    w = World()
    w.clock.step = 0.0
    w.hosts[0].clock_ms = lambda: int((T0 + timedelta(seconds=2)).timestamp() * 1000)  # ended 2 s after the claim
    await w.submit()
    await claimed_elsewhere(w, post=True)  # claimed at T0 (the store's clock) by a worker that then died
    for _ in range(100):
        if "p-fixed" in w.hosts[0].history_:
            break
        await asyncio.sleep(0.01)
    w.clock.advance(30)  # the downtime before the job was redelivered
    assert await w.runner.run("j1", None, redelivered=True) == Ack()
    job = await w.job()
    assert job.status == "completed" and job.seconds == 2.0 and job.cost == round(0.4 * 2 / 3600, 6)


async def test_a_redelivered_job_releases_claims_its_dead_worker_made_and_never_used() -> None:
    w = World(FakeHost("http://h1"), FakeHost("http://h2"), FakeHost("http://h3"))
    await w.submit()
    await claimed_elsewhere(w, post=True)
    w.pool.held.update({"i2": "stray", "i3": "fresh"})
    now = w.clock.now

    def claimed(iid: str, lease: str, since) -> Instance:
        return Instance(id=iid, pool_id="p", phase="claimed", phase_since=since,
                        lease=Lease(lease_id=lease, holder="gen:j1", expires_at=now + timedelta(seconds=30)))
    w.pool_view = PoolView(pool_id="p", instances={
        "i1": claimed("i1", "l0", now - timedelta(seconds=60)),  # the job's own attempt: kept
        "i2": claimed("i2", "stray", now - timedelta(seconds=60)),  # claimed, then the worker died
        "i3": claimed("i3", "fresh", now)})  # too new to tell (a claim in flight)
    assert await w.runner.run("j1", None, redelivered=True) == Ack()
    await w.runner.drain()
    assert sorted(w.pool.releases) == ["i1", "i2"]  # i1 after the job, i2 at once; i3 left to its lease
