"""Running ComfyUI on loopback: the port the agent drives, and the real process supervisor.

The supervisor starts ``python main.py --listen 127.0.0.1 --port P`` in the ComfyUI folder, appends
its output to a log file, and restarts it (with backoff) when it dies. The simulator implements the
same port with its in-process ComfyUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp

log = logging.getLogger("stoker.agent.comfy")

COMFYUI_REPO = "https://github.com/comfyanonymous/ComfyUI"
COMFYUI_PIN = "v0.3.64"  # the version Stoker's templates and simulator are checked against


class Comfy(Protocol):
    """A ComfyUI the agent fronts."""

    url: str  # http://127.0.0.1:PORT, never a public address

    async def start(self, on_exit: Callable[[int | None], None]) -> None:
        """Start it (and keep it running); ``on_exit`` is told each time it dies."""
        ...

    def log_tail(self, lines: int) -> list[str]:
        """The last lines of its log."""
        ...

    async def stop(self) -> None:
        """Stop it."""
        ...


async def comfy_version(session: aiohttp.ClientSession, url: str) -> str | None:
    """ComfyUI's version when it answers ``/system_stats``, else None."""
    try:
        async with session.get(url + "/system_stats", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
        return None
    system = data.get("system") if isinstance(data, dict) else None
    return str((system or {}).get("comfyui_version") or "unknown")


def tail_file(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (empty when it does not exist)."""
    if lines <= 0 or not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 256 * lines))
        text = f.read().decode("utf-8", "replace")
    return text.splitlines()[-lines:]


class ComfyProcess:
    """Supervises a local ComfyUI checkout as a child process, log kept in ``log_path``."""

    def __init__(self, comfy_dir: Path, port: int, log_path: Path, *, python: str = sys.executable,
                 extra_args: tuple[str, ...] = (), backoff: float = 2.0) -> None:
        self.comfy_dir, self.port, self.log_path = comfy_dir, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self._python, self._extra, self._backoff = python, extra_args, backoff
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        """The command line: loopback only, so nothing reaches ComfyUI except through the agent."""
        return [self._python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port), *self._extra]

    async def start(self, on_exit: Callable[[int | None], None]) -> None:
        """Start the process and a watcher that restarts it when it exits."""
        if not (self.comfy_dir / "main.py").exists():
            raise FileNotFoundError(f"no ComfyUI at {self.comfy_dir} (main.py missing)")
        self._task = asyncio.create_task(self._run(on_exit), name="comfyui-supervisor")

    async def _run(self, on_exit: Callable[[int | None], None]) -> None:
        delay = self._backoff
        while True:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as out:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command(), cwd=self.comfy_dir, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL)
                log.info("ComfyUI started (pid %d) on %s", self._proc.pid, self.url)
                code = await self._proc.wait()
            log.warning("ComfyUI exited with code %s; restarting in %.0fs", code, delay)
            on_exit(code)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def log_tail(self, lines: int) -> list[str]:
        """The last lines of ComfyUI's log."""
        return tail_file(self.log_path, lines)

    async def stop(self) -> None:
        """Stop the watcher, then the process (terminate, then kill)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


_FETCH = ("import io, sys, tarfile, urllib.request, pathlib; url, dest = sys.argv[1], pathlib.Path(sys.argv[2]); "
          "data = urllib.request.urlopen(url, timeout=300).read(); dest.mkdir(parents=True, exist_ok=True); "
          "tar = tarfile.open(fileobj=io.BytesIO(data)); root = tar.getnames()[0].split('/')[0]; "
          "[setattr(m, 'name', m.name[len(root) + 1:]) for m in tar.getmembers()]; "
          "tar.extractall(dest, members=[m for m in tar.getmembers() if m.name], filter='data')")


def install_commands(target: Path, python: str = sys.executable) -> list[list[str]]:
    """Commands that install the pinned ComfyUI into ``target`` (no git needed: the release tarball)."""
    tarball = f"{COMFYUI_REPO}/archive/refs/tags/{COMFYUI_PIN}.tar.gz"
    return [[python, "-c", _FETCH, tarball, str(target)],
            [python, "-m", "pip", "install", "-q", "-r", str(target / "requirements.txt")]]


async def install_comfyui(target: Path, log_path: Path) -> None:
    """Install the pinned ComfyUI; raises RuntimeError naming the failed step (output in the log)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for cmd in install_commands(target):
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=asyncio.subprocess.STDOUT)
            code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"installing ComfyUI {COMFYUI_PIN} failed at `{' '.join(cmd[:3])}` (exit {code}); "
                               "see GET /agent/logs")
