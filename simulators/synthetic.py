"""Synthetic meters for load tests: many meters per site, flat loads with a little noise.

No physics and no balance: the point is volume with realistic payloads (a cumulative ``energy_kwh``
register and ``power_kw``), cheap enough to generate that the simulator is never the bottleneck.
"""

from __future__ import annotations

from typing import Final

from peakwatch.domain.models import Carrier, Role
from simulators.meters import MeterBank, MeterSample, MeterSpec, SiteInfo
from simulators.randomness import derived_rng


def synthetic_meter_ids(count: int) -> list[str]:
    return [f"load-{i:04d}" for i in range(1, count + 1)]


class SyntheticSimulator:
    """``meters`` process-load meters (``load-0001`` ...) each drawing a constant base load (5-50 kW,
    seeded) with ±2 % white noise per step."""

    def __init__(self, info: SiteInfo, *, meters: int, seed: int, noise: float = 0.02) -> None:
        if meters < 1:
            raise ValueError("a synthetic site needs at least one meter")
        self.info: Final = info
        self.meters: Final = tuple(
            MeterSpec(mid, Carrier.ELECTRICITY, Role.PROCESS_LOAD) for mid in synthetic_meter_ids(meters)
        )
        setup = derived_rng(seed, info.id, "synthetic")
        self._base_kw = {m.id: setup.uniform(5.0, 50.0) for m in self.meters}
        initial = {m.id: round(setup.uniform(100.0, 50_000.0), 2) for m in self.meters}
        self.bank = MeterBank(info.id, self.meters, initial)
        self._noise = noise
        self._rng = derived_rng(seed, info.id, "synthetic-noise")

    def step(self, ts_ms: int) -> list[MeterSample]:
        gauss = self._rng.gauss
        noise = self._noise
        rates = {mid: max(base * (1.0 + noise * gauss(0.0, 1.0)), 0.0) for mid, base in self._base_kw.items()}
        return self.bank.record(ts_ms, rates)
