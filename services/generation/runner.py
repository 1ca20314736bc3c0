"""Running one delivery of a job: claim an instance, post or find the prompt, follow it, store outputs.

Every step is a checked append on the job aggregate. A redelivered job (its worker died)
resumes: same instance, prompt id and client id as recorded in ``GenerationClaimed``, found
again through ``/history`` and ``/queue``. A lost instance ends the attempt and the job takes
another one. Completion and the charge are one append at the job's expected version, so a
job completes (and is charged) once however many workers saw it.

Tenants share instances, not files: a fresh attempt wipes its instance, places the job's
inputs under the job's own unguessable folder, and when the job ends removes its inputs and
outputs before the lease is released (``host_files.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import msgspec

from libs.contracts.host_files import FileRef, split
from libs.events import (
    Aggregate,
    ConcurrencyError,
    Metadata,
    Position,
    Recorded,
    codec,
    subjects,
)
from libs.events import generation as ev
from libs.events.store import History
from libs.observability import tracing
from services.pool.api import Claim as PoolClaim
from services.pool.view import PoolView

from . import domain as d
from . import workflow as wf
from .api import Progress
from .comfy import ComfyError, ComfyHost, Hosts, HostUnreachable
from .comfy_spans import NodeSpans
from .follow import (
    ExecutionFailed,
    Follower,
    FollowSettings,
    HostLost,
    Interrupted,
    Rejected,
    Succeeded,
)
from .host_files import HostFiles, host_files_of
from .metrics import GenMetrics
from .outputs import Objects, content_type, object_name
from .pool_client import Pool, PoolUnavailable
from .waiting import instances_wanted

log = logging.getLogger("stoker.generation.runner")
META = Metadata(actor="gen-worker")
DECIDE_ATTEMPTS = 8


class Ack(NamedTuple):
    """Done with the message."""


class Nak(NamedTuple):
    """Deliver it again after ``delay`` seconds."""

    delay: float


class Term(NamedTuple):
    """Never deliver it again (poison; logged)."""

    reason: str


Disposition = Ack | Nak | Term


class TimedOut(NamedTuple):
    """The attempt ran past the job timeout."""

    seconds: float


class Stored(NamedTuple):
    """The attempt succeeded and its outputs are in the object store."""

    outputs: tuple[ev.Output, ...]
    node_errors: dict[str, Any]


@dataclass
class AttemptRun:
    """What one attempt learned while it ran: the job as it is now, and for the clean-up and the charge."""

    job: d.Job
    ran_until: datetime | None = None  # the prompt's end on the host, when a resumed attempt found it ended
    host_files: list[FileRef] | None = None  # outputs the prompt wrote on the instance (None: ask its history)


Result = Stored | Rejected | ExecutionFailed | Interrupted | HostLost | TimedOut


class Store(Protocol):
    """The event store as the runner uses it."""

    async def load(self, aggregate: Aggregate) -> History:
        """An aggregate's history."""
        ...

    async def append(self, aggregate: Aggregate, events: Any, expected_version: Position, meta: Metadata, *,
                     event_ids: Any = None) -> list[Recorded]:
        """A checked append."""
        ...


class RunnerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How a worker runs jobs."""

    max_attempts: int = 3  # instances a job may lose before it fails
    lease_s: float = 30.0  # claim lease, renewed every third of it: a dead worker's instance comes free soon
    stray_after_s: float = 5.0  # a claim of this job older than this and not its current one is a dead worker's
    job_timeout_s: float = 1800.0
    claim_wait_s: float = 5.0  # hold a message this long waiting for a free instance, then nak
    nak_s: float = 1.0
    autoscale: bool = True  # ask the pool for instances when jobs wait and none is coming
    follow: FollowSettings = FollowSettings()


class Signal:
    """A broadcast wake-up: ``notify`` wakes everyone waiting now."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake current waiters."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Wait for the next notify, at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def job_aggregate(job_id: str) -> Aggregate:
    """The job's aggregate."""
    return Aggregate(subjects.GENERATION, ev.JOB, job_id)


def apply(job: d.Job, records: list[Recorded]) -> d.Job:
    """A job after its own just-appended records."""
    for rec in records:
        env = rec.envelope
        job = d.evolve(job, env.event, env.occurred_at)
        job = msgspec.structs.replace(job, position=Position(env.aggregate_version, rec.seq))
    return job


class Deps(NamedTuple):
    """What the runner needs from the outside."""

    store: Store
    pool: Pool
    hosts: Hosts
    objects: Objects
    publish: Callable[[str, bytes], Awaitable[None]]
    pool_view: Callable[[], PoolView | None]
    waiting_jobs: Callable[[], int]
    enqueue_webhook: Callable[[str], Awaitable[None]]
    clock: Callable[[], datetime]
    pool_changed: Signal
    metrics: GenMetrics | None = None


class JobRunner:
    """Runs job deliveries; one instance per worker process."""

    def __init__(self, deps: Deps, settings: RunnerSettings) -> None:
        self.deps, self.settings = deps, settings
        self.metrics = deps.metrics or GenMetrics()
        self._cancels: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def notify_cancel(self, job_id: str) -> None:
        """A cancel was requested for ``job_id``: interrupt it if it runs here."""
        event = self._cancels.get(job_id)
        if event is not None:
            event.set()

    async def load(self, job_id: str) -> d.Job:
        """The job's current state from the store."""
        return d.fold(job_id, await self.deps.store.load(job_aggregate(job_id)))

    async def decide(self, job: d.Job, command: d.Command) -> d.Job:
        """Decide and append, deciding again on a fresh state after a conflict."""
        for _ in range(DECIDE_ATTEMPTS):
            events = d.decide(job, command)
            if not events:
                return job
            try:
                recs = await self.deps.store.append(job_aggregate(job.id), events, job.position, META)
            except ConcurrencyError:
                job = await self.load(job.id)
                continue
            after = apply(job, recs)
            self._observe(job, after)
            return after
        raise ConcurrencyError(subjects.aggregate_subject(job_aggregate(job.id)), job.position.seq, "kept changing")

    def _observe(self, before: d.Job, after: d.Job) -> None:
        """Metrics of what this decision changed: a claim, a lost instance, the end."""
        if after.attempts > before.attempts:
            self.metrics.claimed(after)
        if len(after.lost) > len(before.lost):
            self.metrics.lost.inc()
        if after.terminal and not before.terminal:
            self.metrics.ended(after)

    async def run(self, job_id: str, checkpoint: str | None, redelivered: bool) -> Disposition:
        """Handle one delivery of a job message."""
        cancel = self._cancels.setdefault(job_id, asyncio.Event())
        try:
            return await self._run(job_id, checkpoint, redelivered, cancel)
        finally:
            self._cancels.pop(job_id, None)

    async def _run(self, job_id: str, checkpoint: str | None, redelivered: bool, cancel: asyncio.Event) -> Disposition:
        early: asyncio.Task[PoolClaim | None] | None = None
        if not redelivered:  # a fresh job: claim while reading it
            early = asyncio.create_task(self._claim_once(job_id, checkpoint))
        try:
            job = await self.load(job_id)
        except BaseException:
            self._spawn(self._drop_claim(early))
            raise
        if job.status == "new" or job.request is None:
            await self._drop_claim(early)
            return Term(f"no job {job_id}")
        if job.terminal or (job.current is not None and not redelivered):
            await self._drop_claim(early)  # finished, or a duplicate message of a job another worker runs
            if job.terminal:
                if redelivered and job.current is not None:  # its worker may have died before handing back
                    self._spawn(self._hand_back(job, job.current, None))
                await self._after_terminal(job)
            return Ack()
        if job.cancel_requested:
            cancel.set()
        if redelivered:
            self._release_strays(job)
        while not job.terminal:
            resume = job.current is not None
            if job.current is None:
                claim = await early if early is not None else None
                early = None
                if claim is None:
                    claim = await self._claim(job)
                if claim is None:
                    return Nak(self.settings.nak_s)
                try:
                    job = await self.decide(job, self._claim_command(claim))
                except d.DomainError:  # another worker took the job meanwhile, or it ended
                    await self._release(claim.instance_id, claim.lease_id)
                    job = await self.load(job_id)
                    continue
                except BaseException:
                    self._spawn(self._release(claim.instance_id, claim.lease_id))
                    raise
            else:
                await self._drop_claim(early)
                early = None
            attempt = job.current
            assert attempt is not None
            result, run = await self._attempt(job, attempt, resume, cancel)
            job = await self._conclude(run.job, attempt, result, cancel, run)
        await self._after_terminal(job)
        return Ack()

    def _claim_command(self, claim: PoolClaim) -> d.Claim:
        return d.Claim(instance_id=claim.instance_id, lease_id=claim.lease_id, base_url=claim.base_url,
                       prompt_id=str(uuid.uuid4()), client_id=uuid.uuid4().hex, dph=claim.dph,
                       gpu_name=claim.gpu_name)

    async def _claim_once(self, job_id: str, checkpoint: str | None) -> PoolClaim | None:
        try:
            return await self.deps.pool.claim(f"gen:{job_id}", checkpoint, self.settings.lease_s)
        except PoolUnavailable:
            return None

    async def _claim(self, job: d.Job) -> PoolClaim | None:
        """Claim an instance, waiting up to ``claim_wait_s`` for one to come free."""
        deadline = time.monotonic() + self.settings.claim_wait_s
        checkpoint = job.request.checkpoint if job.request else None
        while True:
            try:
                return await self.deps.pool.claim(f"gen:{job.id}", checkpoint, self.settings.lease_s)
            except PoolUnavailable as exc:
                if exc.code == "NO_CAPACITY" and self.settings.autoscale:
                    await self._maybe_prewarm()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self.deps.pool_changed.wait(min(left, 0.5))

    async def _maybe_prewarm(self) -> None:
        pool = self.deps.pool_view()
        if pool is None:
            return
        want = instances_wanted(pool, self.deps.waiting_jobs())
        if want > 0:
            try:
                await self.deps.pool.prewarm(want, f"gen:{pool.pool_id}:{pool.seq}:{want}")
            except PoolUnavailable as exc:
                log.info("could not ask the pool for %d instance(s): %s", want, exc)

    async def _drop_claim(self, early: asyncio.Task[PoolClaim | None] | None) -> None:
        if early is not None:
            claim = await early
            if claim is not None:
                await self._release(claim.instance_id, claim.lease_id)

    async def _release(self, instance_id: str, lease_id: str) -> None:
        try:
            await self.deps.pool.release(instance_id, lease_id)
        except PoolUnavailable as exc:
            log.info("release of %s failed (its lease will expire): %s", instance_id, exc)

    def _release_strays(self, job: d.Job) -> None:
        """Release claims a dead worker made for this job and never recorded (or recorded and lost)."""
        pool = self.deps.pool_view()
        if pool is None:
            return
        holder = f"gen:{job.id}"
        current = job.current.lease_id if job.current is not None else None
        before = self.deps.clock() - timedelta(seconds=self.settings.stray_after_s)
        for inst in pool.instances.values():
            lease = inst.lease
            if (inst.phase == "claimed" and lease is not None and lease.holder == holder
                    and lease.lease_id != current and inst.phase_since is not None and inst.phase_since <= before):
                log.info("job %s: releasing %s, claimed by a worker that is gone", job.id, inst.id)
                self._spawn(self._release(inst.id, lease.lease_id))

    def _gone(self, instance_id: str) -> bool:
        pool = self.deps.pool_view()
        inst = pool.instances.get(instance_id) if pool else None
        return inst is not None and inst.phase in ("terminating", "terminated", "failed")

    async def _attempt(self, job: d.Job, attempt: d.Attempt, resume: bool,
                       cancel: asyncio.Event) -> tuple[Result, AttemptRun]:
        """Post (or find again) the prompt on the attempt's host, follow it, store its outputs."""
        state = AttemptRun(job)
        with tracing.span("generation", "gen.attempt", attributes={
                "stoker.job_id": job.id, "stoker.attempt": attempt.number, "stoker.instance_id": attempt.instance_id,
                "comfy.prompt_id": attempt.prompt_id, "stoker.resume": resume}) as span:
            result = await self._follow(state, attempt, resume, cancel)
            span.set_attribute("stoker.outcome", type(result).__name__)
        return result, state

    async def _follow(self, state: AttemptRun, attempt: d.Attempt, resume: bool,
                      cancel: asyncio.Event) -> Result:
        job = state.job
        if self._gone(attempt.instance_id):
            return HostLost("the pool reports the instance terminated")
        req = job.request
        assert req is not None
        prompt = req.prompt or req.workflow or {}  # your own workflow is stored once, as ``workflow``
        host = self.deps.hosts.host(attempt.base_url)
        seq = 0
        nodes = NodeSpans(prompt, attempt.prompt_id)

        async def started() -> None:
            state.job = await self.decide(state.job, d.Start(prompt_id=attempt.prompt_id))

        async def progress(kind: str, data: dict[str, Any]) -> None:
            nonlocal seq
            nodes.on(kind, data)
            if kind == "executed":
                return  # for the node spans only: not a progress step
            seq += 1
            node = data.get("node")
            node_type = prompt.get(node, {}).get("class_type") if isinstance(node, str) else None
            msg = Progress(job_id=job.id, seq=seq, kind="started" if kind == "execution_start" else
                           "cached" if kind == "execution_cached" else kind, attempt=attempt.number,
                           node=node if isinstance(node, str) else None, node_type=node_type,
                           step=data.get("value") if kind == "progress" else None,
                           max=data.get("max") if kind == "progress" else None, at=time.time())
            await self.deps.publish(subjects.progress_subject(job.id), codec.encode(msg))

        claimed = attempt.claimed_at or self.deps.clock()
        left = self.settings.job_timeout_s - (self.deps.clock() - claimed).total_seconds()
        may_post = True
        if resume:  # the lease may have ended while nobody ran the job
            try:
                may_post = await self.deps.pool.renew(attempt.instance_id, attempt.lease_id, self.settings.lease_s)
            except PoolUnavailable:
                may_post = False
        try:  # also checked at submit: this covers jobs queued before that check existed
            wf.check_files(prompt, frozenset(req.uploads))
        except wf.WorkflowError as exc:
            return Rejected(str(exc), exc.node_errors)
        files = self.deps.hosts.files(attempt.base_url)
        keeper = asyncio.create_task(self._keep_lease(attempt))
        limit = asyncio.timeout(max(left, 0.001))
        try:
            async with limit:
                if not resume:  # the instance changed hands: nothing of others stays
                    await self._wipe(files, attempt)
                for path, obj in req.uploads.items():
                    data = await self.deps.objects.get(obj)
                    if data is None:
                        return Rejected(f"input image {obj} does not exist (any more)", {})
                    await files.place(path, data)
                follower = Follower(host, prompt=wf.for_job(prompt, job.id), prompt_id=attempt.prompt_id,
                                    client_id=attempt.client_id,
                                    on_message=progress, gone=lambda: self._gone(attempt.instance_id), cancel=cancel,
                                    settings=self.settings.follow, on_accepted=started)
                outcome = await follower.run(resume, may_post)
                if resume and follower.ended_ms is not None:  # its first worker died: charge the host's run only
                    state.ran_until = datetime.fromtimestamp(follower.ended_ms / 1000, UTC)
                if isinstance(outcome, Succeeded):
                    state.host_files = host_files_of(outcome.outputs)
                    return Stored(await self._store_outputs(job, host, outcome.outputs), outcome.node_errors)
                return outcome
        except TimeoutError:
            if not limit.expired():
                raise  # a NATS timeout, not the job's: the delivery is retried
            with contextlib.suppress(ComfyError):
                await host.interrupt(attempt.prompt_id)
            return TimedOut(self.settings.job_timeout_s)
        except ComfyError as exc:  # unreachable, or answering what ComfyUI never answers: try another
            return HostLost(str(exc))
        finally:
            nodes.close()
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _wipe(self, files: HostFiles, attempt: d.Attempt) -> None:
        try:
            if not await files.wipe():
                log.debug("%s cannot be wiped (no agent); job files are removed one by one", attempt.base_url)
        except HostUnreachable:
            raise
        except ComfyError as exc:  # names are unguessable and loads checked: run, but say so
            log.warning("could not wipe %s before job %s: %s", attempt.instance_id, attempt.prompt_id, exc)

    async def _keep_lease(self, attempt: d.Attempt) -> None:
        delay = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(delay)
            try:
                if not await self.deps.pool.renew(attempt.instance_id, attempt.lease_id, self.settings.lease_s):
                    log.warning("lease on %s is gone; the job continues on it", attempt.instance_id)
                    return
                delay = self.settings.lease_s / 3
            except PoolUnavailable as exc:
                log.info("lease renewal failed, will retry: %s", exc)
                delay = min(1.0, self.settings.lease_s / 6)  # the lease is short: retry soon

    async def _store_outputs(self, job: d.Job, host: ComfyHost, ui: dict[str, Any]) -> tuple[ev.Output, ...]:
        """Copy every output file (and text) from the host to the object store."""
        files: list[tuple[str, dict[str, Any]]] = []
        texts: list[tuple[str, str]] = []
        for node_id, out in ui.items():
            if not isinstance(out, dict):
                continue
            for key in ("images", "gifs", "videos", "audio", "files"):
                files += [(node_id, f) for f in out.get(key) or [] if isinstance(f, dict) and f.get("filename")]
            if out.get("text"):
                texts.append((node_id, "\n".join(str(t) for t in out["text"])))
        kept = [x for x in files if x[1].get("type", "output") == "output"] or files
        user = job.user_id

        async def one(index: int, node_id: str, f: dict[str, Any]) -> ev.Output:
            data = await host.view(str(f["filename"]), str(f.get("subfolder", "")), str(f.get("type", "output")))
            return await self._put(user, job.id, index, node_id, str(f["filename"]), data)

        stored = list(await asyncio.gather(*(one(i, nid, f) for i, (nid, f) in enumerate(kept))))
        for n, (node_id, text) in enumerate(texts, start=len(kept)):
            stored.append(await self._put(user, job.id, n, node_id, f"node{node_id}.txt", text.encode()))
        return tuple(stored)

    async def _put(self, user: str, job_id: str, index: int, node_id: str, filename: str, data: bytes) -> ev.Output:
        name = object_name(user, job_id, index, filename)
        ctype = content_type(filename)
        stored = await self.deps.objects.put(name, data, ctype)
        return ev.Output(object_name=name, filename=filename, content_type=ctype, size=stored.size,
                         sha256=stored.sha256, node_id=node_id)

    async def _conclude(self, job: d.Job, attempt: d.Attempt, outcome: Result, cancel: asyncio.Event,
                        run: AttemptRun | None = None) -> d.Job:
        now = self.deps.clock()
        ran_until = run.ran_until if run is not None else None
        if job.terminal or job.current is None or job.current.prompt_id != attempt.prompt_id:
            return job  # someone else concluded this attempt meanwhile
        match outcome:
            case Stored():
                cmd: d.Command = d.Complete(prompt_id=attempt.prompt_id, outputs=outcome.outputs, at=now,
                                            node_errors=outcome.node_errors, ran_until=ran_until)
            case Rejected():
                cmd = d.Fail(reason="validation", message=outcome.message, node_errors=outcome.node_errors, at=now)
            case ExecutionFailed():
                where = f"{outcome.node_type} (node {outcome.node_id})" if outcome.node_id else "ComfyUI"
                cmd = d.Fail(reason="execution_error", message=f"{where}: {outcome.message}", at=now,
                             ran_until=ran_until, node_id=outcome.node_id, node_type=outcome.node_type,
                             node_errors={outcome.node_id: {"exception_type": outcome.exception_type,
                                                            "message": outcome.message}} if outcome.node_id else {})
            case Interrupted():
                if cancel.is_set():
                    cmd = d.Fail(reason="cancelled", message="cancelled while running", at=now)
                else:
                    cmd = d.Fail(reason="interrupted", message="the prompt was interrupted on the instance "
                                 "(not by Stoker); submit it again", at=now, node_id=outcome.node_id)
            case HostLost():
                log.warning("job %s lost instance %s: %s", job.id, attempt.instance_id, outcome.message)
                cmd = d.LoseInstance(message=outcome.message, max_attempts=self.settings.max_attempts, at=now)
            case TimedOut():
                cmd = d.Fail(reason="timeout", message=f"the job ran longer than {outcome.seconds:.0f}s and "
                             "was stopped; lower steps or size, or raise STOKER_GEN_JOB_TIMEOUT", at=now)
        job = await self.decide(job, cmd)
        if job.terminal:
            self._spawn(self._hand_back(job, attempt, run.host_files if run is not None else None))
        elif isinstance(outcome, HostLost):  # the job goes elsewhere; the instance may still hold its files
            self._spawn(self._remove_files(job, attempt, []))
        return job

    async def _remove_files(self, job: d.Job, attempt: d.Attempt, outputs: list[FileRef] | None) -> None:
        """Remove the attempt's inputs and outputs from its instance (``outputs`` None: ask its history)."""
        req = job.request
        try:
            if outputs is None:
                entry = await self.deps.hosts.host(attempt.base_url).history(attempt.prompt_id)
                outputs = host_files_of((entry or {}).get("outputs") or {})
            inputs = [FileRef("input", *split(path)) for path in (req.uploads if req is not None else {})]
            await self.deps.hosts.files(attempt.base_url).remove([*inputs, *outputs])
        except ComfyError as exc:  # the next claim wipes the instance anyway
            log.info("could not remove job %s's files from %s: %s", job.id, attempt.instance_id, exc)

    async def _hand_back(self, job: d.Job, attempt: d.Attempt, outputs: list[FileRef] | None) -> None:
        """The job is over on this instance: remove its files, then release the lease."""
        await self._remove_files(job, attempt, outputs)
        await self._release(attempt.instance_id, attempt.lease_id)

    async def _after_terminal(self, job: d.Job) -> None:
        if job.webhook_pending and job.webhook_attempts == 0:
            await self.deps.enqueue_webhook(job.id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background releases."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
