"""`stoker up`: embedded NATS and PostgreSQL, then every service, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import asyncpg

from libs.stack.base import EmbeddedServer
from libs.stack.config import SIM, UpConfig, UpOptions, resolve_config
from libs.stack.credentials import CREDENTIALS_FILE, Endpoints, StackCredentials, load_or_create_credentials
from libs.stack.datadir import DataDirBusy, exclusive, stop_orphaned_services
from libs.stack.keys import ADMIN_KEY_ENV, MissingSecret, Secret, StackSecrets, resolve_stack_secrets
from libs.stack.nats import EmbeddedNats
from libs.stack.natsauth import SERVICES as SERVICE_USERS
from libs.stack.pgroles import SERVICE_ROLES, bootstrap
from libs.stack.ports import LOOPBACK, free_port, port_accepts
from libs.stack.postgres import SUPERUSER, EmbeddedPostgres
from libs.stack.services import discover_services, env_for, service_env, service_spec
from libs.stack.supervisor import Supervisor, watch_server

log = logging.getLogger("stoker.up")
READY_TIMEOUT = 20.0


class StartupError(RuntimeError):
    """`stoker up` cannot start; the message says why."""


async def _wait_port(host: str, port: int, stop: asyncio.Event) -> bool:
    """Wait until host:port accepts connections, READY_TIMEOUT at most, or until shutdown."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline and not stop.is_set():
        if await asyncio.to_thread(port_accepts, host, port):
            return True
        await asyncio.sleep(0.1)
    return False


async def _start_servers(config: UpConfig, servers: list[EmbeddedServer]) -> Endpoints:
    """Start the embedded servers that no *_URL replaces, each requiring credentials; where to connect."""
    nats_url, database_url = config.nats_url, config.database_url
    creds: StackCredentials | None = None
    if nats_url is None or database_url is None:
        creds = load_or_create_credentials(config.data_dir / CREDENTIALS_FILE)
    nats_urls: dict[str, str] = {}
    database_urls: dict[str, str] = {}
    pg: EmbeddedPostgres | None = None
    if nats_url is None:
        assert creds is not None
        nats = EmbeddedNats(config.nats_dir, port=config.nats_port, log_path=config.log_dir / "nats.log",
                            users=creds.nats)
        servers.append(nats)
        nats_url = nats.url
        nats_urls = {user: nats.url_for(user) for user in creds.nats if user in SERVICE_USERS}
    else:
        log.info("using NATS at NATS_URL")
    if database_url is None:
        assert creds is not None
        pg = EmbeddedPostgres(config.pg_dir, port=config.pg_port, log_path=config.log_dir / "postgres.log",
                              password=creds.postgres[SUPERUSER])
        servers.append(pg)
        database_url = pg.url
        database_urls = {service: pg.url_for(role, creds.postgres[role]) for service, role in SERVICE_ROLES.items()}
    else:
        log.info("using PostgreSQL at DATABASE_URL")
    results = await asyncio.gather(*(server.start() for server in servers), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise StartupError(str(errors[0])) from errors[0]
    if pg is not None and creds is not None:
        conn = await asyncpg.connect(pg.url, timeout=10)
        try:
            await bootstrap(conn, creds.postgres)
        finally:
            await conn.close()
    return Endpoints(nats_url=nats_url, database_url=database_url, nats_urls=nats_urls, database_urls=database_urls)


async def _start_services(
    config: UpConfig,
    env: Mapping[str, str],
    secrets: StackSecrets,
    endpoints: Endpoints,
    supervisor: Supervisor,
    stop: asyncio.Event,
) -> list[str]:
    """Start every service present, in order, waiting for each one that listens on a port; return their names."""
    names = discover_services(config.provider, only=config.services)
    if not names:
        log.warning("no services found (services.<name>.__main__)")
    sim_port = free_port() if SIM in names else None
    vast_url = f"http://{LOOPBACK}:{sim_port}" if sim_port is not None else None
    if config.provider == "sim" and vast_url is None and (config.services is None or SIM in config.services):
        log.warning("provider is sim but services.pool.sim is missing")
    child_env = service_env(
        env,
        config,
        nats_url=endpoints.nats_url,
        database_url=endpoints.database_url,
        admin_key=secrets.admin.value,
        audit_hmac_key=secrets.audit_hmac.value,
        vast_url=vast_url,
    )
    for name in names:
        if stop.is_set():
            break
        own = env_for(name, child_env, nats_url=endpoints.nats_for(name), database_url=endpoints.database_for(name))
        spec = service_spec(name, own, sim_port=sim_port)
        await supervisor.start(spec)
        host = config.gateway_local_host if name == "gateway" else LOOPBACK
        if spec.ready_port is not None and not await _wait_port(host, spec.ready_port, stop):
            log.warning("service %s is not listening on port %s yet", name, spec.ready_port)
    return names


def _banner(config: UpConfig, admin: Secret, services: list[str], out: TextIO) -> None:
    if "gateway" in services:
        print(f"Stoker is up: {config.ui_url}", file=out)
    else:
        print("Stoker is up (no gateway: nothing serves the UI)", file=out)
    if config.dev:
        if admin.source == "file":
            # The one deliberate secret on screen: the dev admin key, so a developer can sign in.
            print(f"Admin key (dev mode, kept in {admin.path}): {admin.value}", file=out)
        else:
            print(f"Admin key: from {ADMIN_KEY_ENV}", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)


async def _serve(config: UpConfig, env: Mapping[str, str], stop: asyncio.Event, out: TextIO) -> None:
    """Start everything, wait for `stop`, stop everything in reverse (also on a failed start)."""
    servers: list[EmbeddedServer] = []
    watchers: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()  # set before anything is stopped on purpose
    supervisor = Supervisor()
    try:
        stop_orphaned_services(config.data_dir)
        if port_accepts(config.gateway_local_host, config.gateway_port):
            raise StartupError(f"port {config.gateway_port} is already in use; pick another with --port")
        secrets = resolve_stack_secrets(env, config.data_dir, dev=config.dev)
        log.info("data dir %s", config.data_dir)
        endpoints = await _start_servers(config, servers)
        watchers = [asyncio.create_task(watch_server(server, stopping), name=f"watch-{server.name}")
                    for server in servers]
        services = await _start_services(config, env, secrets, endpoints, supervisor, stop)
        if not stop.is_set():
            _banner(config, secrets.admin, services, out)
        await stop.wait()
        log.info("shutting down")
    finally:
        stopping.set()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await supervisor.stop()
        for server in reversed(servers):
            await server.stop()
        log.info("stopped")


async def run_up(config: UpConfig, env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """Bring the stack up, wait for SIGINT/SIGTERM, take it down in reverse; return the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with exclusive(config.data_dir):
            await _serve(config, env, stop, out)
        return 0
    except (StartupError, MissingSecret, DataDirBusy, OSError) as exc:
        print(f"stoker up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(options: UpOptions, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Entry point for the CLI: resolve the configuration and run the stack until a signal."""
    env = dict(os.environ if env is None else env)
    try:
        config = resolve_config(options, env, cwd or Path.cwd())
    except ValueError as exc:
        print(f"stoker up: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_up(config, env))
