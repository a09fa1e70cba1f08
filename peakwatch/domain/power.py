"""Power meters (``register: power``): energy integrated from power samples.

Energy is integrated by the trapezoid rule between successive samples, ``(p0 + p1) / 2 × Δt`` over
``[t0, t1)``, and flagged *estimated*. Samples further apart than ``MAX_POWER_GAP_MS`` give no energy (a
``gap`` event; nothing says what happened in between) and the baseline moves on. A sample above
``GLITCH_MARGIN`` × rated, or negative, is ignored (a glitch). Without ``rated_kw`` the rate cap is
``RATE_CEILING`` (``peakwatch.domain.units``).
"""

from __future__ import annotations

from peakwatch.domain.models import MeterFlag
from peakwatch.domain.outcomes import (
    ACCEPTED,
    GLITCH_MARGIN,
    MS_PER_HOUR,
    Note,
    Outcome,
    RegisterState,
    old_reading,
)
from peakwatch.domain.spreading import spread

MAX_POWER_GAP_MS = 15 * 60_000
"""Power samples further apart than this are not integrated: a straight line over a longer silence
would be invented energy (and 15 minutes is the demand interval)."""


def trapezoid_kwh(p0_kw: float, p1_kw: float, dt_ms: int) -> float:
    """Energy of a straight line from ``p0_kw`` to ``p1_kw`` over ``dt_ms``: ``(p0 + p1) / 2 × Δt_h``."""
    return (p0_kw + p1_kw) * dt_ms / (2 * MS_PER_HOUR)


def account_power(
    register: RegisterState, ts: int, value: float, pending: dict[int, float], size_ms: int, notes: list[Note]
) -> Outcome:
    """One power sample: the trapezoid since the last one, unless a glitch or a gap says nothing."""
    last_value = register.last_value
    last_ts = register.last_ts
    if last_value is not None and ts <= last_ts:
        return old_reading(ts, value, last_ts, last_value, "the last power sample", notes)
    if value < 0 or value > register.rate_cap:
        why = "is negative" if value < 0 else f"is above {GLITCH_MARGIN} x rated {register.rated} kW"
        notes.append((MeterFlag.GLITCH, ts, f"power sample {value} kW {why}: ignored", last_value, value))
        return ACCEPTED
    if last_value is None:
        notes.append((MeterFlag.FIRST, ts, "first power sample: no energy yet", None, value))
    else:
        dt = ts - last_ts
        if dt > MAX_POWER_GAP_MS:
            notes.append(
                (
                    MeterFlag.GAP,
                    ts,
                    f"no power sample for {dt / 60_000:g} min (more than {MAX_POWER_GAP_MS // 60_000}): "
                    f"no energy from {last_ts}",
                    last_value,
                    value,
                )
            )
        else:
            spread(pending, last_ts, ts, trapezoid_kwh(last_value, value, dt), size_ms)
    register.last_ts = ts
    register.last_value = value
    return ACCEPTED
