"""The common shape of an embedded server: blocking start/stop with async and context-manager faces."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class EmbeddedServer(ABC):
    """A server run as a child process that can be stopped and started again on the same port."""

    name = "server"  # for log lines: "nats-server", "postgres"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    @abstractmethod
    def url(self) -> str:
        """Where clients connect."""

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last process if it has exited (None while running or never started)."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _stop(self) -> None: ...

    def start_sync(self) -> None:
        """Start the server (no-op if running) and block until it accepts connections."""
        with self._lock:
            if not self.running:
                self._start()

    def stop_sync(self) -> None:
        """Stop the server cleanly (no-op if stopped); kill it if it does not stop in time."""
        with self._lock:
            self._stop()

    async def start(self) -> None:
        """Start the server without blocking the event loop."""
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        """Stop the server without blocking the event loop."""
        await asyncio.to_thread(self.stop_sync)

    def __enter__(self) -> Self:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()
