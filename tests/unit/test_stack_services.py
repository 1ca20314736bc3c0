"""Which services `stoker up` starts, in what order, with what environment."""

from __future__ import annotations

import sys
from pathlib import Path

from libs.stack.config import UpOptions, resolve_config
from libs.stack.services import PROJECT_ROOT, discover_services, module_exists, service_env, service_spec

ALL = {"pool.sim", "pool", "generation", "audit", "gateway"}


def test_services_start_in_order_and_only_if_present() -> None:
    assert discover_services("sim", ALL.__contains__) == ["pool.sim", "pool", "generation", "audit", "gateway"]
    assert discover_services("sim", {"gateway", "pool"}.__contains__) == ["pool", "gateway"]


def test_the_simulator_runs_only_for_the_sim_provider() -> None:
    assert "pool.sim" not in discover_services("vastai", ALL.__contains__)
    assert "pool.sim" not in discover_services("static", ALL.__contains__)


def test_module_exists_looks_for_a_main_module() -> None:
    assert module_exists("gateway")
    assert not module_exists("no_such_service")
    assert not module_exists("no_such.nested")


def _env(prod: bool = False, base: dict[str, str] | None = None, vast_url: str | None = None) -> dict[str, str]:
    config = resolve_config(UpOptions(prod=prod, port=8181), {}, Path("/srv"))
    return service_env(
        base or {},
        config,
        nats_url="nats://n",
        database_url="postgresql://d",
        admin_key="adm",
        audit_hmac_key="hmac",
        vast_url=vast_url,
    )


def test_service_env_carries_the_stack_settings() -> None:
    env = _env(base={"PATH": "/bin", "STOKER_DEV": "1", "NATS_URL": "nats://old"}, vast_url="http://127.0.0.1:5")
    assert env["PATH"] == "/bin" and env["NATS_URL"] == "nats://n" and env["DATABASE_URL"] == "postgresql://d"
    assert env["STOKER_ADMIN_KEY"] == "adm" and env["AUDIT_HMAC_KEY"] == "hmac"
    assert env["STOKER_PROVIDER"] == "sim" and env["STOKER_GATEWAY_PORT"] == "8181"
    assert env["STOKER_DATA_DIR"] == "/srv/.stoker" and env["STOKER_DEV"] == "1"
    assert env["VAST_URL"] == "http://127.0.0.1:5"
    assert env["PYTHONPATH"].split(":")[0] == str(PROJECT_ROOT)


def test_production_drops_an_inherited_dev_flag() -> None:
    env = _env(prod=True, base={"STOKER_DEV": "1"})
    assert "STOKER_DEV" not in env and "VAST_URL" not in env


def test_specs_run_python_modules_and_keep_secrets_out_of_argv() -> None:
    env = _env()
    sim = service_spec("pool.sim", env, sim_port=7001)
    assert sim.argv == (sys.executable, "-m", "services.pool.sim", "--port", "7001") and sim.ready_port == 7001
    gateway = service_spec("gateway", env)
    assert gateway.argv == (sys.executable, "-m", "services.gateway") and gateway.ready_port == 8181
    assert not any(secret in " ".join(spec.argv) for spec in (sim, gateway) for secret in ("adm", "hmac"))
    assert "adm" not in repr(gateway)


def test_services_can_be_restricted() -> None:
    assert discover_services("sim", ALL.__contains__, only=("gateway", "pool.sim")) == ["pool.sim", "gateway"]
    assert discover_services("vastai", ALL.__contains__, only=("pool.sim",)) == []
