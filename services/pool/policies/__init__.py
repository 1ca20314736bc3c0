"""Warm-pool policies (pure): how many instances to keep warm, and for how long, and why.

Each policy turns an ``Observation`` of the pool plus the demand it has seen so far into a
``Decision`` with a human reason. The reconciler (live) and the simulator (``stoker simulate``)
both feed that decision to the real planner as its ``Target``.
"""

from .base import Decision, Observation, Policy
from .catalog import describe, make

__all__ = ["Decision", "Observation", "Policy", "describe", "make"]
