"""Durations as people write them in configuration (``30s``, ``5m``, ``4h``), in one place."""

from __future__ import annotations

import re

from peakwatch.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*\Z")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(value: str | int | float) -> int:
    """``"5m"`` -> 300000. Bare numbers are seconds."""
    if isinstance(value, int | float):
        return int(value * 1000)
    match = _DURATION.match(value)
    if not match:
        raise ConfigError(f"invalid duration {value!r}: use e.g. 30s, 5m, 1h")
    return int(float(match.group(1)) * _DURATION_MS[match.group(2)])
