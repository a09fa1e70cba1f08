"""Peer benchmark (issue 21): peakwatch against a typical alternative, side by side on one machine.

    .venv/bin/python -m bench.peer                                  # 3 rounds of the 4 modes
    .venv/bin/python -m bench.peer --rounds 1 --modes qos0-single --readings-single 100000

The alternative is a Node-RED flow (``bench/nodered.py``, ``bench/peer/``) that subscribes to
``telemetry/#`` and batches raw readings into PostgreSQL, computing nothing. Both systems get the same
private mosquitto (``bench/broker.py``, a fresh one per run), the same embedded PostgreSQL (durable,
a fresh database per run), the same publisher (``bench/publisher.py``, messages built before the
clock starts) and the same readings. peakwatch runs exactly as in ``bench.e2e`` (its ``run_mode``:
collector + processor, every KPI computed).

Modes: ``qos<0|1>-<single|batched>``: the publisher's QoS (peakwatch subscribes at QoS 1 as
always, Node-RED at the mode's QoS; the broker delivers the lower, so both receive the mode's QoS)
and one reading per message or ``--batch`` (50). Per mode, each round runs
peakwatch then Node-RED (A B A B ...), so machine noise hits both. Measured for both: readings
published, stored (``count(*)``), lost, wall time from the first publish to the commit holding the
last published reading, readings/s over it; for peakwatch also the KPI windows written vs due.
Printed per mode: the median of the rounds for each system and the ratio peakwatch / Node-RED, then
peakwatch's QoS 0 / QoS 1 ratios. JSON in ``bench/results/peer-<time>.json``. Exit code 1 if a
reading was lost (or not stored in time) in either system.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from bench import nodered
from bench.broker import BenchBroker, BrokerStats
from bench.children import Child, children, spawn_publishers
from bench.database import Database
from bench.e2e import ModeConfig, event_times, publisher_load, run_mode
from bench.machine import CpuUse, cpu_between, describe_machine, snapshot
from bench.results import save_results

MODES = ("qos0-single", "qos0-batched", "qos1-single", "qos1-batched")
DEFAULT_READINGS = {"single": 500_000, "batched": 2_000_000}
console = Console()


def mode_config(name: str, args: argparse.Namespace) -> ModeConfig:
    """``qos0-single`` ... as the ``bench.e2e`` mode both systems are fed."""
    qos_part, _, kind = name.partition("-")
    if qos_part not in ("qos0", "qos1") or kind not in ("single", "batched"):
        raise SystemExit(f"unknown mode {name!r}: one of {', '.join(MODES)}")
    readings = args.readings_single if kind == "single" else args.readings_batched
    return ModeConfig(
        mode=kind,
        readings=readings or DEFAULT_READINGS[kind],
        batch=1 if kind == "single" else args.batch,
        sites=args.sites,
        meters=args.meters,
        publishers=1,
        window=args.window,
        step_ms=1000,
        drain_timeout_s=args.drain_timeout,
        uvloop=False,
        serial_processor=False,
        qos=int(qos_part[-1]),
    )


# ---------------------------------------------------------------------------------------- Node-RED


async def run_node_red(
    cfg: ModeConfig,
    db: Database,
    run_dir: Path,
    modules: Path,
    flow: nodered.FlowConfig,
    *,
    memory_limit: int,
) -> dict[str, Any]:
    """One run of the peer: fresh broker and database, Node-RED and the publisher, then the figures."""
    start_ms, _ = event_times(cfg)  # as bench.e2e: the history ends two minutes ago
    db_url = await db.fresh(f"peer_bench_{cfg.mode}_{uuid.uuid4().hex[:8]}")
    await nodered.create_table(db_url)
    broker = BenchBroker(run_dir / "mosquitto", memory_limit_bytes=memory_limit)
    broker.start()
    try:
        async with children() as spawned:
            red = await nodered.start(
                spawned,
                modules,
                run_dir / "node-red",
                mqtt_port=broker.port,
                qos=cfg.qos,
                database_url=db_url,
                flow=flow,
            )
            load = publisher_load(cfg, broker.url, start_ms)
            publishers = await spawn_publishers(spawned, load, cfg.publishers)
            measured = await _measure(cfg, red, publishers, broker, db, db_url)
    finally:
        broker.stop()
    return _result(cfg, flow, measured)


@dataclass(frozen=True)
class Measured:
    """What one Node-RED run observed."""

    done: list[dict[str, Any]]
    """The publishers' ``done`` events."""
    stored_at: float | None
    """When the INSERT holding the last published reading committed (``None``: not in time)."""
    last_commit_s: float | None
    stored: int
    rows: int
    stats: BrokerStats
    cpu: CpuUse


async def _measure(
    cfg: ModeConfig, red: Child, publishers: list[Child], broker: BenchBroker, db: Database, db_url: str
) -> Measured:
    """Once all are ready: publish, wait until the flow stored the last reading, count, stop."""
    await nodered.wait_connected(red, 60)
    for pub in publishers:
        await pub.wait_for("ready", 600)
    await asyncio.sleep(0.5)  # the SUBSCRIBE sent right after the CONNACK is surely in
    pids = {
        "node-red": [red.proc.pid],
        "publishers": [p.proc.pid for p in publishers],
        "mosquitto": [broker.pid] if broker.pid else [],
        "postgres": db.server_pids(),
    }
    before = snapshot(pids)
    for pub in publishers:
        pub.send("go")
    done = [await pub.wait_for("done", cfg.drain_timeout_s + 600) for pub in publishers]
    published = sum(int(d["readings_acked"]) for d in done)
    stored_at = await nodered.wait_stored(red, published, idle_s=10, timeout_s=cfg.drain_timeout_s)
    pids["postgres"] = db.server_pids()
    cpu = cpu_between(before, snapshot(pids))
    stored, rows = await nodered.count_stored(db_url)
    stats = await broker.stats()
    await nodered.stop(red)
    for pub in publishers:
        await pub.finish()
    return Measured(done, stored_at, nodered.last_commit_s(red), stored, rows, stats, cpu)


def _result(cfg: ModeConfig, flow: nodered.FlowConfig, m: Measured) -> dict[str, Any]:
    published = sum(int(d["readings_acked"]) for d in m.done)
    first_s = min(float(d["first_publish_s"]) for d in m.done)
    end_s = m.stored_at or m.last_commit_s or time.time()
    wall_s = end_s - first_s
    messages = sum(int(d["messages_acked"]) for d in m.done)
    cpu = m.cpu
    return {
        "mode": cfg.mode,
        "qos": cfg.qos,
        "readings_per_message": cfg.batch,
        "messages_published": messages,
        "readings_published": published,
        "readings_stored": m.stored,
        "rows_stored": m.rows,
        "readings_lost": published - m.stored,
        "broker_dropped": m.stats.dropped,
        "drained": m.stored_at is not None,
        "wall_s": wall_s,
        "readings_per_s": m.stored / wall_s if wall_s > 0 else 0.0,
        "messages_per_s": messages / wall_s if wall_s > 0 else 0.0,
        "cpu_s": cpu.by_role,
        "cpu_share_of_wall": {role: s / wall_s for role, s in cpu.by_role.items()} if wall_s > 0 else {},
        "machine_other_cores": cpu.other_s / cpu.core_s if cpu.core_s > 0 else None,
        "flow": {"batch_rows": flow.batch_rows, "flush_ms": flow.flush_ms, "pool": flow.pool},
    }


async def _drop_last(db: Database) -> None:
    """The run's database (rows no later run reads: the disk and the checkpoints stay small)."""
    conn = await asyncpg.connect(db.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.created.pop()}" WITH (FORCE)')
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------- report


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of one mode's rounds for each system, and the ratio of peakwatch's to Node-RED's."""

    def of(system: str) -> list[dict[str, Any]]:
        return [r for r in runs if r["system"] == system]

    out: dict[str, Any] = {"mode": name}
    for system in ("peakwatch", "node-red"):
        mine = of(system)
        out[system] = {
            "readings_per_s": statistics.median(r["readings_per_s"] for r in mine),
            "wall_s": statistics.median(r["wall_s"] for r in mine),
            "readings_published": statistics.median(r["readings_published"] for r in mine),
            "readings_stored": statistics.median(r["readings_stored"] for r in mine),
            "readings_lost": sum(r["readings_lost"] for r in mine),
            "all_drained": all(r["drained"] for r in mine),
            "per_round": [round(r["readings_per_s"]) for r in mine],
        }
    pw = of("peakwatch")
    out["peakwatch"]["kpi_windows"] = [f"{r['kpi_windows']}/{r['kpi_windows_expected']}" for r in pw]
    peer_rate = out["node-red"]["readings_per_s"]
    out["ratio"] = out["peakwatch"]["readings_per_s"] / peer_rate if peer_rate else None
    return out


def _table(s: dict[str, Any]) -> Table:
    rounds = len(s["peakwatch"]["per_round"])
    table = Table(title=f"{s['mode']}: readings, median of {rounds} round(s); ratio: peakwatch / Node-RED")
    table.add_column("")
    table.add_column("peakwatch", justify="right")
    table.add_column("Node-RED", justify="right")
    table.add_column("ratio", justify="right")
    pw, nr = s["peakwatch"], s["node-red"]
    table.add_row("published", f"{pw['readings_published']:,.0f}", f"{nr['readings_published']:,.0f}", "")
    table.add_row("stored", f"{pw['readings_stored']:,.0f}", f"{nr['readings_stored']:,.0f}", "")
    table.add_row("lost (all rounds)", f"{pw['readings_lost']:,}", f"{nr['readings_lost']:,}", "")
    table.add_row("wall s (publish → stored)", f"{pw['wall_s']:.1f}", f"{nr['wall_s']:.1f}", "")
    ratio = "n/a" if s["ratio"] is None else f"[bold]{s['ratio']:.2f}×[/bold]"
    table.add_row(
        "readings/s", f"[bold]{pw['readings_per_s']:,.0f}[/bold]", f"{nr['readings_per_s']:,.0f}", ratio
    )
    table.add_row(
        "per round",
        ", ".join(f"{v:,}" for v in pw["per_round"]),
        ", ".join(f"{v:,}" for v in nr["per_round"]),
        "",
    )
    table.add_row("KPI windows (done/due)", ", ".join(pw["kpi_windows"]), "none computed", "")
    return table


def qos_ratios(summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
    """peakwatch's QoS 0 readings/s over its QoS 1 readings/s, single and batched (modes run)."""
    ratios = {}
    for kind in ("single", "batched"):
        q0, q1 = summaries.get(f"qos0-{kind}"), summaries.get(f"qos1-{kind}")
        if q0 and q1 and q1["peakwatch"]["readings_per_s"]:
            ratios[kind] = q0["peakwatch"]["readings_per_s"] / q1["peakwatch"]["readings_per_s"]
    return ratios


# ---------------------------------------------------------------------------------------- main


async def _rounds(
    args: argparse.Namespace, db: Database, workdir: Path, modules: Path
) -> list[dict[str, Any]]:
    """Every mode, its rounds interleaved: peakwatch, Node-RED, peakwatch, Node-RED ..."""
    flow = nodered.FlowConfig(batch_rows=args.batch_rows, flush_ms=args.flush_ms, pool=args.pool)
    memory = args.broker_memory_mb << 20
    runs: list[dict[str, Any]] = []
    for name in args.modes.split(","):
        cfg = mode_config(name.strip(), args)
        for round_no in range(1, args.rounds + 1):
            tag = f"{name} round {round_no}/{args.rounds}"
            console.print(f"[dim]{tag}: peakwatch…[/dim]")
            result = await run_mode(cfg, db, workdir / f"{name}-{round_no}-peakwatch", memory_limit=memory)
            await _drop_last(db)
            runs.append({"system": "peakwatch", "name": name, "round": round_no, **result})
            console.print(f"[dim]{tag}: Node-RED…[/dim]")
            run_dir = workdir / f"{name}-{round_no}-node-red"
            result = await run_node_red(cfg, db, run_dir, modules, flow, memory_limit=memory)
            await _drop_last(db)
            runs.append({"system": "node-red", "name": name, "round": round_no, **result})
            for r in runs[-2:]:
                console.print(
                    f"[dim]  {r['system']}: {r['readings_stored']:,}/{r['readings_published']:,} stored, "
                    f"{r['wall_s']:.1f} s, {r['readings_per_s']:,.0f} readings/s[/dim]"
                )
    return runs


async def _main(args: argparse.Namespace) -> int:
    modules = await asyncio.to_thread(nodered.install)
    machine = describe_machine()
    workdir = Path(tempfile.mkdtemp(prefix="peakwatch-peer-"))
    db = Database(workdir, None, fast=False)
    try:
        await db.start()
        runs = await _rounds(args, db, workdir, modules)
    finally:
        await db.stop(keep=args.keep)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    names = list(dict.fromkeys(r["name"] for r in runs))
    summaries = {n: summary(n, [r for r in runs if r["name"] == n]) for n in names}
    for s in summaries.values():
        console.print(_table(s))
    ratios = qos_ratios(summaries)
    for kind, ratio in ratios.items():
        console.print(f"peakwatch QoS 0 / QoS 1, {kind}: [bold]{ratio:.2f}×[/bold]")
    console.print(
        f"[dim]{machine['cpus']} CPUs ({machine['cpu_model']}), embedded PostgreSQL {db.version}, durable "
        f"(fsync on), {machine['mosquitto']}, node-red and pg from {modules.parent}[/dim]"
    )
    document = {
        "machine": machine,
        "database": f"embedded PostgreSQL {db.version}, durable (fsync on)",
        "summaries": summaries,
        "peakwatch_qos0_over_qos1": ratios,
        "runs": runs,
    }
    save_results("peer", document, console)
    bad = [r for r in runs if r["readings_lost"] != 0 or not r["drained"] or r["readings_published"] <= 0]
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each system per mode (interleaved)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--readings-single", type=int, default=None, help="default 500,000")
    parser.add_argument("--readings-batched", type=int, default=None, help="default 2,000,000")
    parser.add_argument("--batch", type=int, default=50, help="readings per message in batched modes")
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--meters", type=int, default=20, help="meters per site")
    parser.add_argument("--window", type=int, default=4000, help="QoS 1 messages in flight")
    parser.add_argument("--batch-rows", type=int, default=1000, help="Node-RED: rows per INSERT (max)")
    parser.add_argument("--flush-ms", type=int, default=200, help="Node-RED: flush interval")
    parser.add_argument("--pool", type=int, default=4, help="Node-RED: PostgreSQL connections")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for storage")
    parser.add_argument("--broker-memory-mb", type=int, default=4096, help="mosquitto memory_limit")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, database)")
    raise SystemExit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
