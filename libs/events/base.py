"""The base class every domain event derives from."""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """A fact that happened: frozen, keyword-only, tagged by its class name.

    ``SCHEMA`` is the event's schema version. Evolve an event by adding fields with
    defaults (bump ``SCHEMA``); never change a field's type.
    """

    SCHEMA: ClassVar[int] = 1
