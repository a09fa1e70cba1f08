"""Whether a meter is reporting, judged on the wall clock (when readings *arrive*), not on event time:
a meter that replays an old backlog is alive, one whose clock is right but whose link is dead is not."""

from __future__ import annotations

from typing import Final

from api.schemas.meters import MeterHealth

STALE_AFTER_MS: Final = 300_000
"""A meter not heard from for longer than this (5 min) is ``stale``."""


def meter_health(last_seen_ms: int | None, now_ms: int, stale_after_ms: int = STALE_AFTER_MS) -> MeterHealth:
    if last_seen_ms is None:
        return "never"
    return "stale" if now_ms - last_seen_ms > stale_after_ms else "ok"
