"""Meter replacements: the energy between two readings that a recorded replacement splits.

A replacement (recorded with the old meter's final and the new meter's initial register) at ``ts_r``
between two readings replaces differencing for that pair: ``old_final - previous`` over
``[previous ts, ts_r)`` plus ``value - new_initial`` over ``[ts_r, ts)``. A negative part (a typo in the
record) counts 0 and says so. Replacements are not glitch-checked: an operator entered them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from peakwatch.domain.models import MeterReplacement


class ReplacementPart(NamedTuple):
    """One stretch of a pair of readings split by replacements: ``raw`` is the register difference,
    ``amount`` what counts (``raw``, or 0 when ``raw`` is negative)."""

    t0_ms: int
    t1_ms: int
    raw: float
    amount: float


def across_replacements(
    t_prev: int, v_prev: float, t: int, v: float, replacements: Sequence[MeterReplacement]
) -> list[ReplacementPart]:
    """The energy between readings ``(t_prev, v_prev)`` and ``(t, v)`` across the meter replacements
    in ``replacements`` (each with ``t_prev < ts_ms <= t``, oldest first).

    With one replacement at ``ts_r``: ``old_final - v_prev`` over ``[t_prev, ts_r)`` and ``v - new_initial``
    over ``[ts_r, t)``. Several replacements chain: between two of them the installed meter counted
    ``next.old_final - previous.new_initial``. A negative difference counts 0.
    """
    parts: list[ReplacementPart] = []
    t0, start = t_prev, v_prev
    for rep in replacements:
        raw = rep.old_final - start
        parts.append(ReplacementPart(t0, rep.ts_ms, raw, max(raw, 0.0)))
        t0, start = rep.ts_ms, rep.new_initial
    raw = v - start
    parts.append(ReplacementPart(t0, t, raw, max(raw, 0.0)))
    return parts


def describe_part(p: ReplacementPart, where: str, register: float) -> str:
    """What one side of a replacement counted, for its event."""
    if p.raw < 0:
        return f"{where} {register} gives {p.raw}, negative: counted 0"
    return f"{where} {register}, counted {p.raw}"
