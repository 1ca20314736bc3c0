"""Muse, gallery and per-user usage request and response types."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from libs.events.generation import MuseSpec
from services.gateway.schemas.base import Checked, Id, When
from services.gateway.schemas.generation import Cursor, Lora
from services.generation import api as gen_api

__all__ = [
    "GalleryDeleted", "GalleryItem", "GalleryPage", "GallerySettings", "GalleryQuery", "Muse", "MuseBody", "MuseDeleted",
    "MuseDocument", "MusePage", "MusesQuery", "TagsBody", "UserUsageBucket", "UserUsageDay", "UserUsageQuery",
    "UserUsageReport",
]

Tag = Annotated[str, Meta(min_length=1, max_length=40)]


# --- muses ----------------------------------------------------------------------------------

class MuseBody(gen_api.MuseInput, kw_only=True, forbid_unknown_fields=True):
    """A muse (a saved character): attribute groups, prompt template and generation defaults.

    ``reference_images`` are output ids (or object names) of your own outputs.
    """


class Muse(msgspec.Struct, kw_only=True):
    """A saved muse and its version (it increases with every change)."""

    id: str
    user_id: str
    version: int
    muse: MuseSpec
    created_at: datetime | None = None
    updated_at: datetime | None = None


class MusePage(msgspec.Struct, kw_only=True):
    """Muses, oldest first; pass ``next`` as ``after`` for the next page."""

    items: list[Muse]
    next: str | None = None


class MusesQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Your muses; ``user_id`` (admins) lists someone else's."""

    limit: Annotated[int, Meta(ge=1, le=100)] = 50
    after: Cursor | None = None
    user_id: Id | None = None


class MuseDocument(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A portable muse, as ``GET /api/v1/muses/{id}/export`` gives it."""

    format: Annotated[str, Meta(max_length=40)] = "stoker.muse"
    version: Annotated[int, Meta(ge=0, le=1000)] = 1
    muse: MuseBody


class MuseDeleted(msgspec.Struct, kw_only=True):
    """The deleted muse."""

    id: str
    deleted: bool


# --- gallery --------------------------------------------------------------------------------

class GallerySettings(msgspec.Struct, kw_only=True):
    """How an output was made: the generation's template, preset, effective parameters (prompt, seed, size,
    steps…), checkpoint, muse and LoRAs; enough to make it again or a variation."""

    template: str | None = None
    preset: str | None = None
    params: dict[str, Any] = {}
    checkpoint: str | None = None
    muse_id: str | None = None
    loras: list[Lora] = []


class GalleryItem(msgspec.Struct, kw_only=True):
    """One output in your gallery."""

    id: str
    url: str
    job_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    tags: list[str] = []
    muse_id: str | None = None
    created_at: datetime | None = None
    settings: GallerySettings | None = None


class GalleryPage(msgspec.Struct, kw_only=True):
    """Outputs, newest first; pass ``next`` as ``before`` for the next page."""

    items: list[GalleryItem]
    next: str | None = None


class GalleryQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """Filters: a tag, a muse, a time range (created); ``user_id`` (admins) shows someone else's gallery."""

    tag: Tag | None = None
    muse_id: Id | None = None
    since: When | None = None
    until: When | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 50
    before: Cursor | None = None
    user_id: Id | None = None


class TagsBody(Checked, kw_only=True, forbid_unknown_fields=True):
    """Tags to add to and remove from one output (lower-cased; letters, digits, spaces, _-:.)."""

    add: Annotated[list[Tag], Meta(max_length=20)] = []
    remove: Annotated[list[Tag], Meta(max_length=20)] = []


class GalleryDeleted(msgspec.Struct, kw_only=True):
    """The deleted output."""

    id: str
    deleted: bool


# --- per-user usage ---------------------------------------------------------------------------

class UserUsageQuery(Checked, kw_only=True, forbid_unknown_fields=True):
    """An inclusive range of UTC days (default: the last 30); ``user_id`` (admins) reports someone else."""

    since: date | None = None
    until: date | None = None
    user_id: Id | None = None


class UserUsageBucket(msgspec.Struct, kw_only=True):
    """Completed generations, the instance and GPU hours they held, and what they were charged."""

    jobs: int
    instance_hours: float
    gpu_hours: float
    cost: float


class UserUsageDay(UserUsageBucket, kw_only=True):
    """One UTC day."""

    date: date


class UserUsageReport(msgspec.Struct, kw_only=True):
    """One user's generation usage per day and in total."""

    user_id: str
    since: date
    until: date
    days: list[UserUsageDay]
    total: UserUsageBucket
