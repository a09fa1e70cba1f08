"""Meter status from the wall-clock time it was last heard from."""

from __future__ import annotations

import pytest

from api.meter_health import STALE_AFTER_MS, meter_health

NOW = 1_717_200_000_000


@pytest.mark.parametrize(
    ("last_seen_ms", "expected"),
    [
        (None, "never"),
        (NOW, "ok"),
        (NOW - 1_000, "ok"),
        (NOW - STALE_AFTER_MS, "ok"),  # exactly 5 min: not yet "longer than" 5 min
        (NOW - STALE_AFTER_MS - 1, "stale"),
        (NOW - 86_400_000, "stale"),
        (NOW + 2_000, "ok"),  # clock skew between API and processor hosts
    ],
)
def test_meter_health(last_seen_ms: int | None, expected: str) -> None:
    assert STALE_AFTER_MS == 300_000
    assert meter_health(last_seen_ms, NOW) == expected
