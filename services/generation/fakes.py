"""In-memory fakes of the generation service's ports: event store, pool, ComfyUI hosts, webhook sender."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.contracts.host_files import BLANK_PNG, FileRef
from libs.events import (
    Aggregate,
    ConcurrencyError,
    Metadata,
    Position,
    Recorded,
    subjects,
)
from libs.events.base import Event
from libs.events.ids import new_id
from libs.events.store import EventStore, History
from services.pool.api import Claim

from .comfy import HostUnreachable, PromptRejected, SocketClosed
from .pool_client import PoolUnavailable

T0 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told (or by ``step`` on every read)."""

    def __init__(self, start: datetime = T0, step: float = 0.0) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        value = self.now
        self.now += timedelta(seconds=self.step)
        return value

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


class MemoryEventStore:
    """The event store's load/append contract, in memory (same concurrency rule)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._envelopes = EventStore(None, clock=clock or FakeClock())  # type: ignore[arg-type]
        self.records: list[Recorded] = []
        self.appends = 0

    async def load(self, aggregate: Aggregate) -> History:
        """The aggregate's records."""
        subject = subjects.aggregate_subject(aggregate)
        return History([r for r in self.records if r.subject == subject])

    async def append(self, aggregate: Aggregate, events: Sequence[Event], expected_version: Position,
                     meta: Metadata, *, event_ids: Sequence[str] | None = None) -> list[Recorded]:
        """Append after ``expected_version`` or raise ConcurrencyError."""
        subject = subjects.aggregate_subject(aggregate)
        await asyncio.sleep(0)
        mine = [r for r in self.records if r.subject == subject]
        last = mine[-1].seq if mine else 0
        if last != expected_version.seq:
            raise ConcurrencyError(subject, expected_version.seq)
        self.appends += 1
        out = []
        for i, event in enumerate(events):
            env = self._envelopes.envelope(aggregate, event, expected_version.version + i + 1, meta,
                                           event_ids[i] if event_ids else None)
            rec = Recorded(subjects.event_stream(aggregate.context), subject, len(self.records) + 1, env)
            self.records.append(rec)
            out.append(rec)
        return out


class FakePool:
    """A pool of named instances (base URLs); claims are exclusive."""

    def __init__(self, instances: dict[str, str], dph: float = 0.36) -> None:
        self.instances = dict(instances)
        self.dph = dph
        self.held: dict[str, str] = {}  # instance -> lease
        self.claims: list[tuple[str, str | None]] = []
        self.releases: list[str] = []
        self.prewarms: list[int] = []

    async def claim(self, holder: str, checkpoint: str | None, lease_s: float) -> Claim:
        """Claim the first free instance."""
        await asyncio.sleep(0)
        for iid, url in self.instances.items():
            if iid not in self.held:
                lease = new_id()
                self.held[iid] = lease
                self.claims.append((iid, checkpoint))
                return Claim(instance_id=iid, lease_id=lease, base_url=url, expires_at=T0, dph=self.dph)
        raise PoolUnavailable("no ready instance is free", "NO_CAPACITY")

    async def renew(self, instance_id: str, lease_id: str, lease_s: float) -> bool:
        """True while held."""
        return self.held.get(instance_id) == lease_id

    async def release(self, instance_id: str, lease_id: str) -> None:
        """Free the instance."""
        if self.held.get(instance_id) == lease_id:
            del self.held[instance_id]
            self.releases.append(instance_id)

    async def prewarm(self, count: int, key: str) -> None:
        """Record the request."""
        self.prewarms.append(count)


class FakeSocket:
    """A socket fed by its host."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        """Next message, None on timeout, SocketClosed if the host dropped it."""
        try:
            msg = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if msg is None:
            raise SocketClosed("dropped")
        return msg

    async def close(self) -> None:
        """Close."""
        if self.host.sockets.get(id(self)) is self:
            del self.host.sockets[id(self)]


class FakeHost:
    """A ComfyUI host in memory. ``mode``: success, error, hang (until interrupted), die (goes down mid-run),
    drop (cuts every socket mid-run and refuses new ones, but keeps running and answering HTTP)."""

    def __init__(self, base_url: str, mode: str = "success", steps: int = 3) -> None:
        self.base_url, self.mode, self.steps = base_url, mode, steps
        self.down = False
        self.sockets_refused = False
        self.reject: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.history_: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.pending: set[str] = set()
        self.posted: list[str] = []
        self.uploads: dict[str, bytes] = {}  # input files by ``subfolder/name``
        self.files: dict[str, bytes] = {}  # output files by name
        self.wipes = 0
        self.placed: list[str] = []
        self.agent = True  # False: a plain ComfyUI (no delete routes, no wipe)
        self.clock_ms: Callable[[], int] | None = None  # stamps history messages like ComfyUI does
        self.sockets: dict[int, FakeSocket] = {}
        self.interrupted: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _check(self) -> None:
        if self.down:
            raise HostUnreachable("connection refused")

    def _send(self, msg: dict[str, Any] | None) -> None:
        for sock in list(self.sockets.values()):
            sock.queue.put_nowait(msg)

    async def connect(self, client_id: str) -> FakeSocket:
        """Open a socket."""
        self._check()
        if self.sockets_refused:
            raise HostUnreachable("websocket: 502")
        sock = FakeSocket(self)
        self.sockets[id(sock)] = sock
        return sock

    async def post_prompt(self, prompt: dict[str, Any], *, prompt_id: str, client_id: str) -> dict[str, Any]:
        """Queue and (in the background) run the prompt."""
        self._check()
        if self.reject is not None:
            raise PromptRejected(*self.reject)
        self.posted.append(prompt_id)
        self.pending.add(prompt_id)
        task = asyncio.create_task(self._run(prompt_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {}

    async def _run(self, pid: str) -> None:
        await asyncio.sleep(0.01)
        self.pending.discard(pid)
        self.running.add(pid)
        self._send({"type": "execution_start", "data": {"prompt_id": pid}})
        self._send({"type": "executing", "data": {"node": "2", "prompt_id": pid}})
        for step in range(self.steps):
            await asyncio.sleep(0.01)
            if pid in self.interrupted:
                self._finish(pid, "error", [["execution_interrupted", {"prompt_id": pid, "node_id": "2"}]])
                return
            if self.mode == "drop" and step == self.steps // 2:
                self.sockets_refused = True
                self._send(None)
            if self.mode == "die" and step == self.steps // 2:
                self.down = True
                self._send(None)
                self.running.discard(pid)
                return
            self._send({"type": "progress", "data": {"prompt_id": pid, "node": "2", "value": step + 1,
                                                     "max": self.steps}})
        while self.mode == "hang" and pid not in self.interrupted:
            await asyncio.sleep(0.01)
        if pid in self.interrupted:
            self._finish(pid, "error", [["execution_interrupted", {"prompt_id": pid, "node_id": "2"}]])
        elif self.mode == "error":
            self._finish(pid, "error", [["execution_error", {"prompt_id": pid, "node_id": "2", "node_type": "SaveImage",
                                                             "exception_message": "boom", "exception_type": "E"}]])
        else:
            name = f"{pid[:8]}_00001_.png"
            self.files[name] = b"\x89PNG fake " + pid.encode()
            self._finish(pid, "success", [["execution_success", {"prompt_id": pid}]],
                         {"2": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}})

    def _finish(self, pid: str, status: str, messages: list[Any], outputs: dict[str, Any] | None = None) -> None:
        self.running.discard(pid)
        if self.clock_ms is not None:
            messages = [[kind, {**data, "timestamp": self.clock_ms()}] for kind, data in messages]
        self.history_[pid] = {"outputs": outputs or {}, "status": {"status_str": status,
                                                                    "completed": status == "success",
                                                                    "messages": messages}}
        kind, data = messages[-1]
        self._send({"type": kind, "data": data})
        self._send({"type": "executing", "data": {"node": None, "prompt_id": pid}})

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished entry."""
        self._check()
        return self.history_.get(prompt_id)

    async def queue(self) -> tuple[set[str], set[str]]:
        """Running and pending ids."""
        self._check()
        return set(self.running), set(self.pending)

    async def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        """A file's bytes."""
        self._check()
        return self.files[filename]

    async def upload_image(self, filename: str, data: bytes) -> str:
        """Keep an input."""
        self._check()
        self.uploads[filename] = data
        return filename

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt if running."""
        self._check()
        if prompt_id in self.running:
            self.interrupted.add(prompt_id)

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """Drop pending prompts."""
        self._check()
        for pid in prompt_ids:
            self.pending.discard(pid)


class FakeHostFiles:
    """A fake host's user files (``HostFiles``): inputs in ``uploads``, outputs in ``files``."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    async def place(self, path: str, data: bytes) -> str:
        """Keep an input."""
        self.host._check()
        self.host.uploads[path] = data
        self.host.placed.append(path)
        return path

    async def remove(self, files: Sequence[FileRef]) -> None:
        """Remove (or, without the agent, blank) these files."""
        self.host._check()
        for ref in files:
            store = self.host.uploads if ref.folder == "input" else self.host.files
            key = ref.path if ref.folder == "input" else ref.filename
            if key in store:
                if self.host.agent:
                    del store[key]
                else:
                    store[key] = BLANK_PNG

    async def wipe(self) -> bool:
        """Remove every user file (only with the agent)."""
        self.host._check()
        if not self.host.agent:
            return False
        self.host.wipes += 1
        self.host.uploads.clear()
        self.host.files.clear()
        return True


class FakeHosts:
    """Hosts by base URL."""

    def __init__(self, *hosts: FakeHost) -> None:
        self.by_url = {h.base_url: h for h in hosts}

    def host(self, base_url: str) -> FakeHost:
        """The host at ``base_url``."""
        return self.by_url[base_url]

    def files(self, base_url: str) -> FakeHostFiles:
        """The host's user files."""
        return FakeHostFiles(self.by_url[base_url])


class FakeSender:
    """Records webhook posts; answers ``statuses`` in order (then 200), or raises while ``down``."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = list(statuses)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """Record and answer."""
        self.sent.append((url, body, headers))
        return self.statuses.pop(0) if self.statuses else 200
