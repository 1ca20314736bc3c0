"""Following one prompt on a ComfyUI host to its outcome: socket first, history as the truth.

The socket is opened before posting. Silence, a dropped socket or the legacy "done" message
lead to ``GET /history/<prompt id>``; a host that stays unreachable for ``lost_after_s`` (or
that the pool says is gone) is lost. A resumed attempt (another worker died) posts nothing
if ComfyUI already has the prompt: it is found again in history or in the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec

from .comfy import (
    ComfyError,
    ComfyHost,
    HostUnreachable,
    PromptRejected,
    Socket,
    SocketClosed,
)


class Succeeded(NamedTuple):
    """Finished; ``outputs`` is history's node id -> UI output; ``node_errors``: branches ComfyUI skipped."""

    outputs: dict[str, Any]
    node_errors: dict[str, Any]


class ExecutionFailed(NamedTuple):
    """A node raised (``execution_error``)."""

    message: str
    node_id: str | None
    node_type: str | None
    exception_type: str = ""


class Interrupted(NamedTuple):
    """Interrupted on the host (or removed from its queue)."""

    node_id: str | None = None


class HostLost(NamedTuple):
    """The host went away."""

    message: str


class Rejected(NamedTuple):
    """ComfyUI refused the prompt at validation."""

    message: str
    node_errors: dict[str, Any]


Outcome = Succeeded | ExecutionFailed | Interrupted | HostLost | Rejected
OnMessage = Callable[[str, dict[str, Any]], Awaitable[None]]


class FollowSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Patience with a host."""

    lost_after_s: float = 30.0  # unreachable this long = lost
    poll_s: float = 2.0  # socket silence before checking history
    retry_s: float = 0.3  # between reconnects / polls while the socket is down
    interrupt_grace_s: float = 15.0  # cancel: how long to wait for the host to confirm


def from_history(entry: dict[str, Any]) -> Outcome | None:
    """The outcome a finished history entry records (None if it is not finished)."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success" or (status.get("completed") and not status.get("status_str")):
        return Succeeded(entry.get("outputs") or {}, {})
    for kind, data in reversed(status.get("messages") or []):
        if kind == "execution_error":
            return failure(data)
        if kind == "execution_interrupted":
            return Interrupted(data.get("node_id"))
    if status.get("status_str") == "error":
        return ExecutionFailed("ComfyUI reported an error without details", None, None)
    return None


def ended_ms(entry: dict[str, Any]) -> int | None:
    """When the prompt ended on the host (ms since the epoch, host clock), if ComfyUI recorded it."""
    for kind, data in reversed((entry.get("status") or {}).get("messages") or []):
        if kind in ("execution_success", "execution_error", "execution_interrupted") and isinstance(data, dict):
            stamp = data.get("timestamp")
            if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
                return int(stamp)
    return None


def failure(data: dict[str, Any]) -> ExecutionFailed:
    """ExecutionFailed from an ``execution_error`` message, in ComfyUI's words."""
    message = str(data.get("exception_message") or "execution error").strip()
    return ExecutionFailed(message, data.get("node_id"), data.get("node_type"), str(data.get("exception_type", "")))


class Follower:
    """Runs or resumes one prompt on one host until it has an outcome."""

    def __init__(self, host: ComfyHost, *, prompt: dict[str, Any], prompt_id: str, client_id: str,
                 on_message: OnMessage, gone: Callable[[], bool], cancel: asyncio.Event,
                 settings: FollowSettings, on_accepted: Callable[[], Awaitable[None]] | None = None) -> None:
        self.host, self.prompt, self.prompt_id, self.client_id = host, prompt, prompt_id, client_id
        self.on_message, self.gone, self.cancel, self.settings = on_message, gone, cancel, settings
        self.on_accepted = on_accepted
        self._socket: Socket | None = None
        self._down_since: float | None = None
        self._interrupt_at: float | None = None
        self._posted = False
        self._may_post = True
        self.node_errors: dict[str, Any] = {}
        self.ended_ms: int | None = None  # the host's end time of the prompt, from its history entry

    def _unreachable(self, exc: Exception) -> HostLost | None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= self.settings.lost_after_s:
            return HostLost(f"the host has not answered for {now - self._down_since:.0f}s ({exc})")
        return None

    async def _connect(self) -> None:
        try:
            self._socket = await self.host.connect(self.client_id)
            self._down_since = None
        except HostUnreachable as exc:
            self._socket = None
            lost = self._unreachable(exc)
            if lost:
                raise _Done(lost) from None

    async def _post(self) -> None:
        try:
            self.node_errors = await self.host.post_prompt(self.prompt, prompt_id=self.prompt_id,
                                                           client_id=self.client_id)
        except PromptRejected as exc:
            raise _Done(Rejected(str(exc), exc.node_errors)) from None
        self._posted = True
        if self.on_accepted is not None:
            await self.on_accepted()

    async def run(self, resume: bool, may_post: bool = True) -> Outcome:
        """Post (or find again) the prompt and follow it.

        ``may_post=False`` (a resumed attempt whose lease ended): follow the prompt if ComfyUI has
        it, but do not post it on a host that may be someone else's now; that attempt is lost.
        """
        self._may_post = may_post
        try:
            outcome = await self._run(resume)
        except _Done as done:
            outcome = done.outcome
        finally:
            if self._socket is not None:
                await self._socket.close()
        if isinstance(outcome, Succeeded) and self.node_errors:
            return Succeeded(outcome.outputs, self.node_errors)
        return outcome

    async def _run(self, resume: bool) -> Outcome:
        while self._socket is None:
            await self._connect()
            if self._socket is None:
                await asyncio.sleep(self.settings.retry_s)
        if resume:
            found = await self._poll(repost=True)
            if found is not None:
                return found
        else:
            await self._post()
        while True:
            if self.gone():
                return HostLost("the pool reports the instance terminated")
            if self.cancel.is_set() and self._interrupt_at is None:
                await self._interrupt()
            if self._socket is None:
                await self._connect()
            if self._socket is not None:
                try:
                    msg = await self._socket.receive(self._silence())
                except SocketClosed:
                    self._socket = None
                    msg = None
                if msg is not None:
                    outcome = await self._handle(msg)
                    if outcome is not None:
                        return outcome
                    continue
            found = await self._poll(repost=not self._posted)
            if found is not None:
                return found
            if self._socket is None:
                await asyncio.sleep(self.settings.retry_s)

    def _silence(self) -> float:
        return self.settings.retry_s if self._interrupt_at is not None else self.settings.poll_s

    async def _interrupt(self) -> None:
        self._interrupt_at = time.monotonic()
        try:
            await self.host.delete_queued([self.prompt_id])
            await self.host.interrupt(self.prompt_id)
        except ComfyError:
            pass  # the poll below notices a host that is gone

    async def _poll(self, *, repost: bool) -> Outcome | None:
        """Check history (and the queue when the prompt may be missing); None while it runs."""
        try:
            entry = await self.host.history(self.prompt_id)
            self._down_since = None
            if entry is not None:
                outcome = from_history(entry)
                if outcome is not None:
                    self.ended_ms = ended_ms(entry)
                    return outcome
            if repost or self._interrupt_at is not None:
                running, pending = await self.host.queue()
                if self.prompt_id not in running and self.prompt_id not in pending:
                    if self._interrupt_at is not None:
                        return Interrupted(None)  # removed from the queue before it ran
                    if await self.host.history(self.prompt_id) is None:
                        if not self._may_post:
                            return HostLost("the lease ended before the prompt reached ComfyUI")
                        await self._post()  # never reached ComfyUI: post it now (same prompt id)
                else:
                    self._posted = True
        except HostUnreachable as exc:
            lost = self._unreachable(exc)
            if lost:
                return lost
        except ComfyError:
            pass
        if self._interrupt_at is not None and time.monotonic() - self._interrupt_at > self.settings.interrupt_grace_s:
            return Interrupted(None)
        return None

    async def _handle(self, msg: dict[str, Any]) -> Outcome | None:
        kind = msg.get("type")
        data = msg.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id", self.prompt_id) != self.prompt_id:
            return None
        if kind in ("execution_start", "execution_cached", "progress"):
            await self.on_message(str(kind), data)
        elif kind == "executing":
            if data.get("node") is None:
                if "prompt_id" in data:
                    return await self._finished()
                return None
            await self.on_message("executing", data)
        elif kind == "executed":
            await self.on_message("executed", data)  # a node produced output (node spans end here)
        elif kind == "execution_success":
            return await self._finished()
        elif kind == "execution_error":
            return failure(data)
        elif kind == "execution_interrupted":
            return Interrupted(data.get("node_id"))
        return None

    async def _finished(self) -> Outcome | None:
        """The socket says it is done: history has the outputs (it may lag a moment behind)."""
        for delay in (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
            await asyncio.sleep(delay)
            found = await self._poll(repost=False)
            if found is not None:
                return found
        return None


class _Done(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(type(outcome).__name__)
        self.outcome = outcome
