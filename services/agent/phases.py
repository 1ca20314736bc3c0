"""The agent's phase state machine: booting → downloading → starting_comfyui → ready, or failed (pure).

``evolve(state, event)`` is the only way the state changes; the shell feeds it what happened
(a plan, download progress, ComfyUI starting, answering or exiting) and serves the result as
``GET /agent/status``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Phase = Literal["booting", "downloading", "starting_comfyui", "ready", "failed"]
FileState = Literal["pending", "downloading", "done", "failed"]
MAX_RESTARTS = 5  # ComfyUI exits this many times in a row without becoming ready: give up


class FileProgress(msgspec.Struct, frozen=True, kw_only=True):
    """One model file's download: bytes done of total (None until the server says)."""

    folder: str
    name: str
    state: FileState = "pending"
    done: int = 0
    total: int | None = None


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    """What the agent knows about its host."""

    phase: Phase = "booting"
    reason: str = ""
    files: tuple[FileProgress, ...] = ()
    comfyui_version: str = ""
    restarts: int = 0  # ComfyUI exits since it was last ready


# --- events the shell reports ---------------------------------------------------------

class Booting(msgspec.Struct, frozen=True):
    """Still booting, and what it is doing (e.g. installing ComfyUI)."""

    reason: str


class Planned(msgspec.Struct, frozen=True):
    """The files the host needs; those already present are ``done``."""

    files: tuple[FileProgress, ...]


class Progress(msgspec.Struct, frozen=True):
    """Bytes of one file so far."""

    name: str
    done: int
    total: int | None


class FileDone(msgspec.Struct, frozen=True):
    """A file is complete (and its checksum matched, where there was one)."""

    name: str
    size: int


class Failed(msgspec.Struct, frozen=True):
    """Something a person must fix; ``name`` is the file concerned, if any."""

    reason: str
    name: str = ""


class ComfyStarting(msgspec.Struct, frozen=True):
    """The ComfyUI process was (re)started."""


class ComfyUp(msgspec.Struct, frozen=True):
    """ComfyUI answers."""

    version: str = ""


class ComfyExited(msgspec.Struct, frozen=True):
    """The ComfyUI process ended."""

    code: int | None


AgentEvent = Booting | Planned | Progress | FileDone | Failed | ComfyStarting | ComfyUp | ComfyExited


def _file(agent: AgentState, name: str, **changes: object) -> tuple[FileProgress, ...]:
    return tuple(msgspec.structs.replace(f, **changes) if f.name == name else f for f in agent.files)


def _all_done(files: tuple[FileProgress, ...]) -> bool:
    return all(f.state == "done" for f in files)


def evolve(state: AgentState, event: AgentEvent) -> AgentState:
    """Apply one event. A failed agent stays failed: only a person (or a new rental) fixes it."""
    if state.phase == "failed":
        return state
    match event:
        case Booting(reason=reason):
            return msgspec.structs.replace(state, phase="booting", reason=reason)
        case Planned(files=files):
            return msgspec.structs.replace(state, files=files, reason="",
                                           phase="starting_comfyui" if _all_done(files) else "downloading")
        case Progress(name=name, done=done, total=total):
            return msgspec.structs.replace(state, files=_file(state, name, state="downloading", done=done,
                                                              total=total))
        case FileDone(name=name, size=size):
            files = _file(state, name, state="done", done=size, total=size)
            return msgspec.structs.replace(state, files=files,
                                           phase="starting_comfyui" if _all_done(files) else state.phase)
        case Failed(reason=reason, name=name):
            files = _file(state, name, state="failed") if name else state.files
            return msgspec.structs.replace(state, phase="failed", reason=reason, files=files)
        case ComfyStarting():
            return msgspec.structs.replace(state, phase="starting_comfyui")
        case ComfyUp(version=version):
            if not _all_done(state.files):
                return msgspec.structs.replace(state, comfyui_version=version)
            return msgspec.structs.replace(state, phase="ready", reason="", comfyui_version=version, restarts=0)
        case ComfyExited(code=code):
            restarts = state.restarts + 1
            if restarts >= MAX_RESTARTS:
                return msgspec.structs.replace(state, phase="failed", restarts=restarts,
                                               reason=f"ComfyUI exited {restarts} times in a row (last exit code "
                                                      f"{code}); see GET /agent/logs for its error")
            return msgspec.structs.replace(state, phase="starting_comfyui", restarts=restarts,
                                           reason=f"ComfyUI exited (code {code}); restarting ({restarts})")
    return state


def bytes_done(state: AgentState) -> tuple[int, int | None]:
    """Bytes downloaded over all files, and the total (None while some file's size is unknown)."""
    done = sum(f.done for f in state.files)
    totals = [f.total for f in state.files]
    return done, None if any(t is None for t in totals) else sum(t for t in totals if t is not None)
