"""The muse aggregate (a saved character): state, decisions, prompt rendering, import/export.

Pure: no I/O. A muse's prompt template names attribute groups in braces (``{face}``); a group
renders as its values joined by ", " (write values as phrases: ``"green eyes"``).
"""

from __future__ import annotations

import re
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
MAX_RENDERED = 4000  # a job's prompt limit; a muse's text (with an empty prompt) must fit in it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in names, keys, references
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # free text may break lines


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
    _check_text(spec)
    for group in GROUPS:
        _check_attrs(group, getattr(spec, group))
    pieces = _parse(spec.prompt_template)
    fields = {f for _, f in pieces if f is not None}
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
        if len(var.prompt_suffix) > 300:
            raise bad(f"variation {var.name}: prompt_suffix is limited to 300 characters")
        for group, attrs in var.attributes.items():
            if group not in GROUPS:
                raise bad(f"variation {var.name}: unknown attribute group {group!r}; use {', '.join(GROUPS)}")
            _check_attrs(f"variation {var.name}: {group}", attrs)
    for variation in (None, *(v.name for v in spec.variations)):
        length = rendered_length(spec, "", variation)
        if length > MAX_RENDERED:
            which = f" with variation {variation}" if variation else ""
            raise bad(f"prompt_template{which} makes a prompt of {length} characters before the job's own text; "
                      f"a prompt is limited to {MAX_RENDERED}")


def _parse(template: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder) pieces; only plain ``{name}`` placeholders (no format spec, no conversion)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DomainError(f"prompt_template: {exc}", "VALIDATION_FAILED") from None
    for _, field, spec, conversion in parsed:
        if field is not None and (spec or conversion or field == ""):
            raise DomainError("prompt_template: use plain placeholders like {prompt} or {face}; format specs "
                              "(:...), conversions (!r) and empty braces are not allowed", "VALIDATION_FAILED")
    # "{prompt:}" parses with an empty spec; the raw text says whether a colon was there.
    if re.search(r"\{[^{}]*[:!][^{}]*\}", template.replace("{{", "").replace("}}", "")):
        raise DomainError("prompt_template: use plain placeholders like {prompt} or {face}; format specs "
                          "(:...), conversions (!r) and empty braces are not allowed", "VALIDATION_FAILED")
    return [(literal, field) for literal, field, _, _ in parsed]


def _check_text(spec: ev.MuseSpec) -> None:
    """No control characters (NUL, escapes) anywhere; line breaks only in free text."""
    names = [spec.name, spec.checkpoint or "", *spec.reference_images, *(v.name for v in spec.variations)]
    names += [k for g in GROUPS for k in getattr(spec, g)]
    names += [k for v in spec.variations for attrs in v.attributes.values() for k in attrs]
    texts = [spec.prompt_template, spec.negative_prompt, *(v.prompt_suffix for v in spec.variations)]
    texts += [x for g in GROUPS for x in getattr(spec, g).values()]
    texts += [x for v in spec.variations for attrs in v.attributes.values() for x in attrs.values()]
    if any(_CONTROL.search(n) for n in names) or any(_CONTROL_IN_TEXT.search(t) for t in texts):
        raise DomainError("a muse's fields must not contain control characters", "VALIDATION_FAILED")
    if spec.checkpoint is not None and not 1 <= len(spec.checkpoint) <= 255:
        raise DomainError("checkpoint is a file name of 1-255 characters", "VALIDATION_FAILED")


def owned(object_name: str, user_id: str) -> bool:
    """True for an object name under the user's own prefix (no way out of it)."""
    parts = object_name.split("/")
    return (len(parts) >= 3 and parts[0] == "gen" and parts[1] == user_id
            and all(p not in ("", ".", "..") for p in parts[2:]))


def _check_references(spec: ev.MuseSpec, user_id: str) -> None:
    foreign = [r for r in spec.reference_images if not owned(r, user_id)]
    if foreign:
        raise DomainError(f"reference_images must be your own outputs; not yours: {', '.join(foreign[:3])}",
                          "VALIDATION_FAILED")


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
            spec = command.spec
            if command.source == "import":  # another person's references cannot be read here: drop them
                spec = msgspec.structs.replace(spec, reference_images=tuple(
                    r for r in spec.reference_images if owned(r, command.user_id)))
            validate_spec(spec)
            _check_references(spec, command.user_id)
            return [ev.MuseCreated(user_id=command.user_id, muse=spec, source=command.source)]
        case UpdateMuse():
            if not muse.exists:
                raise DomainError(f"no muse {muse.id}", "NOT_FOUND")
            validate_spec(command.spec)
            _check_references(command.spec, muse.user_id)
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


def _values(spec: ev.MuseSpec, prompt: str, variation: str | None) -> tuple[dict[str, str], str]:
    """Placeholder values and the variation's suffix."""
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
    return {"name": spec.name, "prompt": prompt, **values}, suffix


def rendered_length(spec: ev.MuseSpec, prompt: str, variation: str | None = None) -> int:
    """How long the rendered text would be, counted without building it."""
    values, suffix = _values(spec, prompt, variation)
    pieces = _parse(spec.prompt_template)
    return sum(len(lit) + (len(values.get(f, "")) if f is not None else 0) for lit, f in pieces) + len(suffix) + 2


def render(spec: ev.MuseSpec, prompt: str, variation: str | None = None,
           limit: int = MAX_RENDERED) -> tuple[str, str]:
    """(positive, negative) prompt text for a job using this muse (and one of its variations), at most ``limit``."""
    length = rendered_length(spec, prompt, variation)
    if length > limit:
        raise DomainError(f"prompt: with muse {spec.name!r} the prompt would be {length} characters; "
                          f"the limit is {limit}", "VALIDATION_FAILED")
    values, suffix = _values(spec, prompt, variation)
    text = "".join(lit + (values[f] if f is not None else "") for lit, f in _parse(spec.prompt_template))
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
