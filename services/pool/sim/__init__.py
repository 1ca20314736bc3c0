"""Built-in Vast.ai marketplace simulator with a ComfyUI-compatible host per rental."""

from services.pool.sim.clock import Clock, FakeClock, SystemClock
from services.pool.sim.config import ForcedFaults, SimConfig
from services.pool.sim.market import Market, MarketError
from services.pool.sim.server import SimServer, start_sim
from services.pool.sim.snapshot import InstanceState, SimState, snapshot

__all__ = ["Clock", "FakeClock", "ForcedFaults", "InstanceState", "Market", "MarketError", "SimConfig", "SimServer",
           "SimState", "SystemClock", "snapshot", "start_sim"]
