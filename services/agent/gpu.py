"""GPU name, memory and utilisation from ``nvidia-smi`` (absent on CPU hosts and in the simulator)."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

QUERY = "name,memory.total,memory.used,utilization.gpu"


def parse_smi(text: str) -> list[dict[str, Any]]:
    """Rows of ``nvidia-smi --query-gpu=name,memory.total,memory.used,utilization.gpu --format=csv,noheader,nounits``."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            out.append({"name": parts[0], "memory_total_mb": int(float(parts[1])),
                        "memory_used_mb": int(float(parts[2])), "utilization_pct": int(float(parts[3]))})
        except ValueError:
            continue
    return out


async def read_gpus() -> list[dict[str, Any]]:
    """The host's GPUs, or [] when nvidia-smi is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        proc = await asyncio.create_subprocess_exec(smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 5)
    except (OSError, TimeoutError):
        return []
    return parse_smi(out.decode("utf-8", "replace"))
