"""The muse aggregate (a saved character): state, decisions, prompt rendering, import/export.

Pure: no I/O. A muse's prompt template names attribute groups in braces (``{face}``); a group
renders as its values joined by ", " (write values as phrases: ``"green eyes"``).
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from libs.events import NEW, Position, Recorded
from libs.events import generation as ev
from libs.events.base import Event

from .domain import DomainError

GROUPS = ("basics", "body", "face", "hair", "style", "personality")
PLACEHOLDERS = frozenset({"name", "prompt", *GROUPS})
EXPORT_FORMAT = "stoker.muse"
EXPORT_VERSION = 1
MAX_ATTRIBUTES = 30
MAX_REFERENCES = 8
MAX_VARIATIONS = 20


class Muse(msgspec.Struct, frozen=True, kw_only=True):
    """What a muse aggregate knows."""

    id: str
    user_id: str = ""
    spec: ev.MuseSpec | None = None
    position: Position = NEW
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int = 0  # stream sequence of its creation (list order)

    @property
    def exists(self) -> bool:
        """Created and not deleted."""
        return self.spec is not None and not self.deleted


class CreateMuse(msgspec.Struct, frozen=True, kw_only=True):
    """Save a new muse."""

    user_id: str
    spec: ev.MuseSpec
    source: str = "api"


class UpdateMuse(msgspec.Struct, frozen=True, kw_only=True):
    """Replace a muse's spec."""

    spec: ev.MuseSpec


class DeleteMuse(msgspec.Struct, frozen=True, kw_only=True):
    """Delete a muse."""


def validate_spec(spec: ev.MuseSpec) -> None:
    """Refuse a spec a person would not mean (DomainError VALIDATION_FAILED, says what to fix)."""
    def bad(msg: str) -> DomainError:
        return DomainError(msg, "VALIDATION_FAILED")

    if not 1 <= len(spec.name.strip()) <= 80:
        raise bad("a muse needs a name of 1-80 characters")
    for group in GROUPS:
        _check_attrs(group, getattr(spec, group))
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(spec.prompt_template) if f is not None}
    except ValueError as exc:
        raise bad(f"prompt_template: {exc}") from None
    unknown = sorted(f for f in fields if f not in PLACEHOLDERS)
    if unknown:
        raise bad(f"prompt_template: unknown placeholder(s) {', '.join(unknown)}; "
                  f"use {', '.join(sorted(PLACEHOLDERS))}")
    if "prompt" not in fields:
        raise bad("prompt_template must contain {prompt}, where the job's prompt goes")
    if len(spec.prompt_template) > 2000 or len(spec.negative_prompt) > 2000:
        raise bad("prompt_template and negative_prompt are limited to 2000 characters")
    if len(spec.reference_images) > MAX_REFERENCES:
        raise bad(f"at most {MAX_REFERENCES} reference images")
    if len(spec.variations) > MAX_VARIATIONS:
        raise bad(f"at most {MAX_VARIATIONS} variations")
    names = [v.name for v in spec.variations]
    if len(set(names)) != len(names) or any(not 1 <= len(n) <= 40 for n in names):
        raise bad("variation names must be unique, 1-40 characters")
    for var in spec.variations:
        for group, attrs in var.attributes.items():
            if group not in GROUPS:
                raise bad(f"variation {var.name}: unknown attribute group {group!r}; use {', '.join(GROUPS)}")
            _check_attrs(f"variation {var.name}: {group}", attrs)


def _check_attrs(where: str, attrs: dict[str, str]) -> None:
    if len(attrs) > MAX_ATTRIBUTES:
        raise DomainError(f"{where}: at most {MAX_ATTRIBUTES} attributes", "VALIDATION_FAILED")
    for key, value in attrs.items():
        if not 1 <= len(key) <= 40 or len(value) > 300:
            raise DomainError(f"{where}: attribute names are 1-40 characters and values at most 300",
                              "VALIDATION_FAILED")


def decide_muse(muse: Muse, command: CreateMuse | UpdateMuse | DeleteMuse) -> list[Event]:
    """The events a muse command causes."""
    match command:
        case CreateMuse():
            if muse.spec is not None:
                raise DomainError(f"muse {muse.id} already exists", "CONFLICT")
            validate_spec(command.spec)
            return [ev.MuseCreated(user_id=command.user_id, muse=command.spec, source=command.source)]
        case UpdateMuse():
            if not muse.exists:
                raise DomainError(f"no muse {muse.id}", "NOT_FOUND")
            validate_spec(command.spec)
            return [] if command.spec == muse.spec else [ev.MuseUpdated(muse=command.spec)]
        case DeleteMuse():
            if not muse.exists:
                raise DomainError(f"no muse {muse.id}", "NOT_FOUND")
            return [ev.MuseDeleted()]
    raise TypeError(f"unknown command {command!r}")


def evolve_muse(muse: Muse, event: Any, at: datetime, seq: int = 0) -> Muse:
    """Apply one muse event."""
    r = msgspec.structs.replace
    match event:
        case ev.MuseCreated():
            return r(muse, user_id=event.user_id, spec=event.muse, created_at=at, updated_at=at, seq=seq)
        case ev.MuseUpdated():
            return r(muse, spec=event.muse, updated_at=at)
        case ev.MuseDeleted():
            return r(muse, deleted=True, updated_at=at)
    return muse


def fold_muse(muse_id: str, records: Iterable[Recorded]) -> Muse:
    """A muse from its recorded history."""
    muse = Muse(id=muse_id)
    for rec in records:
        env = rec.envelope
        muse = evolve_muse(muse, env.event, env.occurred_at, rec.seq)
        muse = msgspec.structs.replace(muse, position=Position(env.aggregate_version, rec.seq))
    return muse


def render(spec: ev.MuseSpec, prompt: str, variation: str | None = None) -> tuple[str, str]:
    """(positive, negative) prompt text for a job using this muse (and one of its variations)."""
    groups = {g: dict(getattr(spec, g)) for g in GROUPS}
    suffix = ""
    if variation:
        var = next((v for v in spec.variations if v.name == variation), None)
        if var is None:
            raise DomainError(f"muse {spec.name!r} has no variation {variation!r}", "VALIDATION_FAILED")
        for group, attrs in var.attributes.items():
            groups[group].update(attrs)
        suffix = var.prompt_suffix
    values = {g: ", ".join(v for v in attrs.values() if v.strip()) for g, attrs in groups.items()}
    text = spec.prompt_template.format(name=spec.name, prompt=prompt, **values)
    parts = [p.strip() for p in text.split(",")]
    positive = ", ".join(p for p in parts if p)
    if suffix.strip():
        positive = f"{positive}, {suffix.strip()}"
    return positive, spec.negative_prompt


def export_document(spec: ev.MuseSpec) -> dict[str, Any]:
    """The muse as a portable JSON document."""
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "muse": msgspec.to_builtins(spec)}


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    version: int
    muse: dict[str, Any]


class _StrictSpec(ev.MuseSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """MuseSpec that refuses unknown fields (for documents people hand us)."""


def parse_spec(data: Any) -> ev.MuseSpec:
    """A MuseSpec from JSON-like data, refusing unknown fields with a readable message."""
    try:
        strict = msgspec.convert(data, _StrictSpec)
    except msgspec.ValidationError as exc:
        raise DomainError(f"invalid muse: {exc}", "VALIDATION_FAILED") from None
    return msgspec.convert(msgspec.to_builtins(strict), ev.MuseSpec)


def import_document(doc: Any) -> ev.MuseSpec:
    """Read an exported muse document (validated)."""
    try:
        parsed = msgspec.convert(doc, _Document)
    except msgspec.ValidationError as exc:
        raise DomainError(f"not a muse document: {exc}", "VALIDATION_FAILED") from None
    if parsed.format != EXPORT_FORMAT or parsed.version > EXPORT_VERSION:
        raise DomainError(f"unsupported document {parsed.format!r} version {parsed.version}; "
                          f"expected {EXPORT_FORMAT!r} version {EXPORT_VERSION}", "VALIDATION_FAILED")
    spec = parse_spec(parsed.muse)
    validate_spec(spec)
    return spec
