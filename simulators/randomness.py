"""Seeded randomness that does not depend on call order across components.

Every component draws from its own ``random.Random`` whose seed is derived from the run seed and a
label (``derive_seed(seed, "park-2", "weather")``), so adding a site or enabling a fault does not
change the numbers any other component produces. ``hash()`` is salted per process, hence blake2b.
"""

from __future__ import annotations

import hashlib
import math
import random


def derive_seed(seed: int, *labels: str) -> int:
    """A 64-bit seed determined by ``seed`` and ``labels`` only (stable across processes)."""
    text = "\x1f".join((str(seed), *labels)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def derived_rng(seed: int, *labels: str) -> random.Random:
    return random.Random(derive_seed(seed, *labels))


class OrnsteinUhlenbeck:
    """Mean-reverting random walk sampled at arbitrary event times.

    Uses the exact discretisation ``x' = x·e^(-dt/τ) + σ·sqrt(1 - e^(-2dt/τ))·N(0, 1)``, so the
    statistics (stationary standard deviation ``sigma``, correlation time ``tau_s``) do not depend on
    the step the simulator runs with: a 1 s and a 60 s step produce the same kind of weather.
    Stepping to the same or an earlier time returns the current value unchanged.
    """

    def __init__(
        self, rng: random.Random, *, sigma: float, tau_s: float, initial: float | None = None
    ) -> None:
        if sigma < 0 or tau_s <= 0:
            raise ValueError("sigma must be >= 0 and tau_s > 0")
        self._rng = rng
        self.sigma = sigma
        self.tau_s = tau_s
        self.value = rng.gauss(0.0, sigma) if initial is None else initial
        self._last_ms: int | None = None

    def at(self, ts_ms: int) -> float:
        if self._last_ms is None:
            self._last_ms = ts_ms
            return self.value
        dt_s = (ts_ms - self._last_ms) / 1000.0
        if dt_s <= 0:
            return self.value
        self._last_ms = ts_ms
        decay = math.exp(-dt_s / self.tau_s)
        self.value = self.value * decay + self.sigma * math.sqrt(1.0 - decay * decay) * self._rng.gauss(
            0.0, 1.0
        )
        return self.value
