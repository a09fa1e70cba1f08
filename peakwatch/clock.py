"""Wall-clock time as peakwatch stores it: integer epoch milliseconds, in one place."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
