"""The supervisor with throwaway children: restart after a crash (logged), no process left after stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from libs.stack.procs import wait_gone
from libs.stack.supervisor import Backoff, ServiceSpec, Supervisor

CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    if sys.argv[2] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "60"])
    out.joinpath(f"{os.getpid()}.pids").write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(60)
    """
)


async def _pids(out: Path, known: set[str]) -> tuple[int, int]:
    """Wait for a child that is not in `known` to report its pid and its grandchild's pid."""
    async with asyncio.timeout(10):
        while True:
            for file in out.glob("*.pids"):
                if file.name not in known and file.read_text():
                    known.add(file.name)
                    pid, grandchild = file.read_text().split()
                    return int(pid), int(grandchild)
            await asyncio.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        return not wait_gone([psutil.Process(pid)], timeout=2)
    except psutil.NoSuchProcess:
        return True


def _spec(tmp_path: Path, mode: str) -> ServiceSpec:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return ServiceSpec(name="dummy", argv=(sys.executable, str(script), str(tmp_path), mode), env=dict(os.environ))


async def test_killed_service_is_restarted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(backoff=Backoff(initial=0.2), stop_timeout=5)
    known: set[str] = set()
    caplog.set_level(logging.INFO, logger="stoker.supervisor")
    try:
        await supervisor.start(_spec(tmp_path, "normal"))
        first, first_grandchild = await _pids(tmp_path, known)
        os.kill(first, signal.SIGKILL)
        second, second_grandchild = await _pids(tmp_path, known)
        assert second != first and supervisor.restarts["dummy"] == 1
        assert "service dummy exited with code -9; restarting in 0.2s" in caplog.text
        assert _gone(first_grandchild), "the crashed child's process group is reaped"
    finally:
        await supervisor.stop()
    assert all(_gone(pid) for pid in (first, second, second_grandchild))
    assert "service dummy stopped with code" in caplog.text


async def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    supervisor = Supervisor(stop_timeout=0.5)
    await supervisor.start(_spec(tmp_path, "ignore-term"))
    pid, grandchild = await _pids(tmp_path, set())
    async with asyncio.timeout(5):
        await supervisor.stop()
    assert _gone(pid) and _gone(grandchild)
    assert supervisor.pid("dummy") is None
