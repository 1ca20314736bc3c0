"""Vast.ai wire format: request bodies and query strings as the official client sends them,
and response rows mapped to the pool's types. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus

from libs.events.pool import InstanceTemplate, Offer, OfferFilter
from services.pool.providers.base import ProviderError, ProviderInstance

SEARCH_FETCH = 256  # fetch generously: the server orders by price, we re-rank by GPU priority
GONE_STATUSES = frozenset({"destroyed", "terminated"})
COMFY_PORT = "8188/tcp"


def query_string(args: Mapping[str, Any]) -> str:
    # json.dumps, not msgspec: byte-identical to the official client's `quote_plus(json.dumps(v))`
    return "&".join(f"{k}={quote_plus(v if isinstance(v, str) else json.dumps(v))}" for k, v in args.items())


def offer_query(flt: OfferFilter, exclude_hosts: Iterable[str] = ()) -> dict[str, Any]:
    """The POST /bundles/ body for a filter (the SDK's default filters plus ours)."""
    q: dict[str, Any] = {"verified": {"eq": True}} if flt.verified_only else {}
    q |= {"external": {"eq": False}, "rentable": {"eq": True}, "rented": {"eq": False}}
    if flt.gpu_names:
        q["gpu_name"] = {"in": list(flt.gpu_names)}
    q |= {
        "num_gpus": {"eq": 1}, "dph_total": {"lte": flt.max_dph}, "disk_space": {"gte": flt.min_disk_gb},
        "direct_port_count": {"gte": flt.min_direct_ports}, "reliability": {"gte": flt.min_reliability},
    }
    hosts = sorted(int(h) for h in exclude_hosts if h.isdigit())
    if hosts:
        q["host_id"] = {"notin": hosts}
    q |= {"order": [["dph_total", "asc"]], "type": "on-demand", "limit": SEARCH_FETCH,
          "allocated_storage": float(flt.min_disk_gb)}
    return q


def create_body(template: InstanceTemplate, label: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The PUT /asks/{id}/ body: every key the CLI sends for `--ssh --direct`."""
    env_dict: dict[str, str] = {f"-p {p}:{p}": "1" for p in template.ports}
    env_dict |= {str(k): str(v) for k, v in env.items()}
    return {
        "client_id": "me", "image": template.image, "env": env_dict, "price": None,
        "disk": float(template.disk_gb), "label": label, "extra": None, "onstart": template.onstart,
        "image_login": None, "python_utf8": False, "lang_utf8": False, "use_jupyter_lab": False,
        "jupyter_dir": None, "force": False,
        # fail rather than leave a stopped instance that bills storage while waiting for its GPU
        "cancel_unavail": True,
        "template_hash_id": None, "user": None, "runtype": "ssh_direc ssh_proxy",
    }


def _id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def offer_from_row(row: Mapping[str, Any]) -> Offer:
    """Map one /bundles/ offer to an Offer (KeyError/TypeError/ValueError when it has no usable price or id)."""
    if row["id"] is None:
        raise ValueError("offer without id")
    return Offer(
        offer_id=_id(row, "id"), gpu_name=str(row.get("gpu_name") or ""), num_gpus=int(row.get("num_gpus") or 1),
        dph=float(row["dph_total"]), host_id=_id(row, "host_id"), machine_id=_id(row, "machine_id"),
        disk_gb=float(row.get("disk_space") or 0.0), reliability=float(row.get("reliability") or 0.0),
    )


def _comfy_url(row: Mapping[str, Any]) -> str | None:
    ip = str(row.get("public_ipaddr") or "").strip()
    ports = row.get("ports")
    mapped = ports.get(COMFY_PORT) if isinstance(ports, dict) else None
    if not ip or not mapped or not isinstance(mapped, list) or not isinstance(mapped[0], dict):
        return None
    host_port = str(mapped[0].get("HostPort") or "").strip()
    if not host_port.isdigit():
        return None
    return f"http://{f'[{ip}]' if ':' in ip else ip}:{int(host_port)}"


def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip()


def instance_from_row(row: Mapping[str, Any]) -> ProviderInstance:
    """Map one instance row (list or show) to a ProviderInstance."""
    start = row.get("start_date")
    return ProviderInstance(
        provider_id=_id(row, "id"), label=_text(row.get("label")), actual_status=_text(row.get("actual_status")),
        intended_status=_text(row.get("intended_status")), status_msg=_text(row.get("status_msg")),
        host_id=_id(row, "host_id"), machine_id=_id(row, "machine_id"), gpu_name=str(row.get("gpu_name") or ""),
        dph=float(row.get("dph_total") or 0.0), comfy_url=_comfy_url(row),
        start_date=float(start) if isinstance(start, (int, float)) else None,
        ssh_host=str(row.get("ssh_host") or ""), ssh_port=_port(row.get("ssh_port")),
    )


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return 0
    return port if 0 < port < 65536 else 0


def is_gone(row: Any) -> bool:
    return isinstance(row, dict) and str(row.get("actual_status") or "").strip().lower() in GONE_STATUSES


def instance_or_error(row: Any) -> ProviderInstance:
    """A row mapped, or a ProviderError: dropping a malformed row would make a billing instance look gone."""
    try:
        if not isinstance(row, dict) or row.get("id") is None:
            raise ValueError("not an instance row")
        return instance_from_row(row)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ProviderError(f"Vast.ai returned a malformed instance row: {type(exc).__name__}",
                            retryable=True) from None


def numeric_id(value: str, what: str) -> str:
    if not value.isdigit():
        raise ProviderError(f"Vast.ai {what} ids are numeric, got a malformed id")
    return value
