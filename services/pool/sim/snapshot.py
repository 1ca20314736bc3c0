"""Control-API snapshot of the market: every rental ever, with billing."""

from __future__ import annotations

import msgspec

from services.pool.sim.config import ForcedFaults
from services.pool.sim.market import Market


class InstanceState(msgspec.Struct, kw_only=True):
    """Control-API view of one rental, including destroyed and vanished ones."""

    id: int
    offer_id: int
    host_id: int
    machine_id: int
    bad_host: bool
    gpu_name: str
    label: str | None
    phase: str
    actual_status: str | None
    status_msg: str | None
    dph_total: float
    created_at: float
    ended_at: float | None
    billed_usd: float
    billing: bool
    visible: bool
    zombie_deletes: int
    comfy_port: int | None


class SimState(msgspec.Struct, kw_only=True):
    """Control-API snapshot of the whole market."""

    now: float
    credit: float
    total_billed_usd: float
    billing_instance_ids: list[int]
    instances: list[InstanceState]
    offers_total: int
    offers_available: int
    forced: ForcedFaults


def snapshot(market: Market) -> SimState:
    """Everything a test or dashboard wants to know, billing included."""
    now = market.clock.now()
    states = []
    for inst in market.instances.values():
        row = market.row(inst)
        states.append(InstanceState(
            id=inst.id, offer_id=inst.offer["id"], host_id=inst.offer["host_id"],
            machine_id=inst.offer["machine_id"], bad_host=inst.host_bad, gpu_name=inst.offer["gpu_name"],
            label=inst.label, phase=inst.phase(now), actual_status=row["actual_status"],
            status_msg=row["status_msg"], dph_total=inst.dph_total, created_at=inst.timeline.created_at,
            ended_at=inst.ended_at(), billed_usd=round(inst.billed(now), 6), billing=inst.is_billing(now),
            visible=market.visible(inst.id) is not None, zombie_deletes=inst.zombie_deletes,
            comfy_port=inst.host_port,
        ))
    offers = market.live_offers()
    return SimState(
        now=now, credit=round(market.credit(), 6), total_billed_usd=round(market.total_billed(), 6),
        billing_instance_ids=market.billing_ids(), instances=states, offers_total=len(offers),
        offers_available=sum(1 for o in offers if o["rentable"] and not market.is_taken(o["id"])),
        forced=msgspec.structs.replace(market.forced),
    )
