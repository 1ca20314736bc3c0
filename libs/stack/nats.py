"""An embedded `nats-server` with JetStream, run as a child process on a loopback port."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from libs.stack.base import EmbeddedServer
from libs.stack.natsauth import ADMIN, render_authorization
from libs.stack.ports import LOOPBACK, free_port, wait_for_port
from libs.stack.procs import read_pid_file, stop_leftover, stop_process

log = logging.getLogger(__name__)


def find_nats_server() -> str:
    """Locate the nats-server binary: $NATS_SERVER_BIN, the running venv's bin dir, then $PATH."""
    explicit = os.environ.get("NATS_SERVER_BIN")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install nats-server-bin or set NATS_SERVER_BIN")
    return found


def render_config(*, host: str, port: int, store_dir: Path, pid_file: Path, monitor_port: int | None,
                  users: Mapping[str, str] | None = None) -> str:
    """Return a nats-server config: loopback listener, JetStream that fsyncs every write, and (with
    ``users``: name -> password) no connection without a password, each service user its permissions."""
    lines = [
        f"listen: {json.dumps(f'{host}:{port}')}",
        f"pid_file: {json.dumps(str(pid_file))}",
        # sync_interval: always makes an acknowledged publish survive a crash of the machine.
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  sync_interval: always",
        "}",
    ]
    if monitor_port is not None:
        lines.insert(1, f"http: {json.dumps(f'{host}:{monitor_port}')}")
    text = "\n".join(lines) + "\n"
    return text + render_authorization(users) if users else text


class EmbeddedNats(EmbeddedServer):
    """nats-server -js with its store, config, pid and log files under one directory."""

    name = "nats-server"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        host: str = LOOPBACK,
        log_path: Path | None = None,
        ready_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        users: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.users = dict(users or {})  # name -> password; empty: no authentication (not for stoker up)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port
        self.log_path = log_path or self.data_dir / "nats.log"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout

    @property
    def bare_url(self) -> str:
        """Client URL without credentials, e.g. nats://127.0.0.1:4222."""
        return f"nats://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Client URL; with users configured, the all-permissions admin user's (for tools and tests)."""
        return self.url_for(ADMIN) if ADMIN in self.users else self.bare_url

    def url_for(self, user: str) -> str:
        """Client URL carrying one user's credentials."""
        password = self.users[user]
        return f"nats://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """HTTP monitoring URL, if a monitoring port was asked for."""
        return None if self.monitor_port is None else f"http://{self.host}:{self.monitor_port}"

    @property
    def config_path(self) -> Path:
        """The generated config file."""
        return self.data_dir / "nats.conf"

    def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.data_dir / "nats.pid"
        leftover = read_pid_file(pid_file)
        if leftover is not None:
            stop_leftover(leftover, str(self.config_path), sig=signal.SIGTERM, timeout=self.stop_timeout)
        # The config holds the users' passwords: readable by us only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(
                render_config(
                    host=self.host,
                    port=self.port,
                    store_dir=self.data_dir,
                    pid_file=pid_file,
                    monitor_port=self.monitor_port,
                    users=self.users,
                )
            )
        self.config_path.chmod(0o600)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [find_nats_server(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches `stoker up`, which stops us in order.
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "")},
            )
        if not wait_for_port(self.host, self.port, self.ready_timeout) or not self.running:
            self._stop()
            raise RuntimeError(f"nats-server did not start on {self.bare_url}; see {self.log_path}")
        log.info("nats-server ready on %s (pid %s)", self.bare_url, self.pid)

    def _stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, signals=(signal.SIGTERM,), timeout=self.stop_timeout)
        self._proc = None
