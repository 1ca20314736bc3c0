"""Which services `stoker up` runs, in what order, with what argv and environment (pure but for discovery)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from libs.stack.config import SERVICE_ORDER, SIM, UpConfig
from libs.stack.datadir import STACK_ENV
from libs.stack.supervisor import ServiceSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Set by `stoker up` for every child; anything inherited under these names is replaced or dropped.
MANAGED_ENV = (
    "NATS_URL",
    "DATABASE_URL",
    "STOKER_ADMIN_KEY",
    "STOKER_PROVIDER",
    "STOKER_DEV",
    "STOKER_DATA_DIR",
    "STOKER_GATEWAY_HOST",
    "STOKER_GATEWAY_PORT",
    "AUDIT_HMAC_KEY",
    STACK_ENV,
)


def module_exists(name: str) -> bool:
    """Whether `services.<name>` can be run with `python -m` (its __main__ module is importable)."""
    try:
        return importlib.util.find_spec(f"services.{name}.__main__") is not None
    except ImportError:
        return False


def discover_services(
    provider: str,
    exists: Callable[[str], bool] = module_exists,
    order: Iterable[str] = SERVICE_ORDER,
    only: Iterable[str] | None = None,
) -> list[str]:
    """The services present, in start order (restricted to `only` if given); the simulator only for `sim`."""
    order = tuple(order)
    wanted = set(order if only is None else only)
    return [name for name in order if name in wanted and (name != SIM or provider == "sim") and exists(name)]


def service_env(
    base: Mapping[str, str],
    config: UpConfig,
    *,
    nats_url: str,
    database_url: str,
    admin_key: str,
    audit_hmac_key: str,
    vast_url: str | None,
) -> dict[str, str]:
    """The environment every service gets: the caller's, with the stack's settings laid over it."""
    env = {k: v for k, v in base.items() if k not in MANAGED_ENV}
    env.update(
        NATS_URL=nats_url,
        DATABASE_URL=database_url,
        STOKER_ADMIN_KEY=admin_key,
        AUDIT_HMAC_KEY=audit_hmac_key,
        STOKER_PROVIDER=config.provider,
        STOKER_DATA_DIR=str(config.data_dir),
        STOKER_GATEWAY_HOST=config.gateway_host,
        STOKER_GATEWAY_PORT=str(config.gateway_port),
        PYTHONUNBUFFERED="1",
    )
    env[STACK_ENV] = str(config.data_dir)
    if config.dev:
        env["STOKER_DEV"] = "1"
    if vast_url is not None:
        env["VAST_URL"] = vast_url
    # Children must import libs/ and services/ whether stoker is installed or run from a checkout.
    paths = [str(PROJECT_ROOT), *filter(None, base.get("PYTHONPATH", "").split(":"))]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    return env


# What each service may be given beyond the common settings (each child only its own credentials).
DATABASE_USERS = ("gateway", "audit")
AUDIT_KEY_USERS = ("audit",)  # only the audit service signs and verifies; the gateway asks it over NATS
NO_NATS = (SIM,)


def env_for(name: str, common: Mapping[str, str], *, nats_url: str | None, database_url: str | None
            ) -> dict[str, str]:
    """One service's environment: the common one with only the credentials and keys it uses."""
    env = {k: v for k, v in common.items() if k not in ("NATS_URL", "DATABASE_URL", "AUDIT_HMAC_KEY")}
    if nats_url and name not in NO_NATS:
        env["NATS_URL"] = nats_url
    if database_url and name in DATABASE_USERS:
        env["DATABASE_URL"] = database_url
    if name in AUDIT_KEY_USERS and common.get("AUDIT_HMAC_KEY"):
        env["AUDIT_HMAC_KEY"] = common["AUDIT_HMAC_KEY"]
    return env


def service_spec(name: str, env: Mapping[str, str], *, sim_port: int | None = None) -> ServiceSpec:
    """How to run one service: `python -m services.<name>`, the simulator with its port."""
    argv: tuple[str, ...] = (sys.executable, "-m", f"services.{name}")
    ready_port = None
    if name == SIM and sim_port is not None:
        argv += ("--port", str(sim_port))
        ready_port = sim_port
    elif name == "gateway":
        ready_port = int(env["STOKER_GATEWAY_PORT"])
    return ServiceSpec(name=name, argv=argv, env=env, ready_port=ready_port)
