"""Gallery endpoints: your outputs filtered by tag, muse and time (from the gateway's generation projection);
tag edits and deletes go to the generation service."""

from __future__ import annotations

from typing import Any

from services.gateway import gen_views
from services.gateway.errors import validation_failed
from services.gateway.gen_access import fields, job_owner, scope
from services.gateway.gen_outputs import not_found
from services.gateway.resources import GEN_CLIENT, GEN_READS
from services.gateway.routing import Call, Operation
from services.gateway.schemas import library as lib
from services.generation import api


def _tag(value: str) -> str:
    """The form tags are stored in (lower case, single spaces)."""
    return " ".join(value.strip().lower().split())


async def list_gallery(call: Call) -> Any:
    """Your outputs, newest first; filters combine (all must match)."""
    q: lib.GalleryQuery = call.query
    if q.since is not None and q.until is not None and q.since > q.until:
        raise validation_failed("since is after until")
    user_id = scope(call, q.user_id)
    if user_id is None:
        return lib.GalleryPage(items=[])
    reads = call.app[GEN_READS]
    await reads.settle()
    view = reads.jobs
    tag = _tag(q.tag) if q.tag is not None else None
    before = gen_views.cursor_key(q.before) if q.before is not None else None
    entries = []
    last: tuple[int, int] | None = None
    more = None
    for entry in sorted(view.gallery.get(user_id, {}).values(), key=lambda e: e.key, reverse=True):
        if before is not None and entry.key >= before:
            continue
        job = view.jobs.get(entry.job_id)
        muse_id = job.request.muse_id if job is not None and job.request is not None else None
        if (tag is not None and tag not in entry.tags) or (q.muse_id is not None and muse_id != q.muse_id):
            continue
        if (q.since is not None and entry.created_at < q.since) or (q.until is not None and entry.created_at > q.until):
            continue
        if len(entries) == q.limit:
            assert last is not None
            more = f"{last[0]}.{last[1]}"
            break
        entries.append(entry)
        last = entry.key
    found = await reads.loras([e.job_id for e in entries])
    items = [gen_views.gallery_item(e, view.jobs.get(e.job_id), found.get(e.job_id)) for e in entries]
    return lib.GalleryPage(items=items, next=more)


async def _output(call: Call) -> tuple[str, str]:
    """(owner, object name) of the output in the path; someone else's is not found."""
    parsed = gen_views.parse_output_id(call.path("id"))
    if parsed is None:
        raise not_found()
    user_id = await job_owner(call, parsed[0])
    job = await call.app[GEN_READS].find_job(parsed[0], user_id)
    out = gen_views.find_output(job, parsed[1]) if job is not None else None
    if out is None:
        raise not_found()
    return user_id, out.object_name


async def tag_output(call: Call) -> Any:
    """Add and remove tags of one output."""
    body: lib.TagsBody = call.body
    user_id, name = await _output(call)
    request = api.GalleryTagRequest(object_name=name, add=tuple(body.add), remove=tuple(body.remove),
                                    **fields(call, user_id))
    await call.app[GEN_CLIENT].send(api.GALLERY_TAG, request)
    reads = call.app[GEN_READS]
    await reads.settle()
    entry = reads.jobs.gallery.get(user_id, {}).get(name)
    if entry is None:
        raise not_found()
    found = await reads.loras([entry.job_id])
    return gen_views.gallery_item(entry, reads.jobs.jobs.get(entry.job_id), found.get(entry.job_id))


async def delete_output(call: Call) -> Any:
    """Delete one output: from the gallery, and its bytes from the object store."""
    user_id, name = await _output(call)
    await call.app[GEN_CLIENT].send(api.GALLERY_DELETE, api.GalleryDeleteRequest(object_name=name,
                                                                                 **fields(call, user_id)))
    return lib.GalleryDeleted(id=call.path("id"), deleted=True)


OPERATIONS = [
    Operation("GET", "/api/v1/gallery", list_gallery, "list_gallery", "Your outputs, by tag, muse and time",
              "gallery", query=lib.GalleryQuery, response=lib.GalleryPage),
    Operation("POST", "/api/v1/gallery/{id}/tags", tag_output, "tag_output", "Add and remove an output's tags",
              "gallery", body=lib.TagsBody, response=lib.GalleryItem, errors=(404, 409, 503)),
    Operation("DELETE", "/api/v1/gallery/{id}", delete_output, "delete_output", "Delete an output", "gallery",
              response=lib.GalleryDeleted, errors=(404, 409, 503)),
]
