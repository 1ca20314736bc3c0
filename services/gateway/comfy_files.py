"""``object_info`` as one tenant may see it: file lists of the shared instance cut to the caller's own files.

A warm instance serves jobs of many users one after another; ComfyUI's ``/object_info`` lists
the files in its input (and output) folders as the choices of ``LoadImage`` and friends. The
pool's answer is cached for everyone, so each caller gets a copy in which those lists keep only
the inputs of the caller's own unfinished jobs (their ``uploads``), never another tenant's.
"""

from __future__ import annotations

import re
from typing import Any

from services.generation.view import JobsView

# Inputs listing folder contents without an upload flag (the others carry ``*_upload`` / ``image_folder``).
LISTING_INPUTS: dict[str, frozenset[str]] = {
    "LoadLatent": frozenset({"latent"}),
    "LoadImageSetFromFolderNode": frozenset({"folder"}),
    "LoadImageTextSetFromFolderNode": frozenset({"folder"}),
}
_ANNOTATION = re.compile(r"\s*\[(input|output|temp)\]\s*$")


def own_files(view: JobsView, user_id: str | None) -> frozenset[str]:
    """Input names on instances that belong to ``user_id``'s unfinished jobs (none for the admin key)."""
    if user_id is None:
        return frozenset()
    names: set[str] = set()
    for job_id in view.by_user.get(user_id, []):
        job = view.jobs.get(job_id)
        if job is not None and not job.terminal and job.request is not None:
            names.update(job.request.uploads)
    return frozenset(names)


def _lists_files(class_type: str, name: str, spec: Any) -> bool:
    if name in LISTING_INPUTS.get(class_type, ()):
        return True
    options = spec[1] if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    return "image_folder" in options or any(str(k).endswith("_upload") for k in options)


def _mine(choices: Any, own: frozenset[str]) -> list[Any]:
    return [c for c in choices if isinstance(c, str) and _ANNOTATION.sub("", c) in own] \
        if isinstance(choices, list) else []


def _filtered_spec(spec: list[Any], own: frozenset[str]) -> list[Any]:
    out = list(spec)
    if isinstance(out[0], list):
        out[0] = _mine(out[0], own)
    if len(out) > 1 and isinstance(out[1], dict) and "options" in out[1]:
        out[1] = {**out[1], "options": _mine(out[1]["options"], own)}
    return out


def _filtered_node(class_type: str, info: dict[str, Any], own: frozenset[str]) -> dict[str, Any]:
    inputs = info.get("input")
    if not isinstance(inputs, dict):
        return info
    changed: dict[str, Any] = {}
    for section, specs in inputs.items():
        if not isinstance(specs, dict):
            continue
        hits = {name: _filtered_spec(spec, own) for name, spec in specs.items()
                if isinstance(spec, list) and spec and _lists_files(class_type, name, spec)}
        if hits:
            changed[section] = {**specs, **hits}
    return {**info, "input": {**inputs, **changed}} if changed else info


def for_caller(object_info: dict[str, Any], own: frozenset[str]) -> dict[str, Any]:
    """A copy of ``object_info`` whose file lists hold only ``own`` files (the cached answer is untouched)."""
    return {name: _filtered_node(name, info, own) if isinstance(info, dict) else info
            for name, info in object_info.items()}
