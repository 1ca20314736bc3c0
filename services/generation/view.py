"""The generation read model: every job, the queue, muses and each user's gallery.

Each job and muse is folded by the same pure ``evolve`` as its aggregate. The index holding
them is updated in place by ``project`` (copying a dict of every job per event would make
a replay quadratic); nothing else writes to it. Job records here drop the (large) workflow.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from libs.events import Position, Recorded
from libs.events import generation as ev

from .domain import Job, evolve
from .muse import Muse, evolve_muse


class GalleryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One output in a user's gallery; ``key`` orders entries (stream seq, output index)."""

    output: ev.Output
    job_id: str
    key: tuple[int, int]
    created_at: datetime
    tags: tuple[str, ...] = ()


class JobsView:
    """Everything the generation service answers reads from, as of stream sequence ``seq``."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.job_seq: dict[str, int] = {}  # job id -> stream seq of its request (list order)
        self.by_user: dict[str, list[str]] = {}
        self.queued: dict[str, int] = {}  # queued job id -> request seq, oldest first
        self.running: set[str] = set()
        self.muses: dict[str, Muse] = {}
        self.muses_by_user: dict[str, list[str]] = {}
        self.gallery: dict[str, dict[str, GalleryEntry]] = {}
        self.seq = 0

    def job_of(self, user_id: str, job_id: str) -> Job | None:
        """The user's job, or None (another user's job is None too)."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.user_id == user_id else None

    def queue_ahead(self, job_id: str) -> list[Job]:
        """Queued jobs requested before this one, oldest first."""
        mine = self.queued.get(job_id)
        if mine is None:
            return []
        return [self.jobs[j] for j, s in self.queued.items() if s < mine]


def _light(event: ev.GenerationRequested) -> ev.GenerationRequested:
    return msgspec.structs.replace(event, prompt={}, workflow=None)


def project(view: JobsView, rec: Recorded) -> JobsView:
    """Fold one recorded generation event into the view."""
    env = rec.envelope
    event = env.event
    view.seq = rec.seq
    if env.aggregate_type == ev.MUSE:
        _project_muse(view, rec)
        return view
    if env.aggregate_type != ev.JOB:
        return view
    job_id = env.aggregate_id
    before = view.jobs.get(job_id) or Job(id=job_id)
    if isinstance(event, ev.GenerationRequested):
        if before.status != "new":
            return view
        event = _light(event)
        view.job_seq[job_id] = rec.seq
        view.by_user.setdefault(event.user_id, []).append(job_id)
    job = evolve(before, event, env.occurred_at)
    job = msgspec.structs.replace(job, position=Position(env.aggregate_version, rec.seq))
    view.jobs[job_id] = job
    if job.status == "queued":
        view.queued.setdefault(job_id, view.job_seq.get(job_id, rec.seq))
    else:
        view.queued.pop(job_id, None)
    if job.status == "running":
        view.running.add(job_id)
    else:
        view.running.discard(job_id)
    _project_gallery(view, job, event, rec.seq, env.occurred_at)
    return view


def _project_gallery(view: JobsView, job: Job, event: object, seq: int, at: datetime) -> None:
    items = view.gallery.setdefault(job.user_id, {})
    match event:
        case ev.GenerationCompleted():
            for n, out in enumerate(event.outputs):
                items[out.object_name] = GalleryEntry(output=out, job_id=job.id, key=(seq, n), created_at=at)
        case ev.OutputTagged():
            entry = items.get(event.object_name)
            if entry is not None:
                items[event.object_name] = msgspec.structs.replace(entry, tags=event.tags)
        case ev.OutputDeleted():
            items.pop(event.object_name, None)


def _project_muse(view: JobsView, rec: Recorded) -> None:
    env = rec.envelope
    muse_id = env.aggregate_id
    before = view.muses.get(muse_id) or Muse(id=muse_id)
    muse = evolve_muse(before, env.event, env.occurred_at, rec.seq)
    view.muses[muse_id] = msgspec.structs.replace(muse, position=Position(env.aggregate_version, rec.seq))
    if isinstance(env.event, ev.MuseCreated):
        view.muses_by_user.setdefault(muse.user_id, []).append(muse_id)
    elif isinstance(env.event, ev.MuseDeleted):
        ids = view.muses_by_user.get(muse.user_id, [])
        if muse_id in ids:
            ids.remove(muse_id)
