"""One simulated rental: the create request, its mutable record and its Vast-shaped row."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.pool.sim.lifecycle import Timeline, loading_message

MODEL_EXTENSIONS = ("safetensors", "ckpt", "pt", "pth", "bin", "gguf", "sft")
_MODEL_RE = re.compile(r"(?:([A-Za-z_]+)/)?([\w.\-]+\.(?:" + "|".join(MODEL_EXTENSIONS) + r"))\b")
_PORT_RE = re.compile(r"^-p\s+(\d+):(\d+)(?:/(tcp|udp))?$")
COMFY_PORT = 8188


class CreateRequest(msgspec.Struct, kw_only=True):
    """Body of ``PUT /api/v0/asks/{id}/`` as the official client sends it (extra keys ignored)."""

    client_id: str | None = "me"
    image: str | None = None
    env: dict[str, Any] | None = None
    price: float | None = None
    disk: float = 10.0
    label: str | None = None
    onstart: str | None = None
    runtype: str | None = None
    args: list[str] | None = None
    template_hash_id: str | None = None
    extra: str | None = None
    image_login: str | None = None
    cancel_unavail: bool | None = None
    ids: list[int] | None = None


def container_ports(env: dict[str, str]) -> list[int]:
    """Container ports mapped with ``-p A:B`` keys of the env dict."""
    out: list[int] = []
    for key in env:
        m = _PORT_RE.match(key.strip())
        if m and (m.group(3) or "tcp") == "tcp":
            out.append(int(m.group(2)))
    return out


def requested_models(env: dict[str, str], onstart: str | None) -> list[tuple[str, str]]:
    """(folder, file) pairs the instance downloads: ``STOKER_MODELS`` entries, then files named in onstart."""
    out: list[tuple[str, str]] = []
    for item in env.get("STOKER_MODELS", "").split(","):
        item = item.strip()
        if "://" in item:  # a download URL (Hugging Face / Civitai): the file lands by its kind
            name = item.rsplit("/", 1)[-1].split("?", 1)[0]
            kind = next((k for k in ("loras", "vae") if k.rstrip("s") in item.lower()), "checkpoints")
            out.append((kind, name))
        elif item:
            folder, _, name = item.rpartition("/")
            out.append((folder or "checkpoints", name))
    for m in _MODEL_RE.finditer(onstart or ""):
        pair = (m.group(1) if m.group(1) in ("checkpoints", "loras", "vae") else "checkpoints", m.group(2))
        if pair not in out:
            out.append(pair)
    return out


@dataclass
class Instance:
    """Mutable record of one rental inside the market."""

    id: int
    offer: dict[str, Any]  # the priced offer at rental time
    host_bad: bool
    request: CreateRequest
    env: dict[str, str]
    api_key: str
    timeline: Timeline
    visible_at: float
    storage_dph: float
    label: str | None
    ssh_port: int
    rate_points: list[tuple[float, float]] = field(default_factory=list)
    vanish_at: float | None = None
    destroyed_at: float | None = None
    stopped_at: float | None = None
    generation: int = 0
    zombie_deletes: int = 0
    mid_job_deaths_armed: int = 0
    host_port: int | None = None
    host_log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def dph_total(self) -> float:
        """Price per hour while the GPU is held."""
        return float(self.offer["dph_total"])

    @property
    def image(self) -> str:
        """Docker image (or the template hash when no image was given)."""
        return self.request.image or f"template:{self.request.template_hash_id}"

    def phase(self, now: float) -> str:
        """One of scheduling, loading, running, failed, stopped, destroyed, vanished."""
        if self.destroyed_at is not None and now >= self.destroyed_at:
            return "destroyed"
        if self.vanish_at is not None and now >= self.vanish_at:
            return "vanished"
        if self.stopped_at is not None:
            return "stopped"
        t = self.timeline
        if t.fail_at is not None and now >= t.fail_at:
            return "failed"
        if t.running_at is not None and now >= t.running_at:
            return "running"
        return "scheduling" if now < t.pull_start else "loading"

    def ended_at(self) -> float | None:
        """When billing stopped for good (destroyed or host vanished), if it did."""
        ends = [t for t in (self.destroyed_at, self.vanish_at) if t is not None]
        return min(ends) if ends else None

    def billed(self, now: float) -> float:
        """Dollars accrued up to ``now``."""
        end = min(now, self.ended_at() or now)
        total = 0.0
        for i, (start, rate) in enumerate(self.rate_points):
            stop = self.rate_points[i + 1][0] if i + 1 < len(self.rate_points) else end
            stop = min(stop, end)
            if stop > start:
                total += rate * (stop - start) / 3600.0
        return total

    def is_billing(self, now: float) -> bool:
        """True while the rental exists on the market's books."""
        return self.phase(now) not in ("destroyed", "vanished")

    def comfy_ready_at(self) -> float | None:
        """When ComfyUI on this rental starts answering."""
        t = self.timeline
        return None if t.running_at is None else t.running_at + t.boot_seconds


STATUS = {  # phase -> (actual_status, intended_status, cur_state)
    "scheduling": (None, "running", "running"),
    "loading": ("loading", "running", "running"),
    "running": ("running", "running", "running"),
    "stopped": ("exited", "stopped", "stopped"),
}


def instance_row(inst: Instance, now: float, failed_status: str) -> dict[str, Any]:
    """The full instance row the Vast API returns for ``inst`` at ``now``."""
    phase = inst.phase(now)
    actual, intended, cur = STATUS.get(phase, (failed_status, "running", "running"))
    if phase == "failed":
        status_msg: str | None = inst.timeline.failure_msg
    elif phase == "running":
        status_msg = f"success, running {inst.image}"
    elif phase == "stopped":
        status_msg = "Stopped by user"
    else:
        status_msg = loading_message(inst.timeline, inst.image, now)
    o = inst.offer
    ports: dict[str, list[dict[str, str]]] = {}
    if phase == "running":
        ports["22/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": str(inst.ssh_port)}]
        for p in container_ports(inst.env):
            if p == COMFY_PORT and inst.host_port is None:
                continue  # not mapped until the container's host process is up
            host_port = inst.host_port if p == COMFY_PORT else inst.ssh_port + 1 + p % 7
            ports[f"{p}/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]
    running_at = inst.timeline.running_at
    uptime = (now - running_at) / 60 if phase == "running" and running_at is not None else 0.0
    return {
        "id": inst.id, "machine_id": o["machine_id"], "host_id": o["host_id"], "bundle_id": o["bundle_id"],
        "actual_status": actual, "intended_status": intended, "cur_state": cur, "next_state": cur,
        "status_msg": status_msg, "label": inst.label,
        "num_gpus": o["num_gpus"], "gpu_name": o["gpu_name"], "gpu_ram": o["gpu_ram"],
        "gpu_totalram": o["gpu_total_ram"], "gpu_util": 0.0, "gpu_temp": 38.0 if phase == "running" else None,
        "gpu_arch": o["gpu_arch"], "compute_cap": o["compute_cap"],
        "cpu_name": o["cpu_name"], "cpu_cores": o["cpu_cores"], "cpu_cores_effective": o["cpu_cores_effective"],
        "cpu_ram": o["cpu_ram"], "cpu_util": 0.0, "mem_usage": None, "mem_limit": None, "vmem_usage": None,
        "disk_space": float(inst.request.disk), "disk_usage": 0.0, "disk_util": 0.0,
        "disk_bw": o["disk_bw"], "disk_name": o["disk_name"],
        "dph_total": inst.dph_total, "dph_base": o["dph_base"], "storage_cost": o["storage_cost"],
        "storage_total_cost": round(inst.storage_dph, 6), "min_bid": o["min_bid"],
        "is_bid": inst.request.price is not None,
        "inet_up": o["inet_up"], "inet_down": o["inet_down"], "inet_up_billed": 0.0, "inet_down_billed": 0.0,
        "reliability2": o["reliability"], "verification": o["verification"], "geolocation": o["geolocation"],
        "cuda_max_good": o["cuda_max_good"], "driver_version": o["driver_version"],
        "public_ipaddr": "127.0.0.1", "local_ipaddrs": "127.0.0.1",
        "direct_port_start": inst.ssh_port, "direct_port_end": inst.ssh_port + 9,
        "direct_port_count": o["direct_port_count"], "ports": ports,
        "ssh_host": f"ssh{1 + inst.id % 9}.vast.ai", "ssh_port": 10000 + inst.id % 50000, "ssh_idx": "1",
        "image_uuid": inst.image, "image_runtype": inst.request.runtype, "image_args": inst.request.args or [],
        "onstart": inst.request.onstart, "extra_env": [[k, v] for k, v in inst.env.items()],
        "template_id": None, "template_hash_id": inst.request.template_hash_id,
        "jupyter_token": inst.api_key[:16], "instance_api_key": None,
        "start_date": inst.timeline.created_at, "end_date": o["end_date"],
        "uptime_mins": round(uptime, 2), "client_run_time": 0.0, "host_run_time": 0.0,
        "time_remaining": "", "time_remaining_isbid": "", "volume_info": [], "webpage": None,
        "logo": "/static/logos/vastai_small2.png", "rentable": True,
    }
