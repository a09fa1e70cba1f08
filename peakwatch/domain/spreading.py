"""Spreading an amount over the tumbling windows of the interval it was measured in.

Both the live path and re-derivation add amounts through ``spread``, in the same order, so their float
sums are identical.

* **Long gap**: an interval longer than ``LONG_GAP_MS`` (a meter silent for over a day) is spread in
  ``GAP_BUCKET_MS`` (15-minute) buckets instead of minutes: each bucket's linear share goes to the
  first minute of the bucket inside the interval, so a gap costs at most 96 ledger rows a day and
  every 15-minute, hourly, daily and monthly total stays the exact linear share (every zone offset
  in use is a multiple of 15 minutes).
* ``split_interval`` scales by the fraction of the interval (never ``amount × ms``), so even
  ``float64``'s extremes split without overflow.
"""

from __future__ import annotations

import math

LONG_GAP_MS = 86_400_000
"""An interval longer than this is spread in ``GAP_BUCKET_MS`` buckets, not minutes: a meter silent for
46 days would otherwise write 66,000 ledger rows, each a minute of invented detail."""
GAP_BUCKET_MS = 15 * 60_000
"""Bucket of a long gap: every zone offset in use is a multiple of 15 minutes, so each bucket lies
inside one 15-minute, hourly, daily and monthly window of the site's zone."""


def window_start_ms(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window (aligned to the epoch) that contains ``ts_ms``."""
    return ts_ms - ts_ms % size_ms


def split_interval(t0_ms: int, t1_ms: int, amount: float, size_ms: int) -> list[tuple[int, float]]:
    """Spread ``amount`` consumed over ``[t0_ms, t1_ms)`` linearly across tumbling windows.

    Returns ``(window_start_ms, share)`` pairs whose shares, added in order, give exactly ``amount`` (each
    share is a multiple of ``amount``'s ulp, the last one the remainder); every share is finite for any
    finite ``amount``, up to float64's maximum. ``t0_ms == t1_ms`` puts it all in the window containing
    ``t0_ms``. An interval longer than ``LONG_GAP_MS`` is split in ``GAP_BUCKET_MS``
    buckets, each share going to the first window of its bucket inside the interval (the long-gap rule).
    """
    if t1_ms <= t0_ms:
        return [(window_start_ms(t0_ms, size_ms), amount)]
    span = t1_ms - t0_ms
    first = window_start_ms(t0_ms, size_ms)
    if first == window_start_ms(t1_ms - 1, size_ms):
        return [(first, amount)]
    step = GAP_BUCKET_MS if span > LONG_GAP_MS and GAP_BUCKET_MS % size_ms == 0 else size_ms
    last = window_start_ms(t1_ms - 1, step)
    parts: list[tuple[int, float]] = []
    ulp = math.ulp(amount)
    units = amount / ulp  # exact: an integer below 2**53 (amount × fraction would round subnormals up)
    assigned = 0.0
    start = window_start_ms(t0_ms, step)
    while start < last:
        lo = max(start, t0_ms)
        hi = start + step
        # the fraction first (amount × ms overflows near float max), then truncated to amount's ulp grid:
        # every partial sum is then a float exactly and never beyond amount, so the remainder is exact and
        # has amount's sign (rounding up could over-assign a tiny amount and leave a negative remainder)
        share = math.trunc(units * ((hi - lo) / span)) * ulp
        parts.append((max(start, first), share))
        assigned += share
        start = hi
    parts.append((max(last, first), amount - assigned))
    return parts


def interval_window_ms(ts_ms: int, size_ms: int) -> int:
    """Window of an interval-register reading, which measures the period *ending* at ``ts_ms``.

    A reading stamped exactly on a boundary (12:01:00) belongs to the window that ends there (12:00).
    """
    return window_start_ms(ts_ms - 1, size_ms)


def spread(pending: dict[int, float], t0_ms: int, t1_ms: int, amount: float, size_ms: int) -> None:
    """Add ``amount`` over ``[t0_ms, t1_ms)`` to ``pending`` (window start -> amount) in the one order
    both the live path and re-derivation use, so their float sums are identical."""
    w = t0_ms - t0_ms % size_ms
    if t1_ms <= w + size_ms:
        pending[w] = pending.get(w, 0.0) + amount
    else:
        for ws, share in split_interval(t0_ms, t1_ms, amount, size_ms):
            pending[ws] = pending.get(ws, 0.0) + share
