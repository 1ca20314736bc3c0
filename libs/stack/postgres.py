"""An embedded PostgreSQL 16 (the pgserver wheel's binaries) listening on a loopback TCP port."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psutil

with warnings.catch_warnings():
    # Importing pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pgserver import utils as pg_utils
    from pgserver._commands import POSTGRES_BIN_PATH

from libs.stack.base import EmbeddedServer
from libs.stack.ports import LOOPBACK, free_port
from libs.stack.procs import read_pid_file, stop_leftover, stop_process, wait_gone

log = logging.getLogger(__name__)

SYSTEM_USER = "pgserver"  # the same account pgserver itself uses when run as root
SUPERUSER = "postgres"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_binaries_opened = False


def _bin(name: str) -> str:
    return str(POSTGRES_BIN_PATH / name)


def _open_binaries_to_others() -> None:
    """Let the unprivileged postgres account traverse to and run the bundled binaries (once)."""
    global _binaries_opened
    if _binaries_opened:
        return
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    pg_utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
    pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    _binaries_opened = True


HBA_SCRAM = (
    "# Written by stoker (libs/stack/postgres.py) at every start: passwords only, loopback TCP only.\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host all all ::1/128 scram-sha-256\n"
)
AUTH_MARKER = "stoker_auth"  # in PGDATA: a digest of the superuser password last set


class EmbeddedPostgres(EmbeddedServer):
    """A postgres postmaster we own as a child process; initdb once per data dir.

    With ``password`` (what `stoker up` and the tests use), every connection authenticates with
    scram-sha-256 and the superuser has that password; without it, loopback connections are trusted.
    """

    name = "postgres"

    def __init__(
        self,
        pgdata: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        database: str = "stoker",
        log_path: Path | None = None,
        system_user: str | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        password: str | None = None,
    ) -> None:
        super().__init__()
        self.password = password
        if not _IDENTIFIER.match(database):
            raise ValueError(f"unsupported database name {database!r}")
        self.pgdata = pgdata.resolve()
        self.host = host
        self.port = port or free_port(host)
        self.database = database
        self.log_path = log_path or self.pgdata.parent / f"{self.pgdata.name}.log"
        # postgres refuses to run as root: use a dedicated account then, else whoever we are.
        if system_user is None and os.geteuid() == 0:
            system_user = SYSTEM_USER
        self.system_user = system_user
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout

    @property
    def url(self) -> str:
        """The superuser's DSN, e.g. postgresql://postgres:<password>@127.0.0.1:5432/stoker."""
        return self.url_for(SUPERUSER, self.password)

    def url_for(self, user: str, password: str | None, database: str | None = None) -> str:
        """A DSN for one role of this server."""
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{database or self.database}"

    dsn = url

    def _run_as_user(self, argv: list[str], *, new_session: bool = False, stdin: int = subprocess.DEVNULL
                     ) -> subprocess.Popen[bytes]:
        uid = gid = None
        if self.system_user is not None:
            import pwd

            entry = pwd.getpwnam(self.system_user)
            uid, gid = entry.pw_uid, entry.pw_gid
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            return subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.pgdata,
                # A clean environment: the caller's secrets have no business in the database server.
                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
                start_new_session=new_session,
            )

    def _prepare_dir(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.system_user is None:
            self.pgdata.chmod(0o700)
            return
        entry = pg_utils.ensure_user_exists(self.system_user)
        assert entry is not None
        _open_binaries_to_others()
        pg_utils.ensure_prefix_permissions(self.pgdata)
        if self.pgdata.stat().st_uid != entry.pw_uid:
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if any(self.pgdata.iterdir()):
            raise RuntimeError(f"{self.pgdata} is neither empty nor a PostgreSQL data directory")
        log.info("initdb %s", self.pgdata)
        argv = [_bin("initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"]
        code = self._run_as_user(argv).wait(120)
        if code != 0:
            raise RuntimeError(f"initdb failed with code {code}; see {self.log_path}")

    def _require_passwords(self) -> None:
        """Switch authentication to scram-sha-256 and give the superuser our password (offline, once)."""
        if self.password is None:
            return
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        marker = self.pgdata / AUTH_MARKER
        if not marker.is_file() or marker.read_text().strip() != digest:
            # Single-user mode: no server listens while the password changes; it never appears in argv.
            argv = [_bin("postgres"), "--single", "-D", str(self.pgdata), "-c", "password_encryption=scram-sha-256",
                    "postgres"]
            proc = self._run_as_user(argv, stdin=subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(f"ALTER ROLE {SUPERUSER} WITH PASSWORD '{self.password.replace(chr(39), chr(39) * 2)}';\n"
                             .encode())
            proc.stdin.close()
            if proc.wait(60) != 0:
                raise RuntimeError(f"setting the PostgreSQL superuser password failed; see {self.log_path}")
            marker.write_text(digest + "\n")
            marker.chmod(0o600)
        (self.pgdata / "pg_hba.conf").write_text(HBA_SCRAM)

    def _clear_stale_pid_file(self) -> None:
        """Stop our own orphaned postmaster from a crashed run, or drop a pid file nobody owns."""
        pid_file = self.pgdata / "postmaster.pid"
        pid = read_pid_file(pid_file)
        if pid is None:
            return
        # SIGINT = fast shutdown: roll back open transactions, checkpoint, exit.
        if not stop_leftover(pid, str(self.pgdata), sig=signal.SIGINT, timeout=self.stop_timeout):
            log.warning("removing stale %s (pid %s is not our postgres)", pid_file, pid)
        # Children of a killed postmaster linger a moment, attached to its shared memory, which
        # makes a new postmaster refuse to start. They all run in PGDATA: wait for them, then kill.
        for proc in wait_gone(self._processes_in_pgdata(), self.stop_timeout):
            proc.kill()
        pid_file.unlink(missing_ok=True)

    def _processes_in_pgdata(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.name() == "postgres" and proc.cwd() == str(self.pgdata):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Poll postmaster.pid until it names our process with status 'ready'."""
        deadline = time.monotonic() + self.ready_timeout
        pid_file = self.pgdata / "postmaster.pid"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {proc.returncode}; see {self.log_path}")
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0].strip() == str(proc.pid) and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres not ready after {self.ready_timeout}s; see {self.log_path}")

    def _psql(self, sql: str, database: str = "postgres") -> str:
        argv = [_bin("psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port)]
        argv += ["-U", SUPERUSER, "-d", database, "-c", sql]
        env = {"PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "10"}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _ensure_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists != "1":
            self._psql(f"CREATE DATABASE {self.database}")

    def _start(self) -> None:
        self._prepare_dir()
        self._initdb()
        self._clear_stale_pid_file()
        self._require_passwords()
        argv = [_bin("postgres"), "-D", str(self.pgdata), "-h", self.host, "-p", str(self.port), "-k", ""]
        if self.password is not None:
            argv += ["-c", "password_encryption=scram-sha-256"]
        # Own session: a Ctrl-C in the terminal reaches `stoker up`, which stops us last.
        proc = self._run_as_user(argv, new_session=True)
        self._proc = proc
        try:
            self._wait_ready(proc)
            self._ensure_database()
        except BaseException:
            self._stop()
            raise
        log.info("postgres ready on %s:%s (pid %s)", self.host, self.port, proc.pid)

    def _stop(self) -> None:
        if self._proc is None:
            return
        # SIGINT = fast shutdown, then SIGQUIT = immediate shutdown (crash recovery on next start).
        stop_process(self._proc, signals=(signal.SIGINT, signal.SIGQUIT), timeout=self.stop_timeout)
        self._proc = None
