"""Scaling: how throughput, CPU per reading, memory and disk grow with the fleet (issue 21, item 3).

    .venv/bin/python -m bench.scaling                  # 1k, 10k, 100k meters, as fast as possible
    .venv/bin/python -m bench.scaling --fleets 1000,10000 --pace both --realtime-minutes 2
    .venv/bin/python -m bench.scaling --fleets '' --backfill-days 30 --backfill-meters 1000

Each fleet is the synthetic fleet of ``simulators.fleet`` in sites of 100 meters, one reading per meter
per 15 s of event time. ``--pace fast`` sends ``--hours`` of event time (240 readings per meter per
hour) as fast as the publishers can; ``--pace realtime`` sends ``--realtime-minutes`` of it at the pace
a real fleet would (meters / 15 readings per second), for the memory a fleet holds in steady state.
``--backfill-days`` adds a month-long history of ``--backfill-meters`` meters sent as 50-reading batches.

Every run is one ``bench.e2e.run_mode`` (a fresh broker and database, the pipeline as ``peakwatch up``
wires it, QoS 1 publishers, figures counted in the database); this module adds the memory of each
process sampled during the run (``bench/memory.py``), the database's size, per-reading costs, a table,
a log-log plot and ``bench/results/scaling-<UTC time>.json``. See bench/README.md and docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
from rich.console import Console

from bench.database import Database, with_database
from bench.e2e import ModeConfig, run_mode
from bench.machine import describe_machine
from bench.memory import MemorySampler
from bench.results import save_results
from bench.scaling_report import plot, table

STEP_MS = 15_000
"""One reading per meter per 15 s of event time."""
METERS_PER_SITE = 100
BATCH = 50
"""Readings per message in the backfill."""
BYTES_PER_READING = {1: 160, BATCH: 70}
"""What a publisher holds per pre-built reading (packet, bytes object, list slots): 24M single readings
took 2 × 1.9 GB of publisher RSS."""
BROKER_BYTES_PER_MESSAGE = 400
"""What mosquitto holds per queued message beyond its payload, roughly: the publishers outrun the
pipeline, and at 100k meters (24M single messages) its RSS reached 9.5 GB."""
console = Console()


@dataclass(frozen=True)
class Run:
    label: str
    kind: str
    """``fast``, ``realtime`` or ``backfill``."""
    meters: int
    cfg: ModeConfig


def plan_runs(args: argparse.Namespace) -> list[Run]:
    """The runs the options ask for, fast ones first (smallest fleet first), then real-time, then backfill."""
    fleets = [int(f) for f in args.fleets.split(",") if f.strip()]
    runs: list[Run] = []
    paces = ["fast", "realtime"] if args.pace == "both" else [args.pace]
    for pace in paces:
        for meters in fleets:
            if pace == "fast":
                steps = round(args.hours * 3_600_000 / STEP_MS)
                runs.append(Run(f"{meters:,} fast", "fast", meters, _cfg(args, meters, steps, 1)))
            else:
                steps = max(1, round(args.realtime_minutes * 60_000 / STEP_MS))
                rate = meters * 1000 / STEP_MS / args.publishers  # each publisher paces its own share
                cfg = _cfg(args, meters, steps, 1, ("--rate", f"{rate:.3f}"))
                runs.append(Run(f"{meters:,} realtime", "realtime", meters, cfg))
    if args.backfill_days:
        meters, steps = args.backfill_meters, round(args.backfill_days * 86_400_000 / STEP_MS)
        label = f"{meters:,} backfill {args.backfill_days:g} d"
        runs.append(Run(label, "backfill", meters, _cfg(args, meters, steps, BATCH)))
    return runs


def _cfg(
    args: argparse.Namespace, meters: int, steps: int, batch: int, options: tuple[str, ...] = ()
) -> ModeConfig:
    per_site = min(METERS_PER_SITE, meters)
    sites = max(1, meters // per_site)
    return ModeConfig(
        mode="single" if batch == 1 else "batched",
        readings=sites * per_site * steps,
        batch=batch,
        sites=sites,
        meters=per_site,
        publishers=args.publishers,
        window=args.window,
        step_ms=STEP_MS,
        drain_timeout_s=args.drain_timeout,
        uvloop=False,
        serial_processor=False,
        publisher_options=options,
    )


def check_memory(runs: list[Run], broker_limit: int) -> None:
    """Refuse a run whose pre-built messages, plus the broker's queue of those the pipeline has not
    taken yet, would not fit in memory: better a clear message than the OOM killer mid-bench (other
    processes share the machine)."""
    available = psutil.virtual_memory().available
    for run in runs:
        readings = run.cfg.steps * run.cfg.sites * run.cfg.meters
        messages = readings // run.cfg.batch
        built = readings * BYTES_PER_READING.get(run.cfg.batch, 70)
        queued = min(broker_limit, built + messages * BROKER_BYTES_PER_MESSAGE)
        if built + queued > 0.8 * available:
            raise SystemExit(
                f"{run.label}: the publishers would hold about {built / 2**30:.1f} GiB of pre-built messages "
                f"and mosquitto up to {queued / 2**30:.1f} GiB of queued ones; {available / 2**30:.1f} GiB "
                "is available: use fewer meters, hours or days (or a smaller --broker-memory-mb)"
            )


async def measure(run: Run, db: Database, workdir: Path, memory_limit: int) -> dict[str, Any]:
    """One run through ``bench.e2e.run_mode`` with memory sampled around it, then the database size."""
    sampler = MemorySampler(db)
    sampler.start()
    try:
        result = await run_mode(run.cfg, db, workdir / run.label.replace(" ", "_"), memory_limit=memory_limit)
    finally:
        await sampler.stop()
    sizes = await database_sizes(db, db.created[-1])
    return {
        "label": run.label,
        "kind": run.kind,
        "meters": run.meters,
        "figures": figures(result, sampler, sizes),
        "sizes": sizes,
        "rss_series_mib": sampler.series(),
        "e2e": result,
    }


async def database_sizes(db: Database, name: str) -> dict[str, int]:
    """Bytes of the run's database (less the empty template it was copied from), of ``readings`` with
    its indexes (all chunks when it is a hypertable) and of the largest tables (where the rest goes),
    and the rows each table had inserted and updated (what PostgreSQL's CPU per reading is spent on);
    then the database is dropped (disk)."""
    conn = await asyncpg.connect(with_database(db.admin_url, name))
    try:
        await conn.execute("CHECKPOINT")
        total = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        template = int(await conn.fetchval("SELECT pg_database_size('template1')"))
        readings = int(await conn.fetchval("SELECT pg_total_relation_size('readings')"))
        hypertable = await conn.fetchval(
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
        ) and await conn.fetchval("SELECT hypertable_size('readings')")
        kpi = int(await conn.fetchval("SELECT pg_total_relation_size('kpi_windows')"))
        largest = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 2 DESC LIMIT 8"
        )
        written = await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE n_tup_ins + n_tup_upd > 0 ORDER BY n_tup_ins + n_tup_upd DESC LIMIT 8"
        )
    finally:
        await conn.close()
    admin = await asyncpg.connect(db.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return {
        "database_bytes": total - template,
        "readings_bytes": int(hypertable) if hypertable else readings,
        "kpi_windows_table_bytes": kpi,
        **{f"table_bytes:{row['relname']}": int(row["bytes"]) for row in largest},
        **{
            f"rows_{kind}:{row['relname']}": int(row[f"n_tup_{kind}"])
            for row in written
            for kind in ("ins", "upd", "hot_upd")
        },
    }


def figures(result: dict[str, Any], sampler: MemorySampler, sizes: dict[str, int]) -> dict[str, Any]:
    """The per-reading figures the table and the plot show."""
    stored = max(1, int(result["readings_stored"]))
    cpu = result["cpu_s"]
    step_s = float(result["processor_seconds"].get("step_s", 0.0))
    mib = 2**20
    return {
        "readings_stored": result["readings_stored"],
        "readings_lost": result["readings_lost"],
        "wall_s": result["wall_s"],
        "readings_per_s": result["readings_per_s"],
        "cpu_us_per_reading": {
            **{role: cpu.get(role, 0.0) / stored * 1e6 for role in ("pipeline", "postgres", "mosquitto")},
            "processor_step": step_s / stored * 1e6,
            "publishers": cpu.get("publishers", 0.0) / stored * 1e6,
        },
        "rss_peak_mib": {role: b / mib for role, b in sampler.peak().items()},
        "rss_steady_mib": {role: b / mib for role, b in sampler.steady().items()},
        "database_mb_per_million": sizes["database_bytes"] / stored * 1e6 / 1e6,
        "readings_mb_per_million": sizes["readings_bytes"] / stored * 1e6 / 1e6,
        "kpi_windows": result["kpi_windows"],
        "kpi_windows_expected": result["kpi_windows_expected"],
        "late_events": result["late_events"],
        "dead_letters": result["dead_letters"],
        "machine_other_cores": result["machine_other_cores"],
        "drained": result["drained"],
    }


def summary(f: dict[str, Any]) -> str:
    """One line per finished run, so a long bench shows its figures as it goes."""
    cpu, rss = f["cpu_us_per_reading"], f["rss_peak_mib"]
    return (
        f"{f['readings_stored']:,} stored, {f['readings_lost']:,} lost, "
        f"{f['readings_per_s']:,.0f} readings/s; "
        f"CPU µs/reading pipeline {cpu['pipeline']:.1f} (step {cpu['processor_step']:.1f}), "
        f"PostgreSQL {cpu['postgres']:.1f}; peak MiB pipeline {rss.get('pipeline', 0):,.0f}, "
        f"PostgreSQL {rss.get('postgres', 0):,.0f}; "
        f"KPI windows {f['kpi_windows']:,}/{f['kpi_windows_expected']:,}"
    )


async def _main(args: argparse.Namespace) -> int:
    runs = plan_runs(args)
    if not runs:
        raise SystemExit("nothing to run: give --fleets or --backfill-days")
    check_memory(runs, args.broker_memory_mb << 20)
    machine = describe_machine()
    workdir = Path(tempfile.mkdtemp(prefix="peakwatch-scaling-"))
    db = Database(workdir, args.database_url, fast=args.fast_db)
    done: list[dict[str, Any]] = []
    try:
        await db.start()
        for run in runs:
            readings = run.cfg.steps * run.cfg.sites * run.cfg.meters
            console.print(f"[bold]{run.label}[/bold]: {readings:,} readings ({run.cfg.steps:,} per meter)")
            done.append(await measure(run, db, workdir, args.broker_memory_mb << 20))
            console.print(f"[dim]{summary(done[-1]['figures'])}[/dim]")
    finally:
        await db.stop(keep=False)
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table(done))
    database = f"external {db.version}" if args.database_url else f"embedded PostgreSQL {db.version}"
    console.print(f"[dim]{machine['cpus']} CPUs ({machine['cpu_model']}), {database}[/dim]")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    plot(done, stamp, console)
    save_results("scaling", {"machine": machine, "database": database, "runs": done}, console)
    # lost < 0: more stored than acknowledged (messages the broker took before it closed a publisher
    # at its memory limit, their PUBACKs never read): nothing lost
    return 0 if all(r["figures"]["readings_lost"] <= 0 and r["figures"]["drained"] for r in done) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fleets", default="1000,10000,100000", help="meters per fleet, comma-separated")
    parser.add_argument("--hours", type=float, default=1.0, help="event time per meter in fast runs")
    parser.add_argument("--pace", choices=("fast", "realtime", "both"), default="fast")
    parser.add_argument("--realtime-minutes", type=float, default=5.0, help="length of a real-time run")
    parser.add_argument("--backfill-days", type=float, default=0.0, help="0: no backfill run")
    parser.add_argument("--backfill-meters", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes (sites are split)")
    parser.add_argument("--window", type=int, default=4000, help="QoS 1 messages in flight per publisher")
    parser.add_argument("--database-url", default=None, help="external server (a fresh database per run)")
    parser.add_argument("--fast-db", action="store_true", help="embedded PostgreSQL without fsync")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the pipeline")
    parser.add_argument("--broker-memory-mb", type=int, default=8192, help="mosquitto memory_limit")
    raise SystemExit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
