"""Shared test harness: a real NATS JetStream and a real PostgreSQL for the whole session.

Backends, per server:
- `NATS_URL` / `DATABASE_URL` set: use that server (it cannot be stopped by outage tests: they skip);
- `STOKER_TEST_BACKEND=containers`: testcontainers (Docker), NATS started with `-js`;
- otherwise (default, `embedded`): libs.stack's embedded servers in throwaway dirs on free ports.

The embedded servers require credentials like `stoker up`'s: NATS has one user per service (libs/stack/
natsauth.py) and `nats_url` carries the all-permissions admin user's; PostgreSQL uses scram-sha-256 and
`database_url` is the superuser's. `nats_user_url(name)` gives a service user's URL (skips on other backends).

Fixtures: `nats_url`, `database_url` (session); `nats_server`, `postgres_server` (handles with async
`stop()`/`start()`, restarted after each test if a test left them down); `nc`, `js`, `pg` (per test);
`unique_id` (per test: name streams, subjects and rows with it instead of cleaning up).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `libs` and `services` import from the checkout, installed or not
    sys.path.insert(0, str(ROOT))

FIXTURE_TIMEOUT = 15.0  # no fixture may wait on a server longer than this
NATS_IMAGE = "nats:2.10-alpine"
POSTGRES_IMAGE = "postgres:16-alpine"


class ServerHandle(Protocol):
    """What outage tests may do with a backend server."""

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start_sync(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class FixedServer:
    """A server the harness did not start (external or in a container): it cannot be stopped from a test."""

    url: str
    kind: str
    running: bool = True

    def start_sync(self) -> None:
        """Nothing to do: the server is always running."""

    async def start(self) -> None:
        """Skip: this backend cannot be restarted from a test."""
        pytest.skip(f"the {self.kind} backend cannot be stopped or started by tests")

    async def stop(self) -> None:
        """Skip: this backend cannot be stopped from a test."""
        pytest.skip(f"the {self.kind} backend cannot be stopped or started by tests")


def _backend() -> str:
    backend = os.environ.get("STOKER_TEST_BACKEND", "embedded")
    if backend not in ("embedded", "containers"):
        raise pytest.UsageError(f"STOKER_TEST_BACKEND must be 'embedded' or 'containers', not {backend!r}")
    return backend


def _start_container(make: Callable[[], Any], image: str) -> Any:
    """Create and start a testcontainers container; a missing Docker fails the run with one clear line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return make().start()
    except Exception as exc:  # noqa: BLE001 -- docker-py raises many kinds; the message is what matters
        reason = f"STOKER_TEST_BACKEND=containers, but {image} did not start: {exc}"
    pytest.fail(reason, pytrace=False)


def _nats_container() -> tuple[FixedServer, Any]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    def make() -> Any:
        return (
            DockerContainer(NATS_IMAGE)
            .with_command("-js")
            .with_exposed_ports(4222)
            .waiting_for(LogMessageWaitStrategy("Server is ready"))
        )

    container = _start_container(make, NATS_IMAGE)
    url = f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"
    return FixedServer(url, "containers"), container


def _postgres_container() -> tuple[FixedServer, Any]:
    from testcontainers.community.postgres import PostgresContainer

    def make() -> Any:
        return PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres", dbname="stoker", driver=None)

    container = _start_container(make, POSTGRES_IMAGE)
    return FixedServer(container.get_connection_url(), "containers"), container


@pytest.fixture(scope="session")
def _nats_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    if os.environ.get("NATS_URL"):
        yield FixedServer(os.environ["NATS_URL"], "external (NATS_URL)")
    elif _backend() == "containers":
        server, container = _nats_container()
        yield server
        container.stop()
    else:
        from libs.stack.credentials import NATS_USERS
        from libs.stack.nats import EmbeddedNats

        users = {user: secrets.token_hex(16) for user in NATS_USERS}
        with EmbeddedNats(tmp_path_factory.mktemp("nats"), ready_timeout=FIXTURE_TIMEOUT, users=users) as embedded:
            yield embedded


@pytest.fixture(scope="session")
def _postgres_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    if os.environ.get("DATABASE_URL"):
        yield FixedServer(os.environ["DATABASE_URL"], "external (DATABASE_URL)")
    elif _backend() == "containers":
        server, container = _postgres_container()
        yield server
        container.stop()
    else:
        from libs.stack.postgres import EmbeddedPostgres

        pgdata = tmp_path_factory.mktemp("postgres") / "pgdata"
        with EmbeddedPostgres(pgdata, ready_timeout=FIXTURE_TIMEOUT, password=secrets.token_hex(16)) as embedded:
            yield embedded


@pytest.fixture(scope="session")
def nats_url(_nats_session: ServerHandle) -> str:
    """URL of the session's NATS server (JetStream enabled)."""
    return _nats_session.url


@pytest.fixture(scope="session")
def database_url(_postgres_session: ServerHandle) -> str:
    """DSN of the session's PostgreSQL database."""
    return _postgres_session.url


@pytest.fixture
def nats_user_url(_nats_session: ServerHandle) -> Callable[[str], str]:
    """The URL of one NATS user of the embedded server (its service's permissions); skips on other backends."""
    url_for = getattr(_nats_session, "url_for", None)
    if url_for is None or not getattr(_nats_session, "users", None):
        pytest.skip("only the embedded NATS has per-service users")
    return url_for  # type: ignore[no-any-return]


@pytest.fixture
def nats_server(_nats_session: ServerHandle) -> Iterator[ServerHandle]:
    """The NATS server, for outage tests; restarted afterwards if the test left it stopped."""
    yield _nats_session
    if not _nats_session.running:
        _nats_session.start_sync()


@pytest.fixture
def postgres_server(_postgres_session: ServerHandle) -> Iterator[ServerHandle]:
    """The PostgreSQL server, for outage tests; restarted afterwards if the test left it stopped."""
    yield _postgres_session
    if not _postgres_session.running:
        _postgres_session.start_sync()


@pytest.fixture
def unique_id() -> str:
    """A short id unique to this test, for stream, subject and row names."""
    return uuid.uuid4().hex[:12]


async def _ignore_error(exc: Exception) -> None:
    """Connection noise (e.g. during an outage test) is the test's business, not the log's."""


@pytest_asyncio.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    """A connected NATS client that reconnects through outages; drained at teardown."""
    client = await asyncio.wait_for(
        nats.connect(
            nats_url,
            connect_timeout=5,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
            error_cb=_ignore_error,
        ),
        FIXTURE_TIMEOUT,
    )
    yield client
    try:
        await asyncio.wait_for(client.drain(), FIXTURE_TIMEOUT)
    except (TimeoutError, nats.errors.Error):
        await client.close()


@pytest_asyncio.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    """The JetStream context of `nc`."""
    return nc.jetstream(timeout=5)


@pytest_asyncio.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection to the test database; closed at teardown."""
    conn = await asyncpg.connect(database_url, timeout=FIXTURE_TIMEOUT)
    yield conn
    try:
        await asyncio.wait_for(conn.close(), 5)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()
