"""Deterministic offer catalogue and the Vast search-filter comparator."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOURS_PER_MONTH = 720.0
CONTROL_KEYS = frozenset({"order", "type", "limit", "allocated_storage", "disable_bundling", "select_cols"})


class QueryError(ValueError):
    """A search or list filter the sim cannot evaluate (answered with HTTP 400)."""


@dataclass(frozen=True)
class GpuModel:
    """One GPU type of the catalogue."""

    name: str
    ram_mb: int
    price: tuple[float, float]  # $/h per GPU, min..max
    dlperf: float
    tflops: float
    compute_cap: int
    mem_bw: float


GPUS: tuple[GpuModel, ...] = (
    GpuModel("RTX 4090", 24564, (0.28, 0.55), 36.0, 82.6, 890, 1008.0),
    GpuModel("RTX 3090", 24576, (0.14, 0.30), 21.0, 35.6, 860, 936.0),
    GpuModel("RTX 5090", 32607, (0.48, 0.85), 48.0, 104.8, 1200, 1792.0),
    GpuModel("RTX A6000", 49140, (0.40, 0.62), 27.0, 38.7, 860, 768.0),
    GpuModel("L40S", 46068, (0.60, 0.95), 44.0, 91.6, 890, 864.0),
    GpuModel("A100 SXM4", 81920, (0.90, 1.40), 60.0, 19.5, 800, 2039.0),
    GpuModel("H100 SXM", 81559, (1.80, 2.60), 110.0, 66.9, 900, 3352.0),
)
# how often each GPU appears, index-aligned with GPUS
GPU_WEIGHTS = (9, 6, 3, 3, 3, 3, 3)
GEOS = ("Texas, US", "California, US", "Oregon, US", "Virginia, US", "Quebec, CA", "Ontario, CA",
        "Bavaria, DE", "North Holland, NL", "Stockholm, SE", "Tokyo, JP", "Poland, PL")
CPUS = ("AMD EPYC 7543 32-Core Processor", "AMD Ryzen 9 7950X 16-Core Processor",
        "Intel Xeon Gold 6338", "AMD EPYC 9354 32-Core Processor", "Intel Core i9-13900K")


@dataclass(frozen=True)
class Host:
    """A machine owner; ``bad`` hosts fail image extraction more often."""

    host_id: int
    bad: bool
    geolocation: str
    reliability: float


def driver_version_int(text: str) -> int:
    """Convert '535.86.05' to 535086005 like the CLI does for filters."""
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


def generate_offers(seed: int, count: int = 30, bad_host_fraction: float = 0.25) -> tuple[list[dict[str, Any]], dict[int, Host]]:
    """Build ``count`` offers on a dozen hosts; the same seed gives the same market."""
    rng = random.Random(seed)
    n_hosts = max(1, count // 3 + 2)
    hosts: dict[int, Host] = {}
    n_bad = round(n_hosts * bad_host_fraction)
    bad_ids = set(rng.sample(range(n_hosts), n_bad)) if n_bad else set()
    for i in range(n_hosts):
        bad = i in bad_ids
        # bad hosts do not necessarily look bad: reliability overlaps with good ones
        reliability = round(rng.uniform(0.93, 0.995) if bad else rng.uniform(0.965, 0.999), 4)
        host_id = 101_000 + i * 137
        hosts[host_id] = Host(host_id, bad, GEOS[rng.randrange(len(GEOS))], reliability)
    host_ids = list(hosts)
    offers: list[dict[str, Any]] = []
    for i in range(count):
        gpu = rng.choices(GPUS, weights=GPU_WEIGHTS)[0]
        host = hosts[host_ids[i % n_hosts]]
        num_gpus = rng.choices((1, 2, 4, 8), weights=(14, 3, 2, 1))[0]
        per_gpu = round(rng.uniform(*gpu.price), 4)
        storage_cost = round(rng.uniform(0.08, 0.25), 3)  # $/GB/month
        cores = num_gpus * rng.choice((8, 12, 16, 32))
        offer_id = 20_100_000 + i * 7919 + rng.randrange(100)
        machine_id = 30_000 + i * 11
        verified = rng.random() > 0.12
        rented_by_other = rng.random() < 0.07
        driver = rng.choice(("535.183.01", "550.54.15", "550.127.05", "560.35.03", "570.133.07"))
        cuda = {"535": 12.2, "550": 12.4, "560": 12.6, "570": 12.8}[driver[:3]]
        dlperf = round(gpu.dlperf * num_gpus * rng.uniform(0.85, 1.05), 3)
        inet_down = round(rng.uniform(80, 3000) * (0.4 if host.bad else 1.0), 1)
        offers.append({
            "id": offer_id, "ask_contract_id": offer_id, "bundle_id": offer_id + 1,
            "machine_id": machine_id, "host_id": host.host_id,
            "num_gpus": num_gpus, "gpu_name": gpu.name, "gpu_arch": "nvidia",
            "gpu_ram": gpu.ram_mb, "gpu_total_ram": gpu.ram_mb * num_gpus, "gpu_frac": 1.0,
            "gpu_mem_bw": gpu.mem_bw, "gpu_max_power": 450.0, "gpu_max_temp": 83.0,
            "gpu_display_active": False, "compute_cap": gpu.compute_cap, "bw_nvlink": 0.0,
            "cpu_name": rng.choice(CPUS), "cpu_arch": "amd64", "cpu_cores": cores * 2,
            "cpu_cores_effective": float(cores), "cpu_ram": num_gpus * rng.choice((64, 128, 256)) * 1000,
            "cpu_ghz": round(rng.uniform(2.4, 5.4), 1), "has_avx": 1, "mobo_name": "ROMED8-2T",
            "pci_gen": 4.0, "pcie_bw": round(rng.uniform(10, 25), 1),
            "disk_space": float(rng.choice((120, 250, 500, 1000, 2000))), "disk_bw": round(rng.uniform(900, 6000), 1),
            "disk_name": "Samsung SSD 980 PRO", "storage_cost": storage_cost,
            "dph_base": round(per_gpu * num_gpus, 4), "min_bid": round(per_gpu * num_gpus * 0.55, 4),
            "inet_up": round(inet_down * rng.uniform(0.3, 1.0), 1), "inet_down": inet_down,
            "inet_up_cost": 0.0, "inet_down_cost": 0.0,
            "direct_port_count": rng.choice((0, 2, 10, 50, 100)),
            "rentable": not rented_by_other, "rented": rented_by_other, "external": i % 17 == 16,
            "verification": "verified" if verified else "unverified", "verified": verified,
            "reliability": host.reliability, "reliability2": host.reliability,
            "geolocation": host.geolocation, "cuda_max_good": cuda, "driver_version": driver,
            "ubuntu_version": "22.04", "vms_enabled": False, "cluster_id": None,
            "hosting_type": 1 if i % 5 == 0 else 0, "datacenter": i % 5 == 0,
            "static_ip": i % 3 == 0, "public_ipaddr": f"203.0.113.{10 + i}",
            "duration": float(rng.choice((7, 30, 90, 180)) * 86400),
            "total_flops": round(gpu.tflops * num_gpus, 1), "dlperf": dlperf, "is_bid": False,
        })
    return offers, hosts


def price_offer(offer: Mapping[str, Any], storage_gb: float, kind: str, now: float) -> dict[str, Any]:
    """Return a copy of ``offer`` priced for ``storage_gb`` of disk and rental ``kind``."""
    out = dict(offer)
    storage_dph = offer["storage_cost"] * storage_gb / HOURS_PER_MONTH
    base = offer["min_bid"] if kind == "bid" else offer["dph_base"]
    total = round(base + storage_dph, 6)
    out["dph_total"] = total
    out["discounted_dph_total"] = round(offer["dph_base"] * 0.8 + storage_dph, 6)
    out["score"] = round(offer["dlperf"] / max(total, 1e-6) * offer["reliability"] ** 2, 3)
    out["dlperf_per_dphtotal"] = round(offer["dlperf"] / max(total, 1e-6), 3)
    out["flops_per_dphtotal"] = round(offer["total_flops"] / max(total, 1e-6), 3)
    out["end_date"] = now + offer["duration"]
    out["is_bid"] = kind == "bid"
    return out


def _coerce(field: str, have: Any, want: Any) -> tuple[Any, Any]:
    if field == "driver_version" and isinstance(have, str):
        have = driver_version_int(have)
        if isinstance(want, str) and "." in want:
            want = driver_version_int(want)
    if field == "geolocation" and isinstance(have, str) and isinstance(want, str) and len(want) == 2:
        have = have.rsplit(",", 1)[-1].strip()
    if isinstance(have, bool):
        if isinstance(want, str):
            low = want.strip().lower()
            if low in ("true", "1"):
                return have, True
            if low in ("false", "0"):
                return have, False
            raise QueryError(f"{field}: cannot compare a boolean with {want!r}")
        return have, want
    if isinstance(have, (int, float)) and isinstance(want, str):
        try:
            return have, float(want)
        except ValueError as exc:
            raise QueryError(f"{field}: {want!r} is not a number") from exc
    return have, want


def _compare(field: str, have: Any, op: str, want: Any) -> bool:
    if op in ("in", "notin"):
        if not isinstance(want, list):
            raise QueryError(f"{field}: operator {op} needs a list")
        hit = False
        for item in want:
            h, w = _coerce(field, have, item)
            if h == w:
                hit = True
                break
        return hit if op == "in" else not hit
    h, w = _coerce(field, have, want)
    if op == "eq":
        return bool(h == w)
    if op == "neq":
        return bool(h != w)
    if op not in ("gt", "gte", "lt", "lte"):
        raise QueryError(f"unknown operator {op!r}")
    if h is None or w is None:
        return False
    try:
        if op == "gt":
            return bool(h > w)
        if op == "gte":
            return bool(h >= w)
        if op == "lt":
            return bool(h < w)
        return bool(h <= w)
    except TypeError as exc:
        raise QueryError(f"{field}: cannot compare {h!r} with {w!r}") from exc


def matches(row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """True when ``row`` satisfies every ``{field: {op: value}}`` filter; unknown fields are ignored."""
    for field, cond in filters.items():
        if field in CONTROL_KEYS or field not in row:
            continue
        if not isinstance(cond, dict):
            cond = {"eq": cond}
        for op, want in cond.items():
            if not _compare(field, row[field], op, want):
                return False
    return True


def sort_rows(rows: Iterable[dict[str, Any]], order: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Sort by several (field, 'asc'|'desc') keys; missing values sort last."""
    out = list(rows)
    for field, direction in reversed(list(order)):
        desc = str(direction).lower().startswith("desc")
        present = [r for r in out if r.get(field) is not None]
        missing = [r for r in out if r.get(field) is None]
        try:
            present.sort(key=lambda r: r[field], reverse=desc)
        except TypeError as exc:
            raise QueryError(f"cannot order by {field}") from exc
        out = present + missing
    return out


def parse_order(raw: Any) -> list[tuple[str, str]]:
    """Accept Vast's ``[["field","asc"]]`` and ``[{"col":..,"dir":..}]`` order forms."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise QueryError("order must be a list")
    out: list[tuple[str, str]] = []
    for item in raw:
        if isinstance(item, dict):
            out.append((str(item.get("col")), str(item.get("dir", "asc"))))
        elif isinstance(item, list) and item:
            out.append((str(item[0]), str(item[1]) if len(item) > 1 else "asc"))
        elif isinstance(item, str):
            out.append((item, "asc"))
        else:
            raise QueryError(f"bad order entry {item!r}")
    return out
