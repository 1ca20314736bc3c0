"""Whose generation objects a request touches: the caller's own, or (admins) the owner the projection names.

Every generation request carries ``actor`` (who acts) and ``user_id`` (whose objects). A user
always acts on their own; an admin may act on anyone's job, output or muse, whose owner the
gateway's generation projection knows. Someone else's object is simply not found.
"""

from __future__ import annotations

from typing import Any

from services.gateway.errors import ApiError, validation_failed
from services.gateway.resources import GEN_READS
from services.gateway.routing import Call


def account(call: Call) -> str:
    """The caller's account id (the admin key has none: generations belong to accounts)."""
    user_id = call.who.user_id
    if user_id is None:
        raise validation_failed("the admin key has no account of its own: sign in, or use a user's API token")
    return user_id


def scope(call: Call, requested: str | None) -> str | None:
    """Whose objects a listing shows: the caller's own; an admin may name any account. None: the admin key
    naming none (it owns nothing, so its listings are empty)."""
    who = call.who
    if requested is not None and requested != who.user_id:
        if not who.is_admin:
            raise ApiError(403, "FORBIDDEN", "you can only see your own")
        return requested
    return who.user_id


async def job_owner(call: Call, job_id: str) -> str:
    """Whose job ``job_id`` is, as far as the caller may know: their own, or for an admin the real owner."""
    who = call.who
    if not who.is_admin:
        return account(call)
    job = await call.app[GEN_READS].find_job(job_id, None)
    if job is not None:
        return job.user_id
    if who.user_id is None:
        raise ApiError(404, "NOT_FOUND", f"no job {job_id}")
    return who.user_id


async def muse_owner(call: Call, muse_id: str) -> str:
    """Whose muse ``muse_id`` is, as far as the caller may know (see ``job_owner``)."""
    who = call.who
    if not who.is_admin:
        return account(call)
    reads = call.app[GEN_READS]
    muse = reads.jobs.muses.get(muse_id)
    if muse is None:
        await reads.settle()
        muse = reads.jobs.muses.get(muse_id)
    if muse is not None and muse.exists:
        return muse.user_id
    if who.user_id is None:
        raise ApiError(404, "NOT_FOUND", f"no muse {muse_id}")
    return who.user_id


def fields(call: Call, user_id: str) -> dict[str, Any]:
    """The fields every generation request carries."""
    return {"actor": call.who.actor, "user_id": user_id, "correlation_id": call.correlation_id}
