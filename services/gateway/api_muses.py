"""Muse endpoints: saved characters (create, read, list, replace, delete, export and import), through the
generation service. Reference images are your own outputs, given by output id or object name."""

from __future__ import annotations

from typing import Any

import msgspec

from services.gateway.api_generations import object_name
from services.gateway.gen_access import account, fields, muse_owner, scope
from services.gateway.resources import GEN_CLIENT
from services.gateway.routing import Call, Operation
from services.gateway.schemas import library as lib
from services.generation import api

MUSE_ERRORS = (404, 409, 503)


def _muse(view: api.MuseView) -> lib.Muse:
    return lib.Muse(id=view.id, user_id=view.user_id, version=view.version, muse=view.muse, created_at=view.created_at,
                  updated_at=view.updated_at)


async def _input(call: Call, user_id: str, body: lib.MuseBody) -> api.MuseInput:
    """The muse as the generation service takes it, reference output ids made object names."""
    refs = tuple([await object_name(call, user_id, ref) for ref in body.reference_images])
    data = msgspec.to_builtins(body)
    data["reference_images"] = refs
    return msgspec.convert(data, api.MuseInput)


async def create_muse(call: Call) -> Any:
    """Save a new muse."""
    user_id = account(call)
    request = api.MuseCreateRequest(muse=await _input(call, user_id, call.body), **fields(call, user_id))
    return _muse(await call.app[GEN_CLIENT].call(api.MUSE_CREATE, request, api.MuseView))


async def list_muses(call: Call) -> Any:
    """Your muses, oldest first."""
    q: lib.MusesQuery = call.query
    user_id = scope(call, q.user_id)
    if user_id is None:
        return lib.MusePage(items=[])
    page = await call.app[GEN_CLIENT].call(api.MUSE_LIST, api.MuseListRequest(limit=q.limit, cursor=q.after,
                                                                              **fields(call, user_id)), api.MusePage)
    return lib.MusePage(items=[_muse(m) for m in page.items], next=page.next_cursor)


async def get_muse(call: Call) -> Any:
    """One muse."""
    muse_id = call.path("id")
    request = api.MuseIdRequest(muse_id=muse_id, **fields(call, await muse_owner(call, muse_id)))
    return _muse(await call.app[GEN_CLIENT].call(api.MUSE_GET, request, api.MuseView))


async def update_muse(call: Call) -> Any:
    """Replace a muse's fields (its version increases)."""
    muse_id = call.path("id")
    user_id = await muse_owner(call, muse_id)
    request = api.MuseUpdateRequest(muse_id=muse_id, muse=await _input(call, user_id, call.body),
                                    **fields(call, user_id))
    return _muse(await call.app[GEN_CLIENT].call(api.MUSE_UPDATE, request, api.MuseView))


async def delete_muse(call: Call) -> Any:
    """Delete a muse (generations made with it keep their outputs)."""
    muse_id = call.path("id")
    request = api.MuseIdRequest(muse_id=muse_id, **fields(call, await muse_owner(call, muse_id)))
    await call.app[GEN_CLIENT].send(api.MUSE_DELETE, request)
    return lib.MuseDeleted(id=muse_id, deleted=True)


async def export_muse(call: Call) -> Any:
    """A muse as a portable document (``POST /api/v1/muses/import`` takes it back)."""
    muse_id = call.path("id")
    request = api.MuseIdRequest(muse_id=muse_id, **fields(call, await muse_owner(call, muse_id)))
    return await call.app[GEN_CLIENT].send(api.MUSE_EXPORT, request)  # as the service writes it


async def import_muse(call: Call) -> Any:
    """Create a muse from an exported document."""
    user_id = account(call)
    doc: lib.MuseDocument = call.body
    muse = msgspec.to_builtins(await _input(call, user_id, doc.muse))
    request = api.MuseImportRequest(document={"format": doc.format, "version": doc.version, "muse": muse},
                                    **fields(call, user_id))
    return _muse(await call.app[GEN_CLIENT].call(api.MUSE_IMPORT, request, api.MuseView))


OPERATIONS = [
    Operation("POST", "/api/v1/muses", create_muse, "create_muse", "Save a muse", "muses", body=lib.MuseBody,
              response=lib.Muse, status=201, errors=MUSE_ERRORS),
    Operation("GET", "/api/v1/muses", list_muses, "list_muses", "Your muses", "muses", query=lib.MusesQuery,
              response=lib.MusePage, errors=MUSE_ERRORS),
    Operation("POST", "/api/v1/muses/import", import_muse, "import_muse", "Create a muse from an exported document",
              "muses", body=lib.MuseDocument, response=lib.Muse, status=201, errors=MUSE_ERRORS),
    Operation("GET", "/api/v1/muses/{id}/export", export_muse, "export_muse", "Export a muse as a document",
              "muses", response=lib.MuseDocument, errors=MUSE_ERRORS),
    Operation("GET", "/api/v1/muses/{id}", get_muse, "get_muse", "One muse", "muses", response=lib.Muse,
              errors=MUSE_ERRORS),
    Operation("PUT", "/api/v1/muses/{id}", update_muse, "update_muse", "Replace a muse", "muses", body=lib.MuseBody,
              response=lib.Muse, errors=MUSE_ERRORS),
    Operation("DELETE", "/api/v1/muses/{id}", delete_muse, "delete_muse", "Delete a muse", "muses",
              response=lib.MuseDeleted, errors=MUSE_ERRORS),
]
