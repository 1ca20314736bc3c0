"""What `stoker up` should do, resolved from command-line options and the environment (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from libs.stack.ports import LOOPBACK

PROVIDERS = ("sim", "vastai", "static")
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_DATA_DIR = Path(".stoker")
# Start order: the simulator before the pool that rents from it, the gateway last.
SERVICE_ORDER = ("pool.sim", "pool", "generation", "audit", "gateway")
SIM = "pool.sim"


@dataclass(frozen=True)
class UpOptions:
    """The `stoker up` flags; None means 'not given'."""

    data_dir: Path | None = None
    port: int | None = None
    nats_port: int | None = None
    pg_port: int | None = None
    prod: bool = False
    provider: str | None = None
    services: tuple[str, ...] | None = None  # None: every service present


@dataclass(frozen=True)
class UpConfig:
    """Everything `stoker up` needs except secrets."""

    data_dir: Path
    dev: bool
    provider: str
    gateway_host: str
    gateway_port: int
    nats_url: str | None  # an external server: start no embedded NATS
    database_url: str | None  # an external server: start no embedded PostgreSQL
    nats_port: int | None
    pg_port: int | None
    services: tuple[str, ...] | None = None

    @property
    def nats_dir(self) -> Path:
        """JetStream store, config and pid file of the embedded NATS."""
        return self.data_dir / "nats"

    @property
    def pg_dir(self) -> Path:
        """PGDATA of the embedded PostgreSQL."""
        return self.data_dir / "postgres"

    @property
    def log_dir(self) -> Path:
        """Logs of the embedded servers."""
        return self.data_dir / "logs"

    @property
    def gateway_local_host(self) -> str:
        """The address to reach the gateway from this machine (loopback when it binds a wildcard)."""
        return LOOPBACK if self.gateway_host in ("0.0.0.0", "::", "") else self.gateway_host

    @property
    def ui_url(self) -> str:
        """Where a browser reaches the gateway."""
        return f"http://{self.gateway_local_host}:{self.gateway_port}/"


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def resolve_config(options: UpOptions, env: Mapping[str, str], cwd: Path) -> UpConfig:
    """Flags win over the environment, which wins over defaults."""
    provider = options.provider or env.get("STOKER_PROVIDER") or "sim"
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    data_dir = options.data_dir or (Path(env["STOKER_DATA_DIR"]) if env.get("STOKER_DATA_DIR") else None)
    data_dir = cwd / (data_dir or DEFAULT_DATA_DIR)
    port = options.port or _int_env(env, "STOKER_GATEWAY_PORT") or DEFAULT_GATEWAY_PORT
    unknown = set(options.services or ()).difference(SERVICE_ORDER)
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(sorted(unknown))}; known: {', '.join(SERVICE_ORDER)}")
    return UpConfig(
        data_dir=data_dir.resolve(),
        dev=not options.prod,
        provider=provider,
        gateway_host=env.get("STOKER_GATEWAY_HOST") or LOOPBACK,
        gateway_port=port,
        nats_url=env.get("NATS_URL") or None,
        database_url=env.get("DATABASE_URL") or None,
        nats_port=options.nats_port,
        pg_port=options.pg_port,
        services=options.services,
    )
