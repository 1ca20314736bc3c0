"""Job commands of the API: submit, estimate, get, list, cancel, templates, webhook secret.

Handlers get typed requests and return typed results; refusals are ``DomainError`` (the
shell maps them to ``Error(code, message, details)``). Writes are checked appends; a
handler waits until its own view has them, so a following read sees them.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

from opentelemetry import trace

from libs.contracts import host_files
from libs.events import NEW, ConcurrencyError, Metadata
from libs.events import generation as ev
from libs.events.ids import is_subject_token, new_id
from libs.events.projector import Projector
from libs.observability import tracing
from services.pool.view import PoolView

from . import api, templates
from . import domain as d
from . import workflow as wf
from .config import GenConfig
from .cost import estimate, pool_dph
from .present import job_view
from .runner import JobRunner, apply, job_aggregate
from .view import JobsView
from .waiting import explain
from .webhooks import check_url, describe_headers

log = logging.getLogger("stoker.generation.commands")
JOB_NAMESPACE = uuid.UUID("5f1f0f5e-7d0c-4c53-9b59-6a3f8f1d2c11")
MAX_PAGE = 100


class Resolved(NamedTuple):
    """A request made concrete: what to run and what it should cost."""

    prompt: dict[str, Any]
    params: dict[str, Any]
    checkpoint: str | None
    uploads: dict[str, str]
    units: float
    seconds: float
    dph: float
    cost: float


def meta_of(req: api.Request) -> Metadata:
    """Envelope metadata for the events a request causes."""
    return Metadata(actor=req.actor, correlation_id=req.correlation_id)


def check_user(user_id: str) -> None:
    """User ids become part of object names: letters, digits, ``_-:`` only."""
    if not is_subject_token(user_id):
        raise d.DomainError("user_id must be 1-128 letters, digits, '_', '-' or ':'", "VALIDATION_FAILED")


def job_id_for(user_id: str, key: str) -> str:
    """The job id of an idempotency key: the same user and key always name the same job."""
    if not 1 <= len(key) <= 200:
        raise d.DomainError("idempotency_key must be 1-200 characters", "VALIDATION_FAILED")
    return str(uuid.uuid5(JOB_NAMESPACE, f"{user_id}\n{key}"))


def page_limit(limit: int) -> int:
    """Validate a page size."""
    if not 1 <= limit <= MAX_PAGE:
        raise d.DomainError(f"limit must be between 1 and {MAX_PAGE}", "VALIDATION_FAILED")
    return limit


def cursor_int(cursor: str | None) -> int | None:
    """Parse a numeric keyset cursor."""
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise d.DomainError("cursor is not one this API returned", "VALIDATION_FAILED") from None


def known_checkpoints(pool: PoolView | None) -> list[str]:
    """Checkpoints the pool's instances have or will have: required ones first, then downloads, then reported."""
    if pool is None:
        return []
    names = list(pool.config.readiness.required_models)
    names += [url.rsplit("/", 1)[-1].split("?", 1)[0] for url in pool.config.template.models]
    for inst in pool.instances.values():
        if inst.phase in ("ready", "claimed"):
            names.extend(inst.models)
    return list(dict.fromkeys(names))


def check_checkpoint(checkpoint: str | None, pool: PoolView | None, known: list[str]) -> None:
    """Refuse a checkpoint that no instance has and none will download (a job would only fail on the GPU)."""
    if not checkpoint or pool is None or checkpoint in known:
        return
    where = f"the pool offers {', '.join(known)}" if known else "the pool offers no checkpoint yet"
    raise d.DomainError(
        f"checkpoint {checkpoint!r} is not on any instance and the pool template does not download it ({where}): "
        "choose one the pool offers, or add its download URL to the pool template's models "
        "(Pool → Settings → Models, or PUT /api/v1/pool/config {\"template\": {\"models\": [...]}})",
        "CHECKPOINT_UNAVAILABLE", {"checkpoint": checkpoint, "available": known})


class JobCommands:
    """The job side of the API."""

    def __init__(self, *, runner: JobRunner, projector: Projector[JobsView], pool_view: Callable[[], PoolView | None],
                 config: GenConfig, enqueue: Callable[[str, str | None], Awaitable[int]],
                 unqueue: Callable[[int], Awaitable[None]], progress: dict[str, api.Progress],
                 secret_for: Callable[[str], str], clock: Callable[[], datetime]) -> None:
        self.runner, self.projector, self.pool_view, self.config = runner, projector, pool_view, config
        self.enqueue, self.unqueue, self.progress = enqueue, unqueue, progress
        self.secret_for, self.clock = secret_for, clock

    @property
    def view(self) -> JobsView:
        """The read model."""
        return self.projector.view

    def present(self, job: d.Job) -> api.JobView:
        """A job with its waiting reason and latest progress."""
        view = self.view
        running = [view.jobs[j] for j in view.running if j in view.jobs]
        waiting = explain(job, view.queue_ahead(job.id), running, self.pool_view(), self.clock(),
                          self.progress.get(job.id))
        return job_view(job, waiting, self.progress.get(job.id))

    async def find(self, user_id: str, job_id: str) -> d.Job:
        """The user's job (from the view, else the store: it may be that fresh); NOT_FOUND otherwise."""
        job = self.view.job_of(user_id, job_id)
        if job is None and is_subject_token(job_id):
            job = await self.runner.load(job_id)
        if job is None or job.status == "new" or job.user_id != user_id:
            raise d.DomainError(f"no job {job_id}", "NOT_FOUND")
        return job

    def resolve(self, req: api.SubmitRequest | api.EstimateRequest, job_id: str) -> Resolved:
        """Validate a submit (or estimate) and bind what will run."""
        check_user(req.user_id)
        if (req.template is None) == (req.workflow is None):
            raise d.DomainError("give either a template (with params) or your own workflow", "VALIDATION_FAILED")
        muse = None
        if req.muse_id is not None:
            found = self.view.muses.get(req.muse_id)
            if found is None or not found.exists or found.user_id != req.user_id:
                raise d.DomainError(f"no muse {req.muse_id}", "NOT_FOUND")
            muse = found.spec
        pool = self.pool_view()
        if req.template is not None:
            template = templates.TEMPLATES.get(req.template)
            if template is None:
                raise d.DomainError(f"unknown template {req.template!r}; choose one of "
                                    f"{', '.join(templates.TEMPLATES)}", "VALIDATION_FAILED")
            known = known_checkpoints(pool)
            bound = templates.bind(template, req.params, job_id=job_id, user_id=req.user_id,
                                   seed=secrets.randbelow(2**32), preset=req.preset,
                                   default_checkpoint=self.config.default_checkpoint or (known[0] if known else None),
                                   muse=muse, variation=req.muse_variation, input_token=host_files.new_token())
            check_checkpoint(bound.checkpoint, pool, known)
            prompt, params, checkpoint, uploads, units = bound
            self._check_files(prompt, frozenset(uploads))
        else:
            if req.params or req.preset or muse is not None or req.muse_variation:
                raise d.DomainError("params, preset and muses apply to templates; edit your workflow instead",
                                    "VALIDATION_FAILED")
            try:
                prompt = wf.check(req.workflow, self.config.byo_nodes)
            except wf.WorkflowError as exc:
                raise d.DomainError(str(exc), "VALIDATION_FAILED", {"node_errors": exc.node_errors}) from None
            # Your own workflow is ComfyUI's to validate (it runs the branches that pass): no checkpoint check here.
            self._check_files(prompt, frozenset())
            params, checkpoint, uploads, units = {}, wf.checkpoint_of(prompt), {}, wf.work_units(prompt)
        est = estimate(units, self.config.cost, pool_dph(pool))
        return Resolved(prompt, params, checkpoint, uploads, units, est.seconds, est.dph, est.cost)

    @staticmethod
    def _check_files(prompt: dict[str, Any], own: frozenset[str]) -> None:
        """A job reads only the inputs it brought: never another tenant's files on a shared instance."""
        try:
            wf.check_files(prompt, own)
        except wf.WorkflowError as exc:
            raise d.DomainError(str(exc), "VALIDATION_FAILED", {"node_errors": exc.node_errors}) from None

    async def submit(self, req: api.SubmitRequest) -> api.SubmitResult:
        """Queue a job (or return the job of a repeated idempotency key)."""
        check_user(req.user_id)
        job_id = job_id_for(req.user_id, req.idempotency_key) if req.idempotency_key else new_id()
        trace.get_current_span().set_attribute("stoker.job_id", job_id)
        if req.idempotency_key:
            existing = await self.runner.load(job_id)
            if existing.status != "new":
                return self._result(existing, created=False)
        r = self.resolve(req, job_id)
        if req.webhook_url is not None:
            check_url(req.webhook_url, allow_private=self.config.webhooks.allow_private)
        requested = ev.GenerationRequested(
            user_id=req.user_id, template=req.template, workflow=req.workflow, params=r.params,
            muse_id=req.muse_id, idempotency_key=req.idempotency_key, webhook_url=req.webhook_url,
            estimated_cost=r.cost, prompt=r.prompt if req.template else {}, uploads=r.uploads, checkpoint=r.checkpoint,
            preset=(req.preset or templates.DEFAULT_PRESET) if req.template else None,
            expected_seconds=r.seconds, work_units=r.units)
        try:
            recs = await self.runner.deps.store.append(job_aggregate(job_id), [requested], NEW, meta_of(req))
        except ConcurrencyError:
            return self._result(await self.runner.load(job_id), created=False)
        job = apply(d.Job(id=job_id), recs)
        try:
            seq = await self.enqueue(job_id, r.checkpoint)
            job = await self.runner.decide(job, d.MarkQueued(seq=seq))
        except Exception as exc:  # noqa: BLE001 - the sweeper queues it later
            log.warning("job %s recorded but not queued yet: %s", job_id, exc)
        await self.projector.wait_for(job.position.seq)
        return self._result(self.view.jobs.get(job_id, job), created=True)

    def _result(self, job: d.Job, created: bool) -> api.SubmitResult:
        req = job.request
        assert req is not None
        return api.SubmitResult(job_id=job.id, created=created, status=job.status, estimated_cost=req.estimated_cost,
                                expected_seconds=req.expected_seconds, job=self.present(job))

    async def estimate(self, req: api.EstimateRequest) -> api.EstimateResult:
        """What a job would cost; nothing is stored."""
        r = self.resolve(req, "estimate")
        return api.EstimateResult(estimated_cost=r.cost, expected_seconds=r.seconds, dph=r.dph, work_units=r.units,
                                  checkpoint=r.checkpoint,
                                  preset=(req.preset or templates.DEFAULT_PRESET) if req.template else None)

    async def get(self, req: api.GetRequest) -> api.JobView:
        """One job."""
        return self.present(await self.find(req.user_id, req.job_id))

    async def list(self, req: api.ListRequest) -> api.JobPage:
        """The user's jobs, newest first (keyset on the request's stream sequence)."""
        limit = page_limit(req.limit)
        before = cursor_int(req.cursor)
        if req.status is not None and req.status not in ("queued", "running", "completed", "failed", "cancelled"):
            raise d.DomainError(f"unknown status {req.status!r}", "VALIDATION_FAILED")
        view = self.view
        items: list[api.JobView] = []
        last = None
        for job_id in reversed(view.by_user.get(req.user_id, [])):
            seq = view.job_seq[job_id]
            if before is not None and seq >= before:
                continue
            job = view.jobs[job_id]
            if req.status is not None and job.status != req.status:
                continue
            if len(items) == limit:
                return api.JobPage(items=items, next_cursor=str(last))
            items.append(self.present(job))
            last = seq
        return api.JobPage(items=items, next_cursor=None)

    async def cancel(self, req: api.CancelRequest) -> api.JobView:
        """Cancel: a queued job ends now (and leaves the queue); a running one is interrupted."""
        job = await self.find(req.user_id, req.job_id)
        job = await self.runner.decide(await self.runner.load(job.id), d.Cancel(at=self.clock()))
        if job.status == "cancelled" and job.current is None and job.queued_seq:
            await self.unqueue(job.queued_seq)
        self.runner.notify_cancel(job.id)
        await self.projector.wait_for(job.position.seq)
        return self.present(self.view.jobs.get(job.id, job))

    async def templates(self, req: api.TemplatesRequest) -> dict[str, Any]:
        """Templates with their parameters and presets, and the checkpoints available now."""
        return {"templates": [templates.describe(t) for t in templates.TEMPLATES.values()],
                "checkpoints": known_checkpoints(self.pool_view()), "presets": templates.PRESETS,
                "default_preset": templates.DEFAULT_PRESET}

    async def webhook_secret(self, req: api.WebhookSecretRequest) -> dict[str, Any]:
        """The user's webhook signing key and how signatures are made."""
        check_user(req.user_id)
        return {"secret": self.secret_for(req.user_id), "algorithm": "HMAC-SHA256",
                "signed": "<X-Stoker-Timestamp>.<raw body>", "headers": describe_headers()}

    async def sweep(self, older_than_s: float = 10.0) -> int:
        """Queue jobs whose work-queue message was never stored (a crash between the two writes)."""
        now = self.clock()
        count = 0
        for job_id in list(self.view.queued):
            job = self.view.jobs.get(job_id)
            if job is None or job.queued_seq or job.requested_at is None or job.current is not None:
                continue
            if (now - job.requested_at).total_seconds() < older_than_s:
                continue
            history = await self.runner.deps.store.load(job_aggregate(job_id))
            fresh = d.fold(job_id, history)
            if fresh.queued_seq or fresh.terminal or not history:
                continue
            first = history[0].envelope  # queue it in the trace of the request that asked for it
            with tracing.continued("generation", "gen.requeue", traceparent=first.traceparent,
                                   tracestate=first.tracestate, kind=trace.SpanKind.INTERNAL):
                seq = await self.enqueue(job_id, fresh.request.checkpoint if fresh.request else None)
                await self.runner.decide(fresh, d.MarkQueued(seq=seq))
            count += 1
        return count
