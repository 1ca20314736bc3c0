"""Muse and gallery commands of the API: every change an event, reads from the view."""

from __future__ import annotations

from typing import Any

from libs.events import Aggregate, ConcurrencyError, subjects
from libs.events import generation as ev
from libs.events.ids import is_subject_token, new_id

from . import api, muse
from . import domain as d
from .commands import JobCommands, check_user, cursor_int, meta_of, page_limit
from .outputs import Objects, job_of
from .present import gallery_item, muse_view

ATTEMPTS = 8


def muse_aggregate(muse_id: str) -> Aggregate:
    """A muse's aggregate."""
    return Aggregate(subjects.GENERATION, ev.MUSE, muse_id)


class LibraryCommands:
    """Muses (saved characters) and the gallery of outputs."""

    def __init__(self, jobs: JobCommands, objects: Objects) -> None:
        self.jobs, self.objects = jobs, objects
        self.store = jobs.runner.deps.store

    async def _load_muse(self, user_id: str, muse_id: str) -> muse.Muse:
        m = muse.fold_muse(muse_id, await self.store.load(muse_aggregate(muse_id))) if is_subject_token(
            muse_id) else muse.Muse(id=muse_id)
        if not m.exists or m.user_id != user_id:
            raise d.DomainError(f"no muse {muse_id}", "NOT_FOUND")
        return m

    async def _write_muse(self, req: api.Request, muse_id: str, command: Any) -> muse.Muse:
        for _ in range(ATTEMPTS):
            current = (muse.Muse(id=muse_id) if isinstance(command, muse.CreateMuse)
                       else await self._load_muse(req.user_id, muse_id))
            events = muse.decide_muse(current, command)
            if not events:
                return current
            try:
                recs = await self.store.append(muse_aggregate(muse_id), events, current.position, meta_of(req))
            except ConcurrencyError:
                continue
            await self.jobs.projector.wait_for(recs[-1].seq)
            return self.jobs.view.muses[muse_id]
        raise d.DomainError("the muse kept changing; retry", "CONFLICT")

    async def muse_create(self, req: api.MuseCreateRequest) -> api.MuseView:
        """Save a new muse."""
        check_user(req.user_id)
        created = await self._write_muse(req, new_id(), muse.CreateMuse(user_id=req.user_id, spec=req.muse.spec()))
        return muse_view(created)

    async def muse_import(self, req: api.MuseImportRequest) -> api.MuseView:
        """Create a muse from an exported document."""
        check_user(req.user_id)
        spec = muse.import_document(req.document)
        created = await self._write_muse(req, new_id(), muse.CreateMuse(user_id=req.user_id, spec=spec,
                                                                        source="import"))
        return muse_view(created)

    async def muse_update(self, req: api.MuseUpdateRequest) -> api.MuseView:
        """Replace a muse's fields."""
        return muse_view(await self._write_muse(req, req.muse_id, muse.UpdateMuse(spec=req.muse.spec())))

    async def muse_delete(self, req: api.MuseIdRequest) -> dict[str, Any]:
        """Delete a muse."""
        await self._write_muse(req, req.muse_id, muse.DeleteMuse())
        return {"deleted": True, "muse_id": req.muse_id}

    async def muse_get(self, req: api.MuseIdRequest) -> api.MuseView:
        """One muse."""
        found = self.jobs.view.muses.get(req.muse_id)
        if found is None or not found.exists or found.user_id != req.user_id:
            found = await self._load_muse(req.user_id, req.muse_id)
        return muse_view(found)

    async def muse_export(self, req: api.MuseIdRequest) -> dict[str, Any]:
        """A muse as a portable document (``muse_import`` takes it back)."""
        found = await self.muse_get(req)
        return muse.export_document(found.muse)

    async def muse_list(self, req: api.MuseListRequest) -> api.MusePage:
        """The user's muses, oldest first (keyset on creation sequence)."""
        limit = page_limit(req.limit)
        after = cursor_int(req.cursor)
        view = self.jobs.view
        items: list[api.MuseView] = []
        for muse_id in view.muses_by_user.get(req.user_id, []):
            m = view.muses[muse_id]
            if after is not None and m.seq <= after:
                continue
            if len(items) == limit:
                return api.MusePage(items=items, next_cursor=str(view.muses[items[-1].id].seq))
            items.append(muse_view(m))
        return api.MusePage(items=items, next_cursor=None)

    async def gallery_list(self, req: api.GalleryListRequest) -> api.GalleryPage:
        """The user's outputs, newest first (keyset ``<seq>.<index>``), optionally by tag."""
        limit = page_limit(req.limit)
        before: tuple[int, int] | None = None
        if req.cursor is not None:
            try:
                a, b = req.cursor.split(".")
                before = (int(a), int(b))
            except ValueError:
                raise d.DomainError("cursor is not one this API returned", "VALIDATION_FAILED") from None
        tag = d.normalize_tag(req.tag) if req.tag is not None else None
        entries = sorted(self.jobs.view.gallery.get(req.user_id, {}).values(), key=lambda e: e.key, reverse=True)
        items: list[api.GalleryItem] = []
        last: tuple[int, int] | None = None
        for entry in entries:
            if before is not None and entry.key >= before:
                continue
            if tag is not None and tag not in entry.tags:
                continue
            if len(items) == limit:
                assert last is not None
                return api.GalleryPage(items=items, next_cursor=f"{last[0]}.{last[1]}")
            items.append(gallery_item(entry))
            last = entry.key
        return api.GalleryPage(items=items, next_cursor=None)

    async def _output_job(self, user_id: str, object_name: str) -> d.Job:
        job_id = job_of(object_name)
        if job_id is None or not object_name.startswith(f"gen/{user_id}/"):
            raise d.DomainError(f"no output {object_name}", "NOT_FOUND")
        return await self.jobs.find(user_id, job_id)

    async def gallery_tag(self, req: api.GalleryTagRequest) -> api.GalleryItem:
        """Add and remove tags of one output."""
        job = await self._output_job(req.user_id, req.object_name)
        job = await self.jobs.runner.decide(await self.jobs.runner.load(job.id),
                                            d.Tag(object_name=req.object_name, add=req.add, remove=req.remove))
        await self.jobs.projector.wait_for(job.position.seq)
        entry = self.jobs.view.gallery.get(req.user_id, {}).get(req.object_name)
        if entry is None:
            raise d.DomainError(f"no output {req.object_name}", "NOT_FOUND")
        return gallery_item(entry)

    async def gallery_delete(self, req: api.GalleryDeleteRequest) -> dict[str, Any]:
        """Delete one output: from the gallery (an event) and its bytes from the object store."""
        job = await self._output_job(req.user_id, req.object_name)
        job = await self.jobs.runner.decide(await self.jobs.runner.load(job.id),
                                            d.DeleteOutput(object_name=req.object_name))
        await self.objects.delete(req.object_name)
        await self.jobs.projector.wait_for(job.position.seq)
        return {"deleted": True, "object_name": req.object_name}

