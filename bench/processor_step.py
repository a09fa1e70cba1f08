"""Micro-benchmark of the processor's CPU path: synthetic readings through MeterTracker + SiteWindows +
KPIs + rules (``Processor.step``), no bus and no store. Prints readings/s.

    .venv/bin/python -m bench.processor_step [--readings 1000000] [--sites 20] [--meters 50] [--batch 50]
        [--every-ms 1000] [--silent-for-ms 0] [--poll-ms 0]

Each meter reports a cumulative kWh register every ``--every-ms`` of event time (15000 with sites of
100 meters is the scaling bench's fleet: compare the readings/s of ``--sites 10`` and ``--sites 1000``);
batches hold ``--batch`` readings of one site; one step takes ``--step`` readings (like one bus poll).
Windows close as event time moves. ``--silent-for-ms`` adds a staleness rule watching every meter (the
demo registry's ``meter_silent``); the step's clock is the readings' event time, or advances ``--poll-ms``
per poll (a pipeline keeping up polls about once a second).
"""

from __future__ import annotations

import argparse
import time

from peakwatch.bus import MemoryBus, Polled
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Carrier, Meter, Reading, ReadingBatch, Role, Site, SiteKind
from peakwatch.domain.rules import StalenessRule, ThresholdRule
from processor.service import Processor

ROLES = (Role.FACILITY_TOTAL, Role.IT_LOAD, Role.COOLING, Role.LIGHTING, Role.UPS_LOSSES)


class _NoStore:
    """``step`` never touches the store; this satisfies the constructor."""

    async def write(self, batch: object) -> None:
        raise NotImplementedError


def build(sites: int, meters: int, silent_for_ms: int = 0) -> Registry:
    site_list = [Site(id=f"s{i}", name=f"site {i}", kind=SiteKind.DATA_CENTRE) for i in range(sites)]
    meter_list = [
        Meter(id=f"m{j}", site_id=s.id, carrier=Carrier.ELECTRICITY, role=ROLES[j % len(ROLES)])
        for s in site_list
        for j in range(meters)
    ]
    rules = [ThresholdRule(name="pue", kpi="pue", op=">", threshold=1.5, for_ms=300_000)]
    stale = [StalenessRule(name="meter_silent", silent_ms=silent_for_ms)] if silent_for_ms else []
    return Registry(site_list, meter_list, rules, staleness_rules=stale)


def make_polls(
    n: int, sites: int, meters: int, batch: int, step: int, start_ms: int, every_ms: int = 1000
) -> tuple[list[Polled], list[int]]:
    """Polls of ``step`` readings and the event time (ms) each one reaches."""
    polls: list[Polled] = []
    clock: list[int] = []
    current: list[ReadingBatch] = []
    in_poll = 0
    made = 0
    second = 0
    while made < n:
        ts = start_ms + second * every_ms
        for i in range(sites):
            site_id = f"s{i}"
            readings = [
                Reading(site_id=site_id, meter_id=f"m{j}", ts_ms=ts, energy_kwh=1000.0 + second * (1 + j % 7))
                for j in range(meters)
            ]
            for k in range(0, len(readings), batch):
                chunk = readings[k : k + batch]
                current.append(ReadingBatch(site_id, chunk))
                in_poll += len(chunk)
                made += len(chunk)
                if in_poll >= step:
                    polls.append(Polled(batches=current))
                    clock.append(ts)
                    current, in_poll = [], 0
        second += 1
    if current:
        polls.append(Polled(batches=current))
        clock.append(start_ms + second * every_ms)
    return polls, clock


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50, help="readings per ReadingBatch")
    parser.add_argument("--step", type=int, default=50_000, help="readings per poll")
    parser.add_argument("--every-ms", type=int, default=1000, help="event time between a meter's readings")
    parser.add_argument("--silent-for-ms", type=int, default=0, help="a staleness rule over every meter")
    parser.add_argument("--poll-ms", type=int, default=0, help="wall time per poll (0: event time)")
    args = parser.parse_args()

    registry = build(args.sites, args.meters, args.silent_for_ms)
    settings = Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000)
    start_ms = 1_700_000_000_000
    polls, clock = make_polls(
        args.readings, args.sites, args.meters, args.batch, args.step, start_ms, args.every_ms
    )
    if args.poll_ms:
        clock = [start_ms + (i + 1) * args.poll_ms for i in range(len(polls))]
    processor = Processor(MemoryBus(), _NoStore(), registry, settings)  # type: ignore[arg-type]
    total = sum(p.reading_count for p in polls)

    windows = stored = 0
    t0 = time.perf_counter()
    for polled, now_ms in zip(polls, clock, strict=True):
        out = processor.step(polled, now_ms)
        windows += len(out.kpi_windows)
        stored += len(out.readings)
    elapsed = time.perf_counter() - t0
    print(
        f"{total} readings ({args.sites} sites x {args.meters} meters, batches of {args.batch}, "
        f"polls of {args.step}) in {elapsed:.3f} s: {total / elapsed:,.0f} readings/s; "
        f"{windows} windows closed, {stored} readings to store"
    )


if __name__ == "__main__":
    main()
