"""End-to-end throughput: publisher -> mosquitto -> collector -> processor -> PostgreSQL, KPIs computed.

    .venv/bin/python -m bench.e2e --mode both              # single, then 50-reading batches
    .venv/bin/python -m bench.e2e --mode single --readings 2000000
    .venv/bin/python -m bench.e2e --mode batched --database-url postgresql://user@host/postgres

Every process is real and separate: a private mosquitto (``bench/broker.py``: unbounded queues, drops
counted), embedded PostgreSQL with its durable defaults (fsync on; ``--fast-db`` turns it off) or an
external server (``--database-url``; the bench creates and drops a fresh database on it), the
peakwatch pipeline (``bench/pipeline.py``: collector + processor as ``peakwatch up`` wires them) and
one or more publishers (``bench/publisher.py``: QoS 1, messages built before the clock starts).

Measured per mode: readings published (acknowledged by the broker) and stored (``count(*)`` of
``readings`` once the pipeline drained), lost = published - stored, the broker's dropped-message
counter, wall time from the first publish to the commit of the transaction holding the last reading,
readings/s over that time, KPI windows written (and how many the watermark must have closed by then),
late and dead-lettered readings, and the CPU each process used. Results: a table on the terminal and
a JSON file in ``bench/results/``. See bench/README.md and docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from bench.broker import BenchBroker, BrokerStats
from bench.children import Child, Load, children, spawn_pipeline, spawn_publishers, stop_all
from bench.database import Database
from bench.machine import CpuUse, cpu_between, describe_machine, roles, snapshot
from bench.results import save_results
from peakwatch.config import Settings
from simulators.fleet import FleetSpec, build_fleet, registry_yaml

DEFAULT_READINGS = {"single": 1_000_000, "batched": 5_000_000}
TARGETS = {"single": 40_000, "batched": 300_000}
console = Console()


# ---------------------------------------------------------------------------------------- one mode


@dataclass(frozen=True)
class ModeConfig:
    mode: str
    readings: int
    batch: int
    sites: int
    meters: int
    publishers: int
    window: int
    step_ms: int
    drain_timeout_s: float
    uvloop: bool
    serial_processor: bool
    bus: str = "spool"
    qos: int = 1
    """The publishers' QoS (the collector subscribes at 1; the broker delivers the lower)."""
    publisher_options: tuple[str, ...] = ()
    """Further ``bench.publisher`` options (bench.scaling paces its real-time runs with ``--rate``)."""

    @property
    def steps(self) -> int:
        """Readings per meter, a whole number of batches."""
        per_meter = math.ceil(self.readings / (self.sites * self.meters))
        return math.ceil(per_meter / self.batch) * self.batch

    @property
    def allowed_lateness_ms(self) -> int:
        """Default lateness (the transport delay) plus the event time one message reaches back: each
        reading's amount covers the interval since the meter's previous reading, so a message of B
        readings feeds windows from B steps before its newest timestamp, while the first message of a
        round already moved the site's event time to that timestamp. With less (docs/kpis.md,
        "Choosing the lateness"), the round's first message, or the idle advance through the silence
        between rounds, closes a window the other meters' messages of the round still add to: with
        15-s readings and 10 s of lateness, ~100 late readings per site and boundary (bench.scaling)."""
        return Settings().allowed_lateness_ms + self.batch * self.step_ms


def _expected_windows(start_ms: int, last_ms: int, lateness_ms: int, window_ms: int, sites: int) -> int:
    """KPI windows closed once the last reading is processed: windows the readings' intervals
    ``[start, last)`` touch that end at or before the final watermark."""
    first_w = start_ms - start_ms % window_ms
    last_w = (last_ms - 1) - (last_ms - 1) % window_ms
    watermark = last_ms - lateness_ms
    closed = sum(1 for w in range(first_w, last_w + 1, window_ms) if w + window_ms <= watermark)
    return closed * sites


@dataclass(frozen=True)
class Measured:
    """What one mode's run observed, from the publishers' go to the pipeline's stop."""

    pipeline: Child
    done: list[dict[str, Any]]
    """The publishers' ``done`` events."""
    drained_at: float | None
    """When the write holding the last published reading committed (``None``: not in time)."""
    lag_zero: bool
    counts: dict[str, int]
    stats: BrokerStats
    cpu: CpuUse

    @property
    def published(self) -> int:
        return sum(int(d["readings_acked"]) for d in self.done)

    @property
    def first_publish_s(self) -> float:
        return min(float(d["first_publish_s"]) for d in self.done)

    @property
    def last_ack_s(self) -> float:
        return max(float(d["last_ack_s"]) for d in self.done)


async def run_mode(cfg: ModeConfig, db: Database, workdir: Path, *, memory_limit: int) -> dict[str, Any]:
    """One mode: a fresh database and broker, the pipeline and the publishers, then the figures."""
    mode_dir = workdir / cfg.mode
    mode_dir.mkdir(parents=True, exist_ok=True)
    start_ms, last_ms = event_times(cfg)
    fleet = build_fleet(FleetSpec(sites=cfg.sites, synthetic_meters=cfg.meters))
    registry_file = mode_dir / "registry.yaml"
    registry_file.write_text(registry_yaml(fleet), encoding="utf-8")
    db_url = await db.fresh(f"peakwatch_bench_{cfg.mode}_{uuid.uuid4().hex[:8]}")
    broker = BenchBroker(mode_dir / "mosquitto", memory_limit_bytes=memory_limit)
    broker.start()
    try:
        async with children() as spawned:
            pipeline, publishers = await _start(cfg, spawned, mode_dir, broker.url, db_url, start_ms)
            measured = await _measure(cfg, pipeline, publishers, broker, db, db_url)
    finally:
        broker.stop()
    return _result(cfg, measured, start_ms, last_ms)


def event_times(cfg: ModeConfig) -> tuple[int, int]:
    """The first and last readings' event time: the history ends two minutes ago, on a whole second."""
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - cfg.steps * cfg.step_ms - 120_000
    start_ms -= start_ms % 1000
    return start_ms, start_ms + (cfg.steps - 1) * cfg.step_ms


def publisher_load(cfg: ModeConfig, broker_url: str, start_ms: int) -> Load:
    """What the publishers send in this mode (bench.peer feeds Node-RED the very same)."""
    options: tuple[str, ...] = ("--batch", str(cfg.batch), "--step-ms", str(cfg.step_ms))
    options += ("--window", str(cfg.window), "--qos", str(cfg.qos), *cfg.publisher_options)
    return Load(broker_url, cfg.sites, cfg.meters, cfg.steps, start_ms, options)


async def _start(
    cfg: ModeConfig, spawned: list[Child], mode_dir: Path, broker_url: str, db_url: str, start_ms: int
) -> tuple[Child, list[Child]]:
    """The pipeline and the publishers, once all are ready (the publishers' messages built)."""
    flags = [*(["--uvloop"] if cfg.uvloop else []), *(["--serial-processor"] if cfg.serial_processor else [])]
    pipeline = await spawn_pipeline(
        spawned,
        registry=mode_dir / "registry.yaml",
        mqtt_url=broker_url,
        database_url=db_url,
        lateness_ms=cfg.allowed_lateness_ms,
        # as peakwatch up: readings go through the on-disk spool (memory: the in-process queue, A/B)
        bus=f"spool://{mode_dir / 'spool'}" if cfg.bus == "spool" else "memory://",
        flags=flags,
    )
    publishers = await spawn_publishers(spawned, publisher_load(cfg, broker_url, start_ms), cfg.publishers)
    ready = await pipeline.wait_for("ready", 120)
    built = [await pub.wait_for("ready", 600) for pub in publishers]
    console.print(
        f"[dim]{cfg.mode}: {sum(b['messages'] for b in built):,} messages / "
        f"{sum(b['readings'] for b in built):,} readings built in "
        f"{max(b['build_s'] for b in built):.1f} s; pipeline ready (MQTT {ready['mqtt_protocol']}, "
        f"TimescaleDB {'on' if ready['timescale'] else 'off'}); publishing…[/dim]"
    )
    return pipeline, publishers


async def _measure(
    cfg: ModeConfig,
    pipeline: Child,
    publishers: list[Child],
    broker: BenchBroker,
    db: Database,
    db_url: str,
) -> Measured:
    """Publish, wait until the pipeline stored the last reading, count, then stop every child."""
    pids = roles(pipeline, publishers, broker, db)
    before = snapshot(pids)
    for pub in publishers:
        pub.send("go")
    done = [await pub.wait_for("done", cfg.drain_timeout_s + 600) for pub in publishers]
    published = sum(int(d["readings_acked"]) for d in done)
    drained_at, lag_zero = await _wait_drained(pipeline, published, cfg.drain_timeout_s)
    pids["postgres"] = db.server_pids()
    after = snapshot(pids)
    counts = await _counts(db_url, published, settle_s=0 if drained_at else 3.0)
    stats = await broker.stats()
    await stop_all(pipeline, publishers)
    return Measured(pipeline, done, drained_at, lag_zero, counts, stats, cpu_between(before, after))


def _result(cfg: ModeConfig, m: Measured, start_ms: int, last_ms: int) -> dict[str, Any]:
    end_s = m.drained_at or time.time()
    wall_s = end_s - m.first_publish_s
    publish_s = m.last_ack_s - m.first_publish_s
    published, stored, stats, cpu = m.published, m.counts["stored"], m.stats, m.cpu
    messages = sum(int(d["messages_acked"]) for d in m.done)
    result: dict[str, Any] = {
        "mode": cfg.mode,
        "readings_per_message": cfg.batch,
        "qos": cfg.qos,
        "sites": cfg.sites,
        "meters_per_site": cfg.meters,
        "publishers": cfg.publishers,
        "publisher_window": cfg.window,
        "event_time_span_s": (last_ms - start_ms) / 1000,
        "allowed_lateness_ms": cfg.allowed_lateness_ms,
        "messages_published": messages,
        "readings_published": published,
        "readings_stored": stored,
        "readings_lost": published - stored,
        "unacknowledged_messages": sum(int(d["unacknowledged"]) for d in m.done),
        "broker_dropped": stats.dropped,
        "broker_drop_log_lines": stats.drop_log_lines,
        "broker_heap_max_bytes": _int_or_none(stats.sys.get("$SYS/broker/heap/maximum")),
        "drained": m.drained_at is not None,
        "store_writes": sum(1 for e in m.pipeline.events if e.get("ev") == "w" and e["t"] <= end_s),
        "bus_lag_zero": m.lag_zero,
        "wall_s": wall_s,
        "publish_s": publish_s,
        "readings_per_s": stored / wall_s if wall_s > 0 else 0.0,
        "messages_per_s": messages / wall_s if wall_s > 0 else 0.0,
        "publish_readings_per_s": published / publish_s if publish_s > 0 else 0,
        "kpi_windows": m.counts["kpi_windows"],
        "kpi_windows_expected": _expected_windows(
            start_ms, last_ms, cfg.allowed_lateness_ms, Settings().window_ms, cfg.sites
        ),
        "late_events": m.counts["late_events"],
        "dead_letters": m.counts["dead_letters"],
        "processor_seconds": _processor_seconds(m.pipeline, m.first_publish_s, end_s),
        "timeline": _timeline(m.pipeline, m.first_publish_s),
        "cpu_s": cpu.by_role,
        "cpu_share_of_wall": {role: s / wall_s for role, s in cpu.by_role.items()} if wall_s > 0 else {},
        "machine_busy_cores": cpu.busy_s / cpu.core_s if cpu.core_s > 0 else None,
        "machine_other_cores": cpu.other_s / cpu.core_s if cpu.core_s > 0 else None,
        "target_readings_per_s": TARGETS[cfg.mode],
    }
    result["meets_target"] = bool(
        result["readings_lost"] == 0 and result["readings_per_s"] >= TARGETS[cfg.mode] and published > 0
    )
    return result


def _timeline(pipeline: Child, start_s: float) -> dict[str, list[list[Any]]]:
    """Readings stored (per committed write) and collected with the bus lag (per heartbeat), by
    seconds since the first publish."""
    return {
        "stored": [[round(e["t"] - start_s, 3), e["r"]] for e in pipeline.events if e.get("ev") == "w"],
        "collected": [
            [round(e["t"] - start_s, 3), e["collected"], e["lag"]]
            for e in pipeline.events
            if e.get("ev") == "hb" and e["t"] >= start_s
        ],
    }


def _processor_seconds(pipeline: Child, start_s: float, end_s: float) -> dict[str, float]:
    """Wall seconds the processor spent writing (transaction in flight) and stepping, and the CPU
    seconds of the pipeline process, between the heartbeats around the measured interval."""
    beats = [e for e in pipeline.events if e.get("ev") == "hb"]
    before = [e for e in beats if e["t"] <= start_s][-1:] or beats[:1]
    after = [e for e in beats if e["t"] >= end_s][:1] or beats[-1:]
    if not before or not after:
        return {}
    return {
        key: float(after[0][key] or 0.0) - float(before[0][key] or 0.0)
        for key in ("write_s", "step_s", "cpu_s", "groups", "messages")
    }


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _wait_drained(pipeline: Child, published: int, timeout_s: float) -> tuple[float | None, bool]:
    """When the write holding the last published reading committed (``None``: not within the
    timeout), and whether the bus was empty by then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in pipeline.events:
            if event.get("ev") == "w" and event["r"] >= published:
                stored_s = float(event["t"])
                beat_deadline = time.monotonic() + 10  # heartbeats come every 0.5 s
                while time.monotonic() < beat_deadline and pipeline.proc.returncode is None:
                    later = [e for e in pipeline.events[-50:] if e.get("ev") == "hb" and e["t"] > stored_s]
                    if later:
                        return stored_s, later[0]["lag"] == 0
                    pipeline.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(pipeline.changed.wait(), 1.0)
                return stored_s, False
        if pipeline.proc.returncode is not None:
            break
        pipeline.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipeline.changed.wait(), 1.0)
    return None, False


async def _counts(url: str, published: int, *, settle_s: float) -> dict[str, int]:
    """Stored readings (waiting until the count stops growing when it is short), KPI windows, late
    events and dead letters."""
    conn = await asyncpg.connect(url)
    try:
        stored = int(await conn.fetchval("SELECT count(*) FROM readings"))
        quiet_since = time.monotonic()
        while stored < published and time.monotonic() - quiet_since < settle_s:
            await asyncio.sleep(0.5)
            now = int(await conn.fetchval("SELECT count(*) FROM readings"))
            if now != stored:
                stored, quiet_since = now, time.monotonic()
        return {
            "stored": stored,
            "kpi_windows": int(await conn.fetchval("SELECT count(*) FROM kpi_windows WHERE period = '1m'")),
            "late_events": int(await conn.fetchval("SELECT count(*) FROM meter_events WHERE kind = 'late'")),
            "dead_letters": int(await conn.fetchval("SELECT count(*) FROM dead_letters")),
        }
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------- report


def _table(results: list[dict[str, Any]]) -> Table:
    """One column per mode, one row per figure (fits an 80-column terminal)."""
    table = Table(title="peakwatch end to end: publisher → mosquitto → collector → processor → PostgreSQL")
    table.add_column("")
    for r in results:
        table.add_column(f"{r['mode']} ({r['readings_per_message']}/msg)", justify="right")

    def row(label: str, cell: Any) -> None:
        table.add_row(label, *(cell(r) for r in results))

    def cores(role: str) -> Any:
        return lambda r: f"{r['cpu_share_of_wall'].get(role, 0.0):.2f}"

    row("readings published", lambda r: f"{r['readings_published']:,}")
    row("readings stored", lambda r: f"{r['readings_stored']:,}")
    row("readings lost", lambda r: f"{r['readings_lost']:,}")
    row(
        "broker dropped ($SYS)",
        lambda r: "n/a" if r["broker_dropped"] is None else f"{r['broker_dropped']:,}",
    )
    row("wall s (1st publish → last stored)", lambda r: f"{r['wall_s']:.1f}")
    row("readings/s", lambda r: f"[bold]{r['readings_per_s']:,.0f}[/bold]")
    row("messages/s", lambda r: f"{r['messages_per_s']:,.0f}")
    row(
        "target",
        lambda r: (
            f"{r['target_readings_per_s']:,} "
            + ("[green]met[/green]" if r["meets_target"] else "[red]missed[/red]")
        ),
    )
    row(
        "1-minute KPI windows (written / due)",
        lambda r: f"{r['kpi_windows']:,} / {r['kpi_windows_expected']:,}",
    )
    row("late events, dead letters", lambda r: f"{r['late_events']}, {r['dead_letters']}")
    row("CPU cores: pipeline", cores("pipeline"))
    row("CPU cores: PostgreSQL", cores("postgres"))
    row("CPU cores: mosquitto", cores("mosquitto"))
    row("CPU cores: publisher(s)", cores("publishers"))
    row("CPU cores: rest of the machine", lambda r: f"{r['machine_other_cores'] or 0.0:.2f}")
    return table


# ---------------------------------------------------------------------------------------- main


async def _main(args: argparse.Namespace) -> int:
    modes = ["single", "batched"] if args.mode == "both" else [args.mode]
    machine = describe_machine()
    workdir = Path(tempfile.mkdtemp(prefix="peakwatch-bench-"))
    db = Database(workdir, args.database_url, fast=args.fast_db, timescale=not args.no_timescale)
    results: list[dict[str, Any]] = []
    try:
        await db.start()
        for mode in modes:
            batch = 1 if mode == "single" else args.batch
            cfg = ModeConfig(
                mode=mode,
                readings=args.readings or DEFAULT_READINGS[mode],
                batch=batch,
                sites=args.sites,
                meters=args.meters,
                publishers=args.publishers,
                window=args.window,
                step_ms=args.step_ms,
                drain_timeout_s=args.drain_timeout,
                uvloop=args.uvloop,
                serial_processor=args.serial_processor,
                bus=args.bus,
                qos=args.qos,
            )
            results.append(await run_mode(cfg, db, workdir, memory_limit=args.broker_memory_mb << 20))
    finally:
        await db.stop(keep=args.keep)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print(_table(results))
    database = (
        f"external {db.version}"
        if args.database_url
        else f"embedded PostgreSQL {db.version}, "
        + ("fsync off (--fast-db)" if args.fast_db else "durable (fsync on)")
    )
    console.print(
        f"[dim]{machine['cpus']} CPUs ({machine['cpu_model']}), {database}, {machine['mosquitto']}[/dim]"
    )
    document = {
        "machine": machine,
        "database": database,
        "uvloop": args.uvloop,
        "serial_processor": args.serial_processor,
        "bus": args.bus,
        "results": results,
    }
    save_results("e2e", document, console)
    return 0 if all(r["readings_lost"] == 0 and r["drained"] for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("single", "batched", "both"), default="both")
    parser.add_argument(
        "--readings",
        type=int,
        default=None,
        help=f"readings per mode (default: {DEFAULT_READINGS['single']:,} single, "
        f"{DEFAULT_READINGS['batched']:,} batched)",
    )
    parser.add_argument("--batch", type=int, default=50, help="readings per message in batched mode")
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--meters", type=int, default=20, help="meters per site")
    parser.add_argument("--step-ms", type=int, default=1000, help="event time between a meter's readings")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes (sites are split)")
    parser.add_argument("--window", type=int, default=4000, help="QoS 1 messages in flight per publisher")
    parser.add_argument("--database-url", default=None, help="external server (a fresh database is created)")
    parser.add_argument("--fast-db", action="store_true", help="embedded PostgreSQL without fsync")
    parser.add_argument(
        "--no-timescale", action="store_true", help="plain PostgreSQL even when TimescaleDB is installed"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for the pipeline")
    parser.add_argument("--broker-memory-mb", type=int, default=4096, help="mosquitto memory_limit")
    parser.add_argument("--uvloop", action="store_true", help="run the pipeline on uvloop (what-if)")
    parser.add_argument(
        "--serial-processor", action="store_true", help="processor without write pipelining (A/B)"
    )
    parser.add_argument(
        "--bus", choices=("spool", "memory"), default="spool", help="spool (as peakwatch up) or memory (A/B)"
    )
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="publishers' QoS (0: no acks)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir / external databases")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
