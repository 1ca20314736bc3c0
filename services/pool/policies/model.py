"""The outside world of a simulation: boot times, failed rentals and $/h (defaults or fitted)."""

from __future__ import annotations

import random
import statistics

import msgspec


class BootModel(msgspec.Struct, frozen=True, kw_only=True):
    """Boot time uniform in [min, max] seconds; ``failure_rate`` of rentals never become Ready."""

    boot_min_s: float = 120.0
    boot_max_s: float = 360.0
    failure_rate: float = 0.10
    dph: float = 0.40  # $/h of the offers rented
    seed: int = 1

    def draw(self, rng: random.Random) -> tuple[float, bool]:
        """(boot seconds, fails) of one rental; a failure shows after a random part of the boot."""
        boot = rng.uniform(self.boot_min_s, self.boot_max_s)
        fails = rng.random() < self.failure_rate
        return (boot * rng.uniform(0.3, 1.0) if fails else boot), fails

    def describe(self) -> str:
        """One line for the report."""
        return (f"boot {self.boot_min_s / 60:.1f}-{self.boot_max_s / 60:.1f} min, "
                f"{self.failure_rate * 100:.0f}% failed rentals, ${self.dph:.2f}/h")


def fit(boot_s: list[float], failed: int, rented: int, dph: list[float], *,
        default: BootModel = BootModel()) -> BootModel:
    """A boot model from observed boots (rental to Ready), failures and offer prices; defaults where
    too little was observed (under 3 boots, under 10 rentals, no prices)."""
    model = default
    if len(boot_s) >= 3:
        qs = statistics.quantiles(sorted(boot_s), n=20, method="inclusive")  # p5 and p95, within the data
        model = msgspec.structs.replace(model, boot_min_s=max(1.0, qs[0]), boot_max_s=max(qs[-1], qs[0] + 1.0))
    if rented >= 10:
        model = msgspec.structs.replace(model, failure_rate=min(0.9, failed / rented))
    if dph:
        model = msgspec.structs.replace(model, dph=statistics.median(dph))
    return model
