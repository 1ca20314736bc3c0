"""The generation service's views turned into the HTTP API's shapes (pure).

Outputs are addressed by an *output id*, ``<job id>.<nn>`` (``nn``: the output's index, the
``NN-`` prefix of its object name ``gen/<user>/<job>/<nn>-<file>``), because object names hold
slashes and path parameters may not.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from libs.events import generation as ev
from services.gateway.schemas import generation as g
from services.gateway.schemas import library as lib
from services.generation import api
from services.generation.domain import Job
from services.generation.present import job_view
from services.generation.workflow import loras_of
from services.generation.view import GalleryEntry

OUTPUT_ID = re.compile(r"^(?P<job>[A-Za-z0-9_\-:]{1,100})\.(?P<index>[0-9]{1,4})$")
OUTPUTS_PATH = "/api/v1/outputs/"


def output_index(object_name: str) -> int | None:
    """The index of an output from its object name (``.../<nn>-<file>``), None for other names."""
    number, sep, _ = object_name.rsplit("/", 1)[-1].partition("-")
    return int(number) if sep and number.isdigit() else None


def output_id(job_id: str, output: ev.Output) -> str:
    """The output's id in the HTTP API."""
    index = output_index(output.object_name)
    return f"{job_id}.{index if index is not None else 0:02d}"


def parse_output_id(value: str) -> tuple[str, int] | None:
    """(job id, index) of an output id, None when ``value`` is not one."""
    match = OUTPUT_ID.match(value)
    return (match["job"], int(match["index"])) if match else None


def find_output(job: Job, index: int) -> ev.Output | None:
    """The job's output with that index, unless deleted from the gallery."""
    for out in job.outputs:
        if output_index(out.object_name) == index and out.object_name not in job.deleted:
            return out
    return None


def output_ref(job_id: str, output: ev.Output) -> g.OutputRef:
    """An output as a generation lists it."""
    oid = output_id(job_id, output)
    return g.OutputRef(id=oid, url=OUTPUTS_PATH + oid, filename=output.filename, content_type=output.content_type,
                       size=output.size, sha256=output.sha256, node_id=output.node_id)


def generation_of(view: api.JobView) -> g.Generation:
    """The generation service's job view in the HTTP API's shape."""
    progress = view.progress
    return g.Generation(
        id=view.id, user_id=view.user_id, status=view.status,  # type: ignore[arg-type]
        template=view.template, preset=view.preset, params=view.params, checkpoint=view.checkpoint,
        muse_id=view.muse_id,
        waiting=msgspec.convert(msgspec.to_builtins(view.waiting), g.GenerationWaiting) if view.waiting else None,
        progress=g.GenerationProgress(kind=progress.kind, seq=progress.seq, attempt=progress.attempt,
                                      node=progress.node, node_type=progress.node_type, step=progress.step,
                                      max=progress.max) if progress else None,
        outputs=[output_ref(view.id, o) for o in view.outputs], estimated_cost=view.estimated_cost,
        expected_seconds=view.expected_seconds, cost=view.actual_cost, seconds=view.seconds,
        error=msgspec.convert(msgspec.to_builtins(view.error), g.GenerationError) if view.error else None,
        warnings=view.warnings, attempts=view.attempts, cancel_requested=view.cancel_requested,
        webhook=msgspec.convert(msgspec.to_builtins(view.webhook), g.WebhookState) if view.webhook else None,
        created_at=view.created_at, started_at=view.started_at, finished_at=view.finished_at,
        timeline=[g.GenerationMilestone(kind=m.kind, at=m.at, detail=m.detail) for m in view.timeline])


def generation_of_job(job: Job) -> g.Generation:
    """A job of a projection (no waiting reason, no progress) in the HTTP API's shape."""
    return generation_of(job_view(job))


def loras(request: ev.GenerationRequested | None) -> list[g.Lora]:
    """The LoRAs a generation's workflow (as bound from its template, or the user's own) applies."""
    if request is None:
        return []
    workflow = request.prompt or request.workflow or {}
    return [msgspec.convert(found, g.Lora) for found in loras_of(workflow)]


def settings_of(job: Job | None, found_loras: list[g.Lora] | None = None) -> lib.GallerySettings | None:
    """How the job's outputs were made (None for a job the projection does not know)."""
    req = job.request if job is not None else None
    if req is None:
        return None
    return lib.GallerySettings(template=req.template, preset=req.preset, params=dict(req.params),
                               checkpoint=req.checkpoint, muse_id=req.muse_id, loras=found_loras or [])


def gallery_item(entry: GalleryEntry, job: Job | None, found_loras: list[g.Lora] | None = None) -> lib.GalleryItem:
    """One gallery entry in the HTTP API's shape, with how it was made."""
    o = entry.output
    oid = output_id(entry.job_id, o)
    muse_id = job.request.muse_id if job is not None and job.request is not None else None
    return lib.GalleryItem(id=oid, url=OUTPUTS_PATH + oid, job_id=entry.job_id, filename=o.filename,
                           content_type=o.content_type, size=o.size, sha256=o.sha256, tags=list(entry.tags),
                           muse_id=muse_id, created_at=entry.created_at, settings=settings_of(job, found_loras))


def cursor_key(cursor: str) -> tuple[int, int]:
    """A gallery cursor (``<seq>.<index>``, or ``<seq>``) as a sort key."""
    seq, _, index = cursor.partition(".")
    return int(seq), int(index or 0)


def template_params(body: Any) -> dict[str, Any]:
    """The template parameters a generation body sets (top-level fields, None meaning unset)."""
    return {name: value for name in g.TEMPLATE_PARAMS if (value := getattr(body, name)) is not None}
