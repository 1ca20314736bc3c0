"""`stoker up` end to end: servers and gateway come up, a killed service comes back, Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from libs.stack.ports import free_port
from libs.stack.procs import wait_gone

ROOT = Path(__file__).resolve().parents[2]
# Settings from the developer's shell must not leak into the stack under test.
SCRUBBED = ("NATS_URL", "DATABASE_URL", "AUDIT_HMAC_KEY", "VAST_URL", "PYTHONPATH")


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _uses(proc: psutil.Process, data_dir: str) -> bool:
    """Whether a process belongs to the stack on `data_dir` (postgres runs as another user: root sees it)."""
    try:
        return any(data_dir in part for part in proc.cmdline()) or proc.environ().get("STOKER_STACK") == data_dir
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _stack_processes(data_dir: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if _uses(p, str(data_dir))]


class Up:
    """A `stoker up` child process whose combined output goes to a file."""

    def __init__(self, tmp_path: Path, index: int, flags: tuple[str, ...], extra_env: dict[str, str]) -> None:
        self.data_dir = tmp_path / "data"
        self.port = free_port()
        self.log = tmp_path / f"up-{index}.log"
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("STOKER_")}
        env.update(extra_env, PYTHONPATH=str(ROOT))
        argv = [sys.executable, "-m", "libs.cli.main", "up", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*argv, *flags], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> str:
        _wait("the banner", lambda: "Stoker is up" in self.output() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.output()
        return self.output()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def gateway(self) -> psutil.Process:
        return next(p for p in self.descendants() if "services.gateway" in p.cmdline())

    def readyz(self) -> str:
        return f"http://127.0.0.1:{self.port}/readyz"


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    started: list[Up] = []

    def start(*flags: str, **extra_env: str) -> Up:
        started.append(Up(tmp_path, len(started), flags, extra_env))
        return started[-1]

    yield start
    for stack in started:  # a test that failed midway leaves nothing running
        if stack.proc.poll() is None:
            stack.proc.send_signal(signal.SIGINT)
            try:
                stack.proc.wait(30)
            except subprocess.TimeoutExpired:
                stack.proc.kill()
                stack.proc.wait()
    for proc in _stack_processes(tmp_path / "data"):
        proc.kill()


def _stopped_cleanly(up: Up, sig: int) -> None:
    """Send `sig`: `stoker up` must exit 0 and no process of the stack may survive."""
    descendants = up.descendants()
    up.proc.send_signal(sig)
    assert up.proc.wait(30) == 0, up.output()
    alive = wait_gone(descendants, timeout=5)
    assert not alive, f"left running: {alive}"
    assert not _stack_processes(up.data_dir)


def test_up_serves_restarts_and_stops_cleanly(start_up: Callable[..., Up]) -> None:
    up = start_up()  # every service present, provider sim: what a developer runs
    out = up.wait_up()
    assert f"Stoker is up: http://127.0.0.1:{up.port}/" in out, out

    # The data dir holds both servers' state and the dev secrets, private to the owner.
    assert (up.data_dir / "nats" / "nats.conf").is_file()
    assert (up.data_dir / "postgres" / "PG_VERSION").is_file()
    admin_key = (up.data_dir / "admin_key").read_text().strip()
    for name in ("admin_key", "audit_hmac_key"):
        assert stat.S_IMODE((up.data_dir / name).stat().st_mode) == 0o600
    printed = re.search(r"Admin key \(dev mode.*\): (\S+)", out)
    assert printed and printed.group(1) == admin_key
    assert up.output().count(admin_key) == 1, "the admin key is printed once and logged nowhere"

    # /readyz = the gateway reaches NATS and PostgreSQL.
    assert httpx.get(up.readyz(), timeout=5).status_code == 200
    names = " ".join(" ".join(p.cmdline()) for p in up.descendants())
    assert "nats-server" in names and "postgres" in names and "services.gateway" in names

    # A second `stoker up` on the same data dir is refused while this one runs.
    second = start_up()
    assert second.proc.wait(30) == 1 and "in use by another stoker up" in second.output()

    # A killed service is restarted, and the restart is logged.
    up.gateway().kill()
    _wait("the restart log line", lambda: "service gateway exited with code -9; restarting in" in up.output(), 10)
    _wait("the gateway to come back", lambda: _ready(up.readyz()), 15)

    _stopped_cleanly(up, signal.SIGINT)


def test_prod_mode_takes_secrets_from_env_only_and_stops_on_sigterm(start_up: Callable[..., Up]) -> None:
    missing = start_up("--prod")
    assert missing.proc.wait(30) == 1
    assert "STOKER_ADMIN_KEY must be set" in missing.output()

    admin_key, hmac_key = "prod-admin-" + "a" * 20, "prod-hmac-" + "b" * 20
    up = start_up(
        "--prod", "--provider", "static", "--services", "gateway", STOKER_ADMIN_KEY=admin_key, AUDIT_HMAC_KEY=hmac_key
    )
    up.wait_up()
    assert _ready(up.readyz()), up.output()
    env = up.gateway().environ()
    assert env["STOKER_ADMIN_KEY"] == admin_key
    # The internet-facing gateway cannot sign audit records: it asks the audit service over NATS.
    assert "AUDIT_HMAC_KEY" not in env and hmac_key not in env.values()
    assert env["STOKER_PROVIDER"] == "static" and "STOKER_DEV" not in env
    assert not (up.data_dir / "admin_key").exists() and not (up.data_dir / "audit_hmac_key").exists()
    _stopped_cleanly(up, signal.SIGTERM)
    assert admin_key not in up.output() and hmac_key not in up.output()
    assert "Traceback" not in up.output()


def test_a_killed_stoker_up_leaves_nothing_behind_the_next_one(start_up: Callable[..., Up]) -> None:
    crashed = start_up("--services", "gateway")
    crashed.wait_up()
    orphans = crashed.descendants()
    crashed.proc.kill()  # no chance to clean up: NATS, PostgreSQL and the gateway are orphaned
    crashed.proc.wait()
    assert all(p.is_running() for p in orphans)

    up = start_up("--services", "gateway")
    up.wait_up()
    alive = wait_gone(orphans, timeout=5)
    assert not alive, f"orphans still running: {alive}"
    assert _ready(up.readyz()), up.output()
    _stopped_cleanly(up, signal.SIGINT)


def _pool_command_works(up: Up, admin_key: str, idle: float) -> bool:
    """A pool configuration change: gateway -> NATS -> pool -> JetStream -> the gateway's projection."""
    try:
        resp = httpx.put(f"http://127.0.0.1:{up.port}/api/v1/pool/config", json={"idle_timeout_s": idle},
                         headers={"X-Admin-Api-Key": admin_key}, timeout=5)
        return resp.status_code == 200 and resp.json()["idle_timeout_s"] == idle
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def test_nats_and_postgres_require_credentials_and_come_back_after_sigkill(start_up: Callable[..., Up]) -> None:
    up = start_up("--services", "pool.sim,pool,gateway")
    up.wait_up()
    admin_key = (up.data_dir / "admin_key").read_text().strip()
    assert _ready(up.readyz()), up.output()
    creds = up.data_dir / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE((up.data_dir / "nats" / "nats.conf").stat().st_mode) == 0o600
    passwords = json.loads(creds.read_text())
    env = up.gateway().environ()  # the gateway's own user and role, nothing of the others'
    assert env["NATS_URL"].startswith(f"nats://gateway:{passwords['nats']['gateway']}@")
    assert env["DATABASE_URL"].startswith(f"postgresql://stoker_gateway:{passwords['postgres']['stoker_gateway']}@")
    assert not any(p in " ".join(env.values()) for p in (passwords["nats"]["pool"], passwords["postgres"]["postgres"]))

    for name in ("nats-server", "postgres"):
        server = next(p for p in psutil.Process(up.proc.pid).children() if p.name() == name)
        server.kill()
        _wait(f"{name}'s restart", lambda name=name: f"{name} exited with code -9; restarting" in up.output(), 10)
        _wait(f"{name} to be ready", lambda name=name: f"{name} restarted and ready" in up.output(), 40)
        _wait("the gateway to be ready again", lambda: _ready(up.readyz()), 30)
        idle = 600.0 + len(name)
        _wait("a pool command to go through", lambda idle=idle: _pool_command_works(up, admin_key, idle), 30)
        assert next(p for p in psutil.Process(up.proc.pid).children() if p.name() == name).pid != server.pid
    _stopped_cleanly(up, signal.SIGINT)
