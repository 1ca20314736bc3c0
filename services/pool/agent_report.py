"""When a probe's answer is worth an event: the agent's phase, reason or probe error changed, or progress moved (pure)."""

from __future__ import annotations

from libs.events import pool as ev

from .instance import Instance
from .probe import ProbeResult

PROGRESS_STEP = 0.1  # a download progress event every 10 %


def _bucket(done: int, total: int | None) -> int:
    return int(done / total / PROGRESS_STEP) if total else 0


def report_of(inst: Instance, result: ProbeResult) -> ev.AgentReported | None:
    """The AgentReported event this probe result calls for, or None when nothing new was learnt."""
    agent = result.agent
    if agent is None:
        return None
    changed = (agent.phase, agent.reason, result.error) != (inst.agent_phase, inst.agent_reason, inst.probe_error)
    moved = _bucket(agent.bytes_done, agent.bytes_total) != _bucket(inst.bytes_done, inst.bytes_total) or \
        agent.bytes_total != inst.bytes_total
    if not changed and not moved:
        return None
    return ev.AgentReported(pool_id=inst.pool_id, phase=agent.phase, reason=agent.reason, bytes_done=agent.bytes_done,
                            bytes_total=agent.bytes_total, comfyui_version=agent.comfyui_version,
                            probe_error=result.error, base_url=inst.base_url or "")
