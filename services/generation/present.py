"""Read-side shapes: domain state turned into the API's views (pure)."""

from __future__ import annotations

from . import api
from .domain import Job
from .muse import Muse
from .view import GalleryEntry


def job_view(job: Job, waiting: api.Waiting | None = None, progress: api.Progress | None = None) -> api.JobView:
    """A job as the API shows it."""
    req = job.request
    cur = job.current
    fail = job.failure
    webhook = None
    if req is not None and req.webhook_url:
        state = "delivered" if job.webhook_delivered else "abandoned" if job.webhook_abandoned else "pending"
        webhook = api.WebhookStatus(url=req.webhook_url, state=state, attempts=job.webhook_attempts,
                                    last_error=job.webhook_last_error, next_attempt_at=job.webhook_next_at)
    return api.JobView(
        id=job.id, user_id=job.user_id, status=job.status, template=req.template if req else None,
        preset=req.preset if req else None, params=dict(req.params) if req else {},
        checkpoint=req.checkpoint if req else None, muse_id=req.muse_id if req else None,
        waiting=waiting, progress=progress if job.status == "running" else None,
        outputs=tuple(o for o in job.outputs if o.object_name not in job.deleted),
        estimated_cost=req.estimated_cost if req else 0.0, expected_seconds=req.expected_seconds if req else 0.0,
        actual_cost=job.cost if job.terminal else None, seconds=job.seconds if job.status == "completed" else None,
        error=api.JobError(reason=fail.reason, message=fail.message, node_errors=dict(fail.node_errors),
                           node_id=fail.node_id, node_type=fail.node_type) if fail else None,
        warnings=dict(job.warnings),
        attempts=job.attempts, instance_id=cur.instance_id if cur else None, prompt_id=cur.prompt_id if cur else None,
        cancel_requested=job.cancel_requested, webhook=webhook, created_at=job.requested_at,
        started_at=job.started_at, finished_at=job.finished_at,
        timeline=tuple(api.Milestone(kind=m.kind, at=m.at, detail=m.detail) for m in job.timeline))


def muse_view(muse: Muse) -> api.MuseView:
    """A muse as the API shows it."""
    assert muse.spec is not None
    return api.MuseView(id=muse.id, user_id=muse.user_id, muse=muse.spec, version=muse.position.version,
                        created_at=muse.created_at, updated_at=muse.updated_at)


def gallery_item(entry: GalleryEntry) -> api.GalleryItem:
    """A gallery entry as the API shows it."""
    o = entry.output
    return api.GalleryItem(object_name=o.object_name, job_id=entry.job_id, filename=o.filename,
                           content_type=o.content_type, size=o.size, sha256=o.sha256, tags=entry.tags,
                           created_at=entry.created_at)
