"""Every environment variable the deployment files give a Stoker service is one its code reads.

"Reads" means: the name appears as a string literal in the service's `__main__` module or in any
`libs`/`services` module it imports, directly or transitively (imports inside functions included).
Names read by the runtime rather than by Stoker are allowed explicitly: the interpreter's PYTHON*
switches and the OpenTelemetry SDK's OTEL_* variables (checked against the SDK's own list).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILES = (DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.sim.yml")
K8S = DEPLOY / "k8s"
STOKER_DOCKERFILE = "deploy/Dockerfile"
INTERPRETER_ENV = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"})


# -- what the code reads ------------------------------------------------------------------------------

def _module_file(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for candidate in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@functools.cache
def strings_reachable(entry: str) -> frozenset[str]:
    """String literals of module `entry` and of every repo module it imports, transitively."""
    seen: set[str] = set()
    found: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in ("libs", "services"):
            continue
        seen.add(name)
        parents = name.split(".")
        todo.extend(".".join(parents[:i]) for i in range(1, len(parents)))  # packages run their __init__
        path = _module_file(name)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.update(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
        todo.extend(_imported(tree, name, path.name == "__init__.py"))
    return frozenset(found)


@functools.cache
def otel_sdk_env() -> frozenset[str]:
    """The variables the OpenTelemetry SDK documents (opentelemetry.sdk.environment_variables)."""
    from opentelemetry.sdk import environment_variables

    return frozenset(v for k, v in vars(environment_variables).items() if k.startswith("OTEL_") and isinstance(v, str))


def main_module(service: str) -> str:
    return f"services.{service}.__main__"


def unread(service: str, names: set[str]) -> list[str]:
    """The names `python -m services.<service>` never reads."""
    if not names:
        return []
    if importlib.util.find_spec(main_module(service)) is None:
        pytest.fail(f"services.{service}.__main__ does not exist")
    read = strings_reachable(main_module(service))
    return sorted(n for n in names if n not in read and n not in INTERPRETER_ENV and n not in otel_sdk_env())


def test_the_scanner_sees_what_services_read() -> None:
    # Direct reads, reads in imported modules, and reads behind a relative import (pool's __main__ -> .app).
    assert {"NATS_URL", "STOKER_GATEWAY_PORT", "AUDIT_HMAC_KEY"} <= strings_reachable(main_module("gateway"))
    assert {"STOKER_LEADER_TTL", "VASTAI_API_KEY"} <= strings_reachable(main_module("pool"))
    assert unread("audit", {"AUDIT_HMAC_KEY", "OTEL_SERVICE_NAME", "STOKER_NO_SUCH_VARIABLE"}) == [
        "STOKER_NO_SUCH_VARIABLE"]


# -- docker compose -----------------------------------------------------------------------------------

def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_service_envs() -> list[tuple[str, str, str, set[str]]]:
    """(file, compose service, Stoker service, variable names) for every Stoker container."""
    out = []
    for path in COMPOSE_FILES:
        base = _load(COMPOSE_FILES[0])["services"]
        for name, spec in (_load(path).get("services") or {}).items():
            merged = {**base.get(name, {}), **spec}
            if (merged.get("build") or {}).get("dockerfile") != STOKER_DOCKERFILE:
                continue
            env = spec.get("environment") or {}
            assert isinstance(env, dict), f"{path.name}: {name}.environment must be a mapping (overrides merge it)"
            out.append((path.name, name, merged["command"][0], set(env)))
    return out


@pytest.mark.parametrize("file,name,service,names", compose_service_envs(),
                         ids=[f"{f}:{n}" for f, n, _, _ in compose_service_envs()])
def test_compose_sets_only_variables_the_service_reads(file: str, name: str, service: str, names: set[str]) -> None:
    assert not unread(service, names), f"{file}: {name} sets variables services.{service} never reads"


# -- Kubernetes (source manifests: no kubectl needed) -------------------------------------------------

def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name in ("kustomization.yaml", "nats-values.yaml"):
            continue
        docs.extend((path, d) for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def k8s_container_envs() -> list[tuple[str, str, set[str]]]:
    """(where, Stoker service, variable names) for every Stoker container of every Deployment, patches included."""
    docs = k8s_documents()
    config_maps: dict[str, set[str]] = {}
    for _, doc in docs:
        if doc.get("kind") == "ConfigMap":
            config_maps.setdefault(doc["metadata"]["name"], set()).update(doc.get("data") or {})
    stoker = {doc["metadata"]["name"]: c["args"][0]
              for _, doc in docs if doc.get("kind") == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"] if str(c.get("image", "")).startswith("stoker")}
    out = []
    for path, doc in docs:
        if doc.get("kind") != "Deployment" or doc["metadata"]["name"] not in stoker:
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in c.get("env") or []}
            for source in c.get("envFrom") or []:
                if "configMapRef" in source:
                    names |= config_maps[source["configMapRef"]["name"]]
            out.append((f"{path.relative_to(K8S)}:{doc['metadata']['name']}", stoker[doc["metadata"]["name"]], names))
    return out


def test_k8s_manifests_are_found() -> None:
    services = {service for _, service, _ in k8s_container_envs()}
    assert services == {"pool", "generation", "audit", "gateway"}


@pytest.mark.parametrize("where,service,names", k8s_container_envs(), ids=[w for w, _, _ in k8s_container_envs()])
def test_k8s_sets_only_variables_the_service_reads(where: str, service: str, names: set[str]) -> None:
    assert not unread(service, names), f"{where} sets variables services.{service} never reads"
