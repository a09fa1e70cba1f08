"""Micro benchmark of the collector's payload decoder on one core (no broker, no bus).

Run from the repository root: ``.venv/bin/python -m bench.decode [--seconds 2]``.
Prints readings/s and messages/s for the shapes devices send: single readings, 50-reading batches
(epoch ms and RFC 3339 time stamps), and a batch with one bad element (the slow path).
Targets: >= 300k readings/s for 50-reading batches, >= 60k msg/s for single readings.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import msgspec

from collector.decode import DecodeContext, decode_message
from peakwatch.config import Registry

TOPIC = "telemetry/dc-xiangjiang/it"


def _payloads(now_ms: int) -> dict[str, tuple[list[bytes], int]]:
    """name -> (messages, readings per message)."""
    single = [
        msgspec.json.encode({"ts": now_ms - i * 1000, "energy_kwh": 1234.5 + i, "power_kw": 42.1})
        for i in range(1000)
    ]
    batch_ms = [
        msgspec.json.encode(
            [
                {
                    "ts": now_ms - (j * 50 + i) * 1000,
                    "energy_kwh": 1000.0 + i * 0.25,
                    "power_kw": 40.0 + i % 7,
                }
                for i in range(50)
            ]
        )
        for j in range(20)
    ]
    cst = timezone(timedelta(hours=8))

    def stamp(age_s: int) -> str:
        return datetime.fromtimestamp(now_ms / 1000 - age_s, cst).isoformat(timespec="milliseconds")

    batch_rfc = [
        msgspec.json.encode(
            [{"ts": stamp(j * 50 + i), "energy_mwh": 1.0 + i, "power_w": 40_000.0} for i in range(50)]
        )
        for j in range(20)
    ]
    bad = [
        msgspec.json.encode(
            [
                *[{"ts": now_ms - i * 1000, "energy_kwh": 1.0 + i} for i in range(49)],
                {"ts": now_ms, "energy_kwh": "oops"},
            ]
        )
        for _ in range(20)
    ]
    return {
        "single reading (epoch ms)": (single, 1),
        "50-reading batch (epoch ms)": (batch_ms, 50),
        "50-reading batch (RFC 3339, MWh/W)": (batch_rfc, 50),
        "50-element batch, 1 bad (slow path)": (bad, 50),
    }


def _measure(fn: Callable[[bytes], object], messages: list[bytes], seconds: float) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for message in messages:
            fn(message)
        count += len(messages)
        if time.perf_counter() >= deadline:
            return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case")
    args = parser.parse_args()
    ctx = DecodeContext(registry=Registry.bundled_demo())
    now_ms = time.time_ns() // 1_000_000
    for name, (messages, per_message) in _payloads(now_ms).items():

        def run(payload: bytes) -> object:
            return decode_message(TOPIC, payload, now_ms, ctx)

        sample = decode_message(TOPIC, messages[0], now_ms, ctx)
        assert len(sample.readings) + len(sample.dead_letters) == per_message, (name, sample)
        count, elapsed = _measure(run, messages, args.seconds)
        rate = count / elapsed
        print(f"{name:40s} {rate * per_message:>12,.0f} readings/s {rate:>10,.0f} msg/s")


if __name__ == "__main__":
    main()
