"""Throughput of the on-disk spool bus (``peakwatch.bus.spool``): one task publishes batches while
another polls and commits, as the collector and the processor do in ``peakwatch up`` (no MQTT, no
database). Prints readings/s over publish + poll + commit for each mode.

    .venv/bin/python -m bench.spool [--readings 2000000] [--batch 500] [--modes memory,disk,backlog,fsync]
                                    [--dir DIR]

Modes:

* ``memory``: fsync off, the consumer keeps up: records are written to the log and handed out from the
  in-memory queue (the steady state).
* ``disk``: fsync off, ``memory_items=0``: every record is also read back and decoded from the log
  (what a consumer that fell behind pays).
* ``backlog``: fsync off; everything is published first with no consumer (the database is down), then
  drained (it came back): publish rate and replay rate are printed separately.
* ``fsync``: ``fsync=True``: each publish waits for its record to reach the device.

The spool lives in a fresh directory under ``--dir`` (default: the system's temp directory; put it on
the disk you mean to measure), removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from peakwatch.bus import SpoolBus
from peakwatch.domain.models import Reading, ReadingBatch

START_MS = 1_714_521_600_000


def make_pool(batch: int, sites: int, meters: int) -> list[ReadingBatch]:
    """Distinct batches of one site each: every meter's cumulative kWh register and power, one reading
    per meter per second, as the simulators' fleets send them. Published round-robin."""
    pool: list[ReadingBatch] = []
    for s in range(sites):
        site_id = f"site-{s:02d}"
        readings: list[Reading] = []
        second = 0
        while len(readings) < batch:
            for m in range(meters):
                power = 40.0 + (m * 7.3) % 55 + (second % 60) * 0.01
                readings.append(
                    Reading(
                        site_id=site_id,
                        meter_id=f"meter-{m:03d}",
                        ts_ms=START_MS + second * 1000,
                        energy_kwh=125_000.0 + m * 1_000.0 + second * power / 3600,
                        power_kw=power,
                    )
                )
                if len(readings) == batch:
                    break
            second += 1
        pool.append(ReadingBatch(site_id, readings))
    return pool


@dataclass
class Result:
    mode: str
    readings: int
    seconds: float
    record_bytes: float
    publish_ms: list[float]
    peak_depth: int
    replay_seconds: float | None = None


async def run_mode(
    mode: str, directory: Path, pool: list[ReadingBatch], n_batches: int, poll_max: int
) -> Result:
    bus = SpoolBus(directory, fsync=mode == "fsync", memory_items=0 if mode == "disk" else 10_000)
    total = sum(len(pool[i % len(pool)].readings) for i in range(n_batches))
    publish_ms: list[float] = []
    peak = 0
    # header (8 bytes) + tag (1 byte) + msgpack, as the spool writes it
    record_bytes = sum(len(msgspec.msgpack.encode(pool[i % len(pool)])) + 9 for i in range(n_batches))

    async def publisher() -> None:
        nonlocal peak
        for i in range(n_batches):
            t0 = time.perf_counter()
            await bus.publish(pool[i % len(pool)])
            publish_ms.append((time.perf_counter() - t0) * 1000)
            peak = max(peak, bus.depth_bytes)
            # A publish with room to spare does not suspend; the collector goes back to the event loop
            # between hand-overs (MQTT reads, decoding), which is when the processor polls.
            await asyncio.sleep(0)

    async def consumer() -> None:
        received = 0
        while received < total:
            polled = await bus.poll(poll_max, timeout_s=1.0)
            received += polled.reading_count
            await bus.commit(polled)

    replay: float | None = None
    started = time.perf_counter()
    if mode == "backlog":
        await publisher()
        published = time.perf_counter()
        await consumer()
        replay = time.perf_counter() - published
    else:
        await asyncio.gather(publisher(), consumer())
    elapsed = time.perf_counter() - started
    assert bus.depth_items == 0, "the consumer left records uncommitted"
    await bus.close()
    return Result(mode, total, elapsed, record_bytes / total, publish_ms, peak, replay)


def report(r: Result, batch: int) -> str:
    ms = sorted(r.publish_ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    rate = r.readings / r.seconds
    line = (
        f"{r.mode:8s} {r.readings:,} readings in {r.seconds:6.2f} s: {rate:>11,.0f} readings/s "
        f"({rate / batch:,.0f} batches/s); {r.record_bytes:.1f} bytes/reading on disk; "
        f"publish p50 {statistics.median(ms):.3f} ms, p99 {p99:.3f} ms; "
        f"peak depth {r.peak_depth / 2**20:.1f} MiB"
    )
    if r.replay_seconds is not None:
        publish_s = r.seconds - r.replay_seconds
        line += (
            f"\n{'':8s} publish alone {r.readings / publish_s:,.0f} readings/s, "
            f"replay alone {r.readings / r.replay_seconds:,.0f} readings/s"
        )
    return line


async def main_async(args: argparse.Namespace) -> None:
    pool = make_pool(args.batch, args.sites, args.meters)
    n_batches = max(1, args.readings // args.batch)
    print(
        f"spool bus: {n_batches * args.batch:,} readings in batches of {args.batch} "
        f"({args.sites} sites x {args.meters} meters), polls of up to {args.poll:,} readings, dir {args.dir}"
    )
    for mode in args.modes.split(","):
        if mode not in ("memory", "disk", "backlog", "fsync"):
            raise SystemExit(f"unknown mode {mode!r}")
        directory = Path(tempfile.mkdtemp(prefix=f"peakwatch-bench-spool-{mode}-", dir=args.dir))
        try:
            result = await run_mode(mode, directory, pool, n_batches, args.poll)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(report(result, args.batch), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=500, help="readings per ReadingBatch")
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--poll", type=int, default=50_000, help="max_readings per poll (the processor's)")
    parser.add_argument("--modes", default="memory,disk,backlog,fsync")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
