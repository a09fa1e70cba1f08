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
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from bench.broker import BenchBroker, mosquitto_version
from peakwatch.config import Settings
from peakwatch.embedded.postgres import EmbeddedPostgres
from simulators.fleet import FleetSpec, build_fleet, registry_yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_READINGS = {"single": 1_000_000, "batched": 5_000_000}
TARGETS = {"single": 40_000, "batched": 300_000}
console = Console()


# ---------------------------------------------------------------------------------------- database


class Database:
    """Embedded PostgreSQL (durable unless ``fast``) or an external server; a fresh database per mode."""

    def __init__(self, workdir: Path, url: str | None, *, fast: bool, timescale: bool = True) -> None:
        self.external_url = url
        self.embedded: EmbeddedPostgres | None = None
        if url is None:
            self.embedded = EmbeddedPostgres(
                workdir / "postgres",
                port=_free_port(),
                durable=not fast,
                timescale=None if timescale else False,  # None: when the wheel has it
            )
        self.admin_url = url or ""
        self.created: list[str] = []
        self.version = ""

    async def start(self) -> None:
        if self.embedded is not None:
            self.admin_url = await asyncio.to_thread(self.embedded.start)
        conn = await asyncpg.connect(self.admin_url)
        try:
            self.version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def fresh(self, name: str) -> str:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return _with_database(self.admin_url, name)

    async def stop(self, *, keep: bool) -> None:
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
            return
        if keep:
            return
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def server_pids(self) -> list[int]:
        """The postmaster and its children (embedded only; an external server is not measured)."""
        if self.embedded is None:
            return []
        try:
            pid = int((self.embedded.data_dir / "postmaster.pid").read_text().split()[0])
            parent = psutil.Process(pid)
            return [pid, *(p.pid for p in parent.children(recursive=True))]
        except (OSError, ValueError, psutil.Error):
            return []


def _with_database(url: str, name: str) -> str:
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") >= 3 else head
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


def _free_port() -> int:
    from bench.broker import free_port

    return free_port()


# ---------------------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A child process speaking JSON lines on stdout."""

    name: str
    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, name: str, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        child = cls(name, proc)
        child.reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            self.changed.set()
        self.changed.set()

    def last(self, kind: str) -> dict[str, Any] | None:
        found = [event for event in self.events[::-1] if event.get("ev") == kind][:1]
        return found[0] if found else None

    async def wait_for(self, kind: str, timeout_s: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                event = self.last(kind)
                if event is not None:
                    return event
                if self.proc.returncode is not None or (self.reader is not None and self.reader.done()):
                    raise RuntimeError(f"{self.name} exited (code {self.proc.returncode}) before {kind!r}")
                self.changed.clear()
                await self.changed.wait()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(line.encode() + b"\n")

    async def finish(self, timeout_s: float = 60) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.reader is not None:
            await self.reader


@contextlib.asynccontextmanager
async def _children() -> AsyncIterator[list[Child]]:
    children: list[Child] = []
    try:
        yield children
    finally:
        for child in children:
            if child.proc.returncode is None:
                child.proc.kill()
                await child.proc.wait()


# ---------------------------------------------------------------------------------------- CPU


def _cpu_seconds(pids: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for role, role_pids in pids.items():
        for pid in role_pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                times = proc.cpu_times()
                out[pid] = (_sub_role(role, proc), times.user + times.system)
    return out


def _sub_role(role: str, proc: Any) -> str:
    """``postgres`` processes by what their title says: the backends writing for peakwatch
    (``postgres/backend``), autovacuum, WAL writer, checkpointer ..."""
    if role != "postgres":
        return role
    title = " ".join(proc.cmdline())
    if not title.startswith("postgres: "):
        return "postgres/postmaster"
    kind = title.removeprefix("postgres: ").split()
    if kind and kind[0] in ("autovacuum", "walwriter", "checkpointer", "background", "TimescaleDB"):
        return f"postgres/{kind[0].lower()}"
    if "(" in title:  # "user database host(port) state": a client connection
        return "postgres/backend"
    return "postgres/other"


def _cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per role between the two snapshots; ``postgres`` is the sum of its ``postgres/*``."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent = seconds - before.get(pid, (role, 0.0))[1]
        used[role] = used.get(role, 0.0) + spent
        if role.startswith("postgres/"):
            used["postgres"] = used.get("postgres", 0.0) + spent
    return used


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

    @property
    def steps(self) -> int:
        """Readings per meter, a whole number of batches."""
        per_meter = math.ceil(self.readings / (self.sites * self.meters))
        return math.ceil(per_meter / self.batch) * self.batch

    @property
    def allowed_lateness_ms(self) -> int:
        """Default lateness, plus the event time one batch spans: a batch of 50 one-second readings is
        50 s of a meter's history arriving at once, and without the allowance the first meter's batch
        would close windows the other meters' batches still add to (they would count as late)."""
        return Settings().allowed_lateness_ms + (self.batch - 1) * self.step_ms


def _expected_windows(start_ms: int, last_ms: int, lateness_ms: int, window_ms: int, sites: int) -> int:
    """KPI windows closed once the last reading is processed: windows the readings' intervals
    ``[start, last)`` touch that end at or before the final watermark."""
    first_w = start_ms - start_ms % window_ms
    last_w = (last_ms - 1) - (last_ms - 1) % window_ms
    watermark = last_ms - lateness_ms
    closed = sum(1 for w in range(first_w, last_w + 1, window_ms) if w + window_ms <= watermark)
    return closed * sites


async def run_mode(cfg: ModeConfig, db: Database, workdir: Path, *, memory_limit: int) -> dict[str, Any]:
    mode_dir = workdir / cfg.mode
    mode_dir.mkdir(parents=True, exist_ok=True)
    steps = cfg.steps
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - steps * cfg.step_ms - 120_000
    start_ms -= start_ms % 1000
    last_ms = start_ms + (steps - 1) * cfg.step_ms
    fleet = build_fleet(FleetSpec(sites=cfg.sites, synthetic_meters=cfg.meters))
    registry_file = mode_dir / "registry.yaml"
    registry_file.write_text(registry_yaml(fleet), encoding="utf-8")
    db_url = await db.fresh(f"peakwatch_bench_{cfg.mode}_{uuid.uuid4().hex[:8]}")
    broker = BenchBroker(mode_dir / "mosquitto", memory_limit_bytes=memory_limit)
    broker.start()
    try:
        async with _children() as children:
            pipeline_args = [
                "bench.pipeline",
                "--config",
                str(registry_file),
                "--mqtt-url",
                broker.url,
                "--database-url",
                db_url,
                "--allowed-lateness-ms",
                str(cfg.allowed_lateness_ms),
            ]
            if cfg.uvloop:
                pipeline_args.append("--uvloop")
            if cfg.serial_processor:
                pipeline_args.append("--serial-processor")
            # as peakwatch up: readings go through the on-disk spool (memory: the in-process queue, A/B)
            pipeline_args += ["--bus", f"spool://{mode_dir / 'spool'}" if cfg.bus == "spool" else "memory://"]
            pipeline = await Child.spawn("pipeline", *pipeline_args)
            children.append(pipeline)
            publishers = []
            for part in range(cfg.publishers):
                pub = await Child.spawn(
                    f"publisher {part}",
                    "bench.publisher",
                    "--url",
                    broker.url,
                    "--sites",
                    str(cfg.sites),
                    "--meters",
                    str(cfg.meters),
                    "--steps",
                    str(steps),
                    "--batch",
                    str(cfg.batch),
                    "--start-ms",
                    str(start_ms),
                    "--step-ms",
                    str(cfg.step_ms),
                    "--part",
                    f"{part}/{cfg.publishers}",
                    "--window",
                    str(cfg.window),
                )
                children.append(pub)
                publishers.append(pub)
            ready = await pipeline.wait_for("ready", 120)
            built = [await pub.wait_for("ready", 600) for pub in publishers]
            console.print(
                f"[dim]{cfg.mode}: {sum(b['messages'] for b in built):,} messages / "
                f"{sum(b['readings'] for b in built):,} readings built in "
                f"{max(b['build_s'] for b in built):.1f} s; pipeline ready (MQTT {ready['mqtt_protocol']}, "
                f"TimescaleDB {'on' if ready['timescale'] else 'off'}); publishing…[/dim]"
            )
            pids = {
                "pipeline": [pipeline.proc.pid],
                "publishers": [p.proc.pid for p in publishers],
                "mosquitto": [broker.pid] if broker.pid else [],
                "postgres": db.server_pids(),
            }
            cpu0 = _cpu_seconds(pids)
            machine0 = psutil.cpu_times()
            for pub in publishers:
                pub.send("go")
            done = [await pub.wait_for("done", cfg.drain_timeout_s + 600) for pub in publishers]
            published = sum(int(d["readings_acked"]) for d in done)
            first_publish_s = min(float(d["first_publish_s"]) for d in done)
            last_ack_s = max(float(d["last_ack_s"]) for d in done)
            drained_at, lag_zero = await _wait_drained(pipeline, published, cfg.drain_timeout_s)
            pids["postgres"] = db.server_pids()
            cpu1 = _cpu_seconds(pids)
            machine1 = psutil.cpu_times()
            counts = await _counts(db_url, published, settle_s=0 if drained_at else 3.0)
            stats = await broker.stats()
            pipeline.send("stop")
            await pipeline.finish()
            for pub in publishers:
                await pub.finish()
    finally:
        broker.stop()
    end_s = drained_at or time.time()
    wall_s = end_s - first_publish_s
    stored = counts["stored"]
    cpu = _cpu_used(cpu0, cpu1)
    busy = sum(
        getattr(machine1, f) - getattr(machine0, f) for f in ("user", "system", "nice", "softirq", "irq")
    )
    core_s = (sum(machine1) - sum(machine0)) / (psutil.cpu_count() or 1)  # wall time, per core
    bench_cpu = sum(seconds for role, seconds in cpu.items() if "/" not in role)
    messages = sum(int(d["messages_acked"]) for d in done)
    result: dict[str, Any] = {
        "mode": cfg.mode,
        "readings_per_message": cfg.batch,
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
        "unacknowledged_messages": sum(int(d["unacknowledged"]) for d in done),
        "broker_dropped": stats.dropped,
        "broker_drop_log_lines": stats.drop_log_lines,
        "broker_heap_max_bytes": _int_or_none(stats.sys.get("$SYS/broker/heap/maximum")),
        "drained": drained_at is not None,
        "store_writes": sum(1 for e in pipeline.events if e.get("ev") == "w" and e["t"] <= end_s),
        "bus_lag_zero": lag_zero,
        "wall_s": wall_s,
        "publish_s": last_ack_s - first_publish_s,
        "readings_per_s": stored / wall_s if wall_s > 0 else 0.0,
        "messages_per_s": messages / wall_s if wall_s > 0 else 0.0,
        "publish_readings_per_s": published / (last_ack_s - first_publish_s)
        if last_ack_s > first_publish_s
        else 0,
        "kpi_windows": counts["kpi_windows"],
        "kpi_windows_expected": _expected_windows(
            start_ms, last_ms, cfg.allowed_lateness_ms, Settings().window_ms, cfg.sites
        ),
        "late_events": counts["late_events"],
        "dead_letters": counts["dead_letters"],
        "processor_seconds": _processor_seconds(pipeline, first_publish_s, end_s),
        "timeline": {
            "stored": [
                [round(e["t"] - first_publish_s, 3), e["r"]] for e in pipeline.events if e.get("ev") == "w"
            ],
            "collected": [
                [round(e["t"] - first_publish_s, 3), e["collected"], e["lag"]]
                for e in pipeline.events
                if e.get("ev") == "hb" and e["t"] >= first_publish_s
            ],
        },
        "cpu_s": cpu,
        "cpu_share_of_wall": {role: s / wall_s for role, s in cpu.items()} if wall_s > 0 else {},
        "machine_busy_cores": busy / core_s if core_s > 0 else None,
        "machine_other_cores": (busy - bench_cpu) / core_s if core_s > 0 else None,
        "target_readings_per_s": TARGETS[cfg.mode],
    }
    result["meets_target"] = bool(
        result["readings_lost"] == 0 and result["readings_per_s"] >= TARGETS[cfg.mode] and published > 0
    )
    return result


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


def _machine() -> dict[str, Any]:
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return {
        "cpu_model": model,
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mosquitto": mosquitto_version(exe),
    }


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
    machine = _machine()
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
                step_ms=1000,
                drain_timeout_s=args.drain_timeout,
                uvloop=args.uvloop,
                serial_processor=args.serial_processor,
                bus=args.bus,
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"e2e-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "database": database,
                "uvloop": args.uvloop,
                "serial_processor": args.serial_processor,
                "bus": args.bus,
                "results": results,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    console.print(f"results: {out.relative_to(ROOT)}", markup=False)
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
    parser.add_argument("--keep", action="store_true", help="keep the temp dir / external databases")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
