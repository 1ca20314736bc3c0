"""Stopping child processes politely, then firmly; finding leftovers of a crashed run."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def stop_process(
    proc: subprocess.Popen[bytes],
    *,
    signals: Sequence[int] = (signal.SIGTERM,),
    timeout: float = 10.0,
) -> int:
    """Send each signal in turn, waiting `timeout` s after each, then SIGKILL; return the exit code."""
    for sig in signals:
        if proc.poll() is not None:
            return proc.returncode
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %s ignored signal %s for %.1fs", proc.pid, signal.Signals(sig).name, timeout)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def read_pid_file(path: Path) -> int | None:
    """Return the pid on the first line of a pid file, or None if there is none."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def _gone(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have exited; return those still alive after `timeout` s.

    An exited process counts as gone while still a zombie: an orphan is reaped by PID 1, which
    in some containers takes seconds, and psutil.wait_procs would wait for that.
    """
    alive = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        alive = [proc for proc in alive if not _gone(proc)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def terminate_all(procs: Iterable[psutil.Process], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send `sig` to each process, wait up to `timeout` s for all of them, then SIGKILL the rest."""
    procs = list(procs)
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    for proc in wait_gone(procs, timeout):
        log.warning("pid %s ignored signal %s for %.1fs; killing it", proc.pid, signal.Signals(sig).name, timeout)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    wait_gone(procs, 5)


def stop_leftover(pid: int, marker: str, *, sig: int, timeout: float = 10.0) -> bool:
    """Stop `pid` if it is alive and its command line mentions `marker` (a server of a crashed run)."""
    try:
        proc = psutil.Process(pid)
        if not any(marker in part for part in proc.cmdline()):
            return False
        log.warning("stopping leftover process %s (%s) from an earlier run", pid, proc.name())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    terminate_all([proc], sig=sig, timeout=timeout)
    return True
