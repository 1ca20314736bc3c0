"""One `stoker up` per data dir: an exclusive lock, and cleanup after a run that was killed."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from libs.stack.procs import terminate_all

log = logging.getLogger("stoker.up")
LOCK_FILE = "stoker.lock"
# Set by `stoker up` on every service it runs (and on nothing else): how a later run finds orphans.
STACK_ENV = "STOKER_STACK"


class DataDirBusy(RuntimeError):
    """Another `stoker up` holds the data dir."""


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data dir (released by the kernel even if we are killed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DataDirBusy(f"{data_dir} is in use by another stoker up (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def stop_orphaned_services(data_dir: Path, timeout: float = 5.0) -> int:
    """Stop services left running by a killed `stoker up` on this data dir; return how many there were."""
    me = os.getpid()
    orphans = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != me and proc.environ().get(STACK_ENV) == str(data_dir):
                orphans.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for proc in orphans:
        log.warning("stopping service pid %s left over from an earlier run", proc.pid)
    terminate_all(orphans, timeout=timeout)
    return len(orphans)
