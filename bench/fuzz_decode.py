"""Coverage-guided fuzzing of the payload decoder with atheris (libFuzzer), the long run of issue #7.

Every input is decoded as an MQTT payload for a registered meter; the run fails on any exception and on
any broken invariant: every element of the message ends up as exactly one reading or one dead letter,
readings are finite, in the time window, non-negative for registers, and every dead letter carries a
known reason and a detail. The CI-sized version of the same properties is hypothesis-based
(tests/unit/test_collector_decode_properties.py).

    .venv/bin/pip install atheris
    .venv/bin/python -m bench.fuzz_decode -runs=1000000 -max_len=2048

Extra arguments go to libFuzzer (``-runs``, ``-max_len``, ``-timeout``, a corpus directory ...).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from collector.decode import DecodeContext, decode_message
    from peakwatch.config import Registry
    from peakwatch.domain.reasons import Reason

NOW = 1_767_225_600_000
TOPIC = "telemetry/park-1/grid-in"
CTX = DecodeContext(
    registry=Registry.from_text(
        """
sites:
  - id: park-1
    name: Fuzz park
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
"""
    )
)
REASONS = frozenset(Reason)
REGISTERS = ("energy_kwh", "volume_m3", "heat_gj", "mass_t", "count")
SEEDS = (
    b'{"ts": 1767225600000, "energy_kwh": 12.5, "power_kw": 3.0}',
    b'[{"ts": "2026-01-01T08:00:00+08:00", "energy_mwh": 0.5}, {"ts": 1767225600000, "power_w": 10}]',
    b'{"ts": 1767225600000, "volume_l": 1.0, "heat_mj": 2, "mass_kg": 3, "count": 4}',
)


def elements(payload: bytes) -> int:
    try:
        doc: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return 1
    return len(doc) if isinstance(doc, list) and doc else 1


def check(data: bytes) -> None:
    result = decode_message(TOPIC, data, NOW, CTX)
    for r in result.readings:
        assert NOW - CTX.max_age_ms <= r.ts_ms <= NOW + CTX.max_future_ms, r
        values = (r.energy_kwh, r.power_kw, r.volume_m3, r.heat_gj, r.mass_t, r.count)
        assert any(v is not None for v in values), r
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in values), r
        assert all((getattr(r, name) or 0.0) >= 0.0 for name in REGISTERS), r
    for letter in result.dead_letters:
        assert letter.reason in REASONS, letter
        assert letter.detail, letter
    # the whole message is dead-lettered at once when it cannot be split into elements
    accounted = len(result.readings) + len(result.dead_letters)
    assert accounted in (elements(data), 1) or (result.dead_letters and not result.readings), (data, result)


def main() -> None:
    for seed in SEEDS:
        check(seed)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
