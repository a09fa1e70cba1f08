"""From meter registers to interval amounts: differencing, reset and rollover, splitting over windows.

Rules (docs/kpis.md repeats them for operators):

* A cumulative register is differenced: ``delta = value - previous``.
* A negative delta is never negative energy. When ``register_max`` (the register's modulus, e.g.
  1,000,000 for a six-digit kWh register that shows 999,999.99 and then 0) is configured, the
  previous value was in the top 10 % of the register and the new one is in the bottom 10 %, it is a
  **rollover**: ``delta = register_max - previous + value``. Otherwise, a drop to at most 10 % of
  the previous value is a **reset** (the register restarted at zero): ``delta = value``. Any other
  drop is a **register drop** (a replaced meter, a glitch, a register set by hand): it moves the
  baseline and counts no energy, because nothing justifies any particular amount. All three are
  flagged.
* An interval's amount is spread linearly over the windows the interval ``[t0, t1)`` overlaps, so a
  meter reporting every 5 minutes still fills 1-minute windows in proportion to time.
"""

from __future__ import annotations

from peakwatch.domain.models import MeterFlag

ROLLOVER_ZONE = 0.1
"""A rollover goes from the top ``ROLLOVER_ZONE`` share of ``register_max`` to the bottom one."""
RESET_ZONE = 0.1
"""A drop to at most this share of the previous value is a reset to zero; a smaller drop is not."""


def register_delta(
    previous: float, value: float, register_max: float | None
) -> tuple[float, MeterFlag | None]:
    """The amount between two successive register values, never negative, with the event if any."""
    delta = value - previous
    if delta >= 0:
        return delta, None
    if (
        register_max is not None
        and previous >= (1.0 - ROLLOVER_ZONE) * register_max
        and value < ROLLOVER_ZONE * register_max
    ):
        return (register_max - previous) + max(value, 0.0), MeterFlag.ROLLOVER
    if value <= RESET_ZONE * previous:
        return max(value, 0.0), MeterFlag.RESET
    return 0.0, MeterFlag.REGISTER_DROP


def window_start_ms(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window (aligned to the epoch) that contains ``ts_ms``."""
    return ts_ms - ts_ms % size_ms


def split_interval(t0_ms: int, t1_ms: int, amount: float, size_ms: int) -> list[tuple[int, float]]:
    """Spread ``amount`` consumed over ``[t0_ms, t1_ms)`` linearly across tumbling windows.

    Returns ``(window_start_ms, share)`` pairs whose shares add up to ``amount`` (the last share takes
    the rounding remainder, so the sum is exact to the float). ``t0_ms == t1_ms`` puts it all in the
    window containing ``t0_ms``.
    """
    if t1_ms <= t0_ms:
        return [(window_start_ms(t0_ms, size_ms), amount)]
    span = t1_ms - t0_ms
    first = window_start_ms(t0_ms, size_ms)
    last = window_start_ms(t1_ms - 1, size_ms)
    if first == last:
        return [(first, amount)]
    parts: list[tuple[int, float]] = []
    assigned = 0.0
    start = first
    while start < last:
        lo = max(start, t0_ms)
        hi = start + size_ms
        share = amount * (hi - lo) / span
        parts.append((start, share))
        assigned += share
        start += size_ms
    parts.append((last, amount - assigned))
    return parts


def interval_window_ms(ts_ms: int, size_ms: int) -> int:
    """Window of an interval-register reading, which measures the period *ending* at ``ts_ms``.

    A reading stamped exactly on a boundary (12:01:00) belongs to the window that ends there (12:00).
    """
    return window_start_ms(ts_ms - 1, size_ms)
