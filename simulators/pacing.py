"""Event time versus wall clock: where a run starts, which steps it has, and when each step is due.

* ``max``: every step as fast as possible.
* ``realtime`` (factor 1): a step stamped ``ts`` is sent when the wall clock reaches ``ts``.
* accelerated (factor F, e.g. 60): F simulated seconds per wall second.

Steps stamped before the run's anchor (the wall clock at start, unless an explicit start time is
given) are due immediately; that is how ``backfill`` works: the last N minutes go out as fast as
possible, then the run continues at its speed. With an explicit start the run's first step is the
anchor, so a past start replays history at the chosen speed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*x?\s*\Z", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Speed:
    factor: float | None
    """Simulated seconds per wall-clock second; ``None`` means as fast as possible."""

    def __post_init__(self) -> None:
        if self.factor is not None and self.factor <= 0:
            raise ValueError("speed factor must be > 0")

    def __str__(self) -> str:
        if self.factor is None:
            return "max"
        return "realtime" if self.factor == 1.0 else f"{self.factor:g}x"


REALTIME = Speed(1.0)
MAX = Speed(None)


def parse_speed(text: str) -> Speed:
    """``realtime`` | ``max`` | ``<factor>x`` (``60x``: one simulated minute per wall second)."""
    word = text.strip().lower()
    if word in ("realtime", "real-time", "real", "live"):
        return REALTIME
    if word in ("max", "fast", "fastest"):
        return MAX
    match = _SPEED.match(word)
    if not match:
        raise ValueError(f"invalid speed {text!r}: use realtime, max or a factor such as 60x")
    return Speed(float(match.group(1)))


def align_down(ts_ms: int, step_ms: int) -> int:
    return ts_ms - ts_ms % step_ms


@dataclass(frozen=True, slots=True)
class Schedule:
    """The event times of a run: ``start_ms + k·step_ms`` until ``end_ms`` (exclusive) or ``count`` steps."""

    start_ms: int
    step_ms: int
    anchor_ms: int
    """Event time that coincides with the start of the run on the wall clock."""
    end_ms: int | None = None
    count: int | None = None

    def times(self) -> Iterator[int]:
        ts = self.start_ms
        k = 0
        while (self.end_ms is None or ts < self.end_ms) and (self.count is None or k < self.count):
            yield ts
            ts += self.step_ms
            k += 1


def plan(
    now_ms: int,
    *,
    step_ms: int,
    start_ms: int | None = None,
    backfill_ms: int = 0,
    duration_ms: int | None = None,
    count: int | None = None,
) -> Schedule:
    """The schedule of a run beginning at wall clock ``now_ms``.

    Steps are aligned to multiples of ``step_ms`` (readings of all meters share timestamps and fall on
    window boundaries). ``duration_ms`` is simulated time from the first step, backfill included.
    """
    if step_ms <= 0:
        raise ValueError("step must be > 0")
    if backfill_ms < 0:
        raise ValueError("backfill must be >= 0")
    if start_ms is not None and backfill_ms:
        raise ValueError("give either a start time or a backfill, not both")
    if count is not None and count < 0:
        raise ValueError("count must be >= 0")
    if start_ms is None:
        first = align_down(now_ms - backfill_ms, step_ms)
        anchor = now_ms
    else:
        first = align_down(start_ms, step_ms)
        anchor = first
    end = None if duration_ms is None else first + duration_ms
    return Schedule(start_ms=first, step_ms=step_ms, anchor_ms=anchor, end_ms=end, count=count)


def due_offset_s(ts_ms: int, schedule: Schedule, speed: Speed) -> float:
    """Seconds after the run started (on the wall clock) at which the step ``ts_ms`` is due; zero or
    negative means now."""
    if speed.factor is None:
        return 0.0
    return (ts_ms - schedule.anchor_ms) / 1000.0 / speed.factor
