"""Reading a provider's status message: which ones mean the instance will never start (pure)."""

from __future__ import annotations

import re

from libs.events.pool import FailureKind

_FATAL: list[tuple[FailureKind, re.Pattern[str]]] = [
    ("extraction", re.compile(r"no space left on device|failed to register layer|error extracting|"
                              r"failed to extract|unexpected EOF.*layer|disk quota exceeded", re.I)),
    ("pull", re.compile(r"manifest unknown|pull access denied|repository does not exist|no such image|"
                        r"unauthorized: |toomanyrequests|error pulling image|failed to pull", re.I)),
    ("start", re.compile(r"oci runtime|permission denied|exec format error|cannot start container|"
                         r"failed to create shim|nvidia-container-cli: .*error", re.I)),
]
_DEAD_STATUSES = frozenset({"exited", "offline"})


def fatal_failure(actual_status: str | None, status_msg: str | None) -> FailureKind | None:
    """The kind of fatal start failure a status shows, or None if it may still come up."""
    message = status_msg or ""
    for kind, pattern in _FATAL:
        if pattern.search(message):
            return kind
    if actual_status in _DEAD_STATUSES:
        return "start"
    return None


def label_for(pool_id: str, instance_id: str) -> str:
    """The provider label that ties a rental to its pool and instance aggregate."""
    return f"stoker:{pool_id}:{instance_id}"


def parse_label(label: str | None) -> tuple[str, str] | None:
    """(pool id, instance id) from a Stoker label, or None for anything else."""
    if not label or not label.startswith("stoker:"):
        return None
    parts = label.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
