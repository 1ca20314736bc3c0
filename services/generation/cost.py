"""Cost: an estimate before queueing (instance $/h x expected seconds), the actual cost after (pure)."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from services.pool.view import PoolView


class CostModel(msgspec.Struct, frozen=True, kw_only=True):
    """How long work takes: ``overhead_s`` per job plus ``seconds_per_unit`` per work unit.

    A work unit is one sampler step on a 512x512 latent of one image (see ``templates.bind``).
    """

    seconds_per_unit: float = 0.05
    overhead_s: float = 3.0
    default_dph: float = 0.5  # when the pool has no instance to take the price from


class Estimate(NamedTuple):
    """Expected seconds on a GPU, the $/h assumed, and the resulting cost."""

    seconds: float
    dph: float
    cost: float


def pool_dph(pool: PoolView | None) -> float | None:
    """The $/h a job will likely pay: the mean of instances that are or will be claimable."""
    if pool is None:
        return None
    prices = [i.dph for i in pool.instances.values() if i.phase in ("ready", "claimed", "loading") and i.dph]
    if not prices:
        prices = [i.dph for i in pool.instances.values() if i.phase == "renting" and i.dph]
    return sum(prices) / len(prices) if prices else None


def estimate(units: float, model: CostModel, dph: float | None) -> Estimate:
    """What a job of ``units`` work units should take and cost."""
    seconds = model.overhead_s + max(units, 0.0) * model.seconds_per_unit
    price = dph if dph is not None else model.default_dph
    return Estimate(round(seconds, 3), price, round(price * seconds / 3600.0, 6))
