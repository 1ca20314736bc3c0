"""The simulator's market on disk: rentals, offers and the next instance id survive a restart.

``stoker up`` runs the simulator with its data dir, so a restarted stack finds the instances it
rented still there (not "provider lost") and a new rental never gets the id of an old one.
Written atomically (temp file + rename) whenever the market changed. Each rental's ComfyUI port is
kept too: a restarted simulator starts the host on the same port when it is free, so the URL the
pool recorded for a Ready instance keeps working.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgspec

from services.pool.sim.config import ForcedFaults
from services.pool.sim.instance import Instance
from services.pool.sim.market import Market
from services.pool.sim.offers import Host

log = logging.getLogger("stoker.sim")
FORMAT = 1


class Saved(msgspec.Struct, kw_only=True):
    """Everything of a market that is not derived from its config."""

    format: int = FORMAT
    offers: list[dict[str, Any]]
    hosts: list[Host]
    taken: dict[int, int]
    dead_machines: list[int]
    instances: list[Instance]
    next_id: int
    forced: ForcedFaults


def dump(market: Market) -> bytes:
    """The market's state as JSON."""
    saved = Saved(offers=list(market._offers.values()), hosts=list(market.hosts.values()),
                  taken=dict(market._taken), dead_machines=sorted(market._dead_machines),
                  instances=list(market.instances.values()), next_id=market._next_id,
                  forced=market.forced)
    return msgspec.json.encode(saved)


def restore(market: Market, data: bytes) -> None:
    """Put a saved state back into ``market`` (its config and clock stay)."""
    saved = msgspec.json.decode(data, type=Saved)
    if saved.format != FORMAT:
        raise ValueError(f"unknown simulator state format {saved.format}")
    market._offers = {o["id"]: o for o in saved.offers}
    market.hosts = {h.host_id: h for h in saved.hosts}
    market._taken = dict(saved.taken)
    market._dead_machines = set(saved.dead_machines)
    market.instances = {i.id: i for i in saved.instances}
    market._next_id = max(saved.next_id, max(market.instances, default=0) + 1)
    market.forced = saved.forced


class MarketFile:
    """Loads the market at start and saves it when it changed."""

    def __init__(self, path: Path, market: Market) -> None:
        self.path, self.market = path, market
        self._last = b""

    def load(self) -> bool:
        """Restore the saved market, if there is one; False when starting fresh."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            restore(self.market, data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            broken = self.path.with_suffix(".broken")
            os.replace(self.path, broken)
            log.warning("simulator state %s is unreadable (%s); kept as %s, starting fresh", self.path, exc, broken)
            return False
        self._last = data
        log.info("simulator market restored from %s (%d rentals)", self.path, len(self.market.instances))
        return True

    def save(self) -> None:
        """Write the market if it changed since the last save."""
        data = dump(self.market)
        if data == self._last:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._last = data
