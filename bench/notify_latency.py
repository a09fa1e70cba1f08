"""Alert latency: the reading that completes a breach -> the webhook POST at a receiver, under load.

    .venv/bin/python -m bench.notify_latency                       # 200 trials, 10,000 readings/s
    .venv/bin/python -m bench.notify_latency --trials 50 --rate 20000 --keep

An operator's question is "how long after the meter shows it does my phone buzz?". peakwatch's own
latency starts when the reading that decides the breach arrives: a threshold rule is evaluated on a
closed 1-minute window, and a window closes when its site's event time passes the window's end plus
the allowed lateness. So each trial publishes a breaching window's readings for a site of its own
(``probe-001`` ...: facility 2 kWh and IT 1 kWh per 10 s, PUE 2.0 against a ``for: 0s`` rule
``pue > 1.5``), then, at ``t0``, the two readings whose time stamp closes that window; ``t1`` is when
the bench's own HTTP server has the notifier's webhook POST naming the site. ``t1 - t0`` is latency
beyond the rule's own ``for`` (here 0 s): MQTT -> collector -> spool -> processor step -> commit ->
NOTIFY -> notifier round -> HTTP.

Every process is real and separate, as in ``bench.e2e``: a private mosquitto, embedded PostgreSQL
(durable), the pipeline (``bench/pipeline.py``: collector + processor + notifier as ``peakwatch up``
wires them) and paced publishers (``bench/publisher.py --rate``) sending the synthetic fleet at a
steady background rate for the whole run. The probe (a minimal QoS 1 client) and the receiver (h11)
live in this process and share one monotonic clock. Trials start 100-200 ms apart, overlapping, so
the notifier sees a stream of alerts rather than one at a time; each has its own site and so its own
notification group (``group_by: [...]``, ``group_wait: 0s``): no group timer delays it.

Reported: p50/p90/p99/max over the trials, trials lost (no POST within 10 s), the split into
t0 -> alert committed (the pipeline reports each commit holding a firing alert) and committed -> POST,
the background readings/s the broker acknowledged, and the pipeline's lag (bus items not yet
processed, readings collected but not yet stored) while the trials ran. Table on the terminal, JSON
in ``bench/results/notify-latency-<UTC time>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.broker import BenchBroker
from bench.children import Child, Load, children, spawn_pipeline, spawn_publishers, stop_all
from bench.database import Database
from bench.machine import CpuUse, cpu_between, describe_machine, roles, snapshot
from bench.probe import LOST_AFTER_S, RULE, WINDOW_MS, Probe, Receiver, Trial, probe_site_ids, run_trial
from bench.results import save_results
from peakwatch.config import Settings
from simulators.fleet import FleetSpec, build_fleet, registry_document

console = Console()

TARGET_P99_S: Final = 1.0


# ---------------------------------------------------------------------------------------- registry


def registry_text(sites: int, meters: int, probes: list[str], webhook_url: str) -> str:
    """The fleet's sites (no demo rules: the load raises no alerts), the probe data centres, the
    probe rule and one webhook receiver with one group per alert."""
    document = registry_document(
        build_fleet(FleetSpec(sites=sites, synthetic_meters=meters)), include_demo_rules=False
    )
    document["sites"].extend(
        {
            "id": site,
            "name": f"Latency probe {site}",
            "kind": "data_centre",
            "meters": [
                {"id": "facility", "carrier": "electricity", "role": "facility_total", "unit": "kWh"},
                {"id": "it", "carrier": "electricity", "role": "it_load", "unit": "kWh"},
            ],
        }
        for site in probes
    )
    document["rules"] = [
        {"name": RULE, "kpi": "pue", "op": ">", "threshold": 1.5, "for": "0s", "site_ids": probes}
    ]
    document["notifications"] = {
        "receivers": [{"name": "probe", "channels": [{"type": "webhook", "url": webhook_url}]}],
        "route": {"receiver": "probe", "group_by": ["..."], "group_wait": "0s", "send_resolved": False},
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)


# ---------------------------------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _spread(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values, default=None),
        "mean": sum(values) / len(values) if values else None,
    }


def _lag(pipeline: Child, start_wall: float, end_wall: float) -> dict[str, Any]:
    """Bus items not yet processed and readings collected but not yet stored, from the heartbeats
    (every 0.5 s) while the trials ran; and the readings/s the collector took in meanwhile."""
    beats = [e for e in pipeline.events if e.get("ev") == "hb" and start_wall <= e["t"] <= end_wall]
    if len(beats) < 2:
        return {}
    bus = [float(e["lag"]) for e in beats]
    unstored = [float((e["collected"] or 0) - e["r"]) for e in beats]
    span = beats[-1]["t"] - beats[0]["t"]
    collected = (beats[-1]["collected"] or 0) - (beats[0]["collected"] or 0)
    return {
        "heartbeats": len(beats),
        "bus_items": {"p50": percentile(bus, 0.5), "max": max(bus)},
        "readings_not_yet_stored": {"p50": percentile(unstored, 0.5), "max": max(unstored)},
        "collected_readings_per_s": collected / span if span > 0 else None,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"


def _table(r: dict[str, Any]) -> Table:
    table = Table(title="peakwatch alert latency: closing reading published → webhook POST received")
    table.add_column("")
    table.add_column("", justify="right")
    lat, commit, notify = r["latency_s"], r["to_commit_s"], r["commit_to_post_s"]
    table.add_row("trials / notified / [bold]lost[/bold] (none within 10 s)", _trials_cell(r))
    for q in ("p50", "p90", "p99", "max"):
        table.add_row(f"latency {q}", f"[bold]{_ms(lat[q])}[/bold]" if q == "p99" else _ms(lat[q]))
    table.add_row("  reading → alert committed p50 / p99", f"{_ms(commit['p50'])} / {_ms(commit['p99'])}")
    table.add_row("  committed → POST received p50 / p99", f"{_ms(notify['p50'])} / {_ms(notify['p99'])}")
    table.add_row(
        "target: p99 < 1 s beyond the rule's for-duration",
        "[green]met[/green]" if r["meets_target"] else "[red]missed[/red]",
    )
    bg = r["background"]
    table.add_row(
        "background readings/s (broker-acked; target)",
        f"{bg['acked_readings_per_s']:,.0f} ({bg['target_readings_per_s']:,.0f})",
    )
    lag = r["pipeline_lag"]
    if lag:
        table.add_row("  collected readings/s during the trials", f"{lag['collected_readings_per_s']:,.0f}")
        table.add_row(
            "pipeline lag: bus items p50 / max",
            f"{lag['bus_items']['p50']:,.0f} / {lag['bus_items']['max']:,.0f}",
        )
        table.add_row(
            "pipeline lag: readings not yet stored p50 / max",
            f"{lag['readings_not_yet_stored']['p50']:,.0f} / {lag['readings_not_yet_stored']['max']:,.0f}",
        )
    for role in ("pipeline", "postgres", "mosquitto", "publishers", "bench", "rest of the machine"):
        table.add_row(f"CPU cores: {role}", f"{r['cpu_cores'].get(role, 0.0):.2f}")
    return table


def _trials_cell(r: dict[str, Any]) -> str:
    lost = r["trials_lost"]
    return f"{r['trials']} / {r['notified']} / " + (f"[red]{lost}[/red]" if lost else "0")


# ---------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class Config:
    trials: int
    rate: float
    sites: int
    meters: int
    publishers: int
    spacing_ms: tuple[int, int]
    warmup_s: float
    seed: int
    keep: bool
    lateness_ms: int = field(default_factory=lambda: Settings().allowed_lateness_ms)

    @property
    def load_s(self) -> float:
        """How long the background load must last: warm-up, the trials, the last one's wait, margin."""
        mean_spacing_s = sum(self.spacing_ms) / 2000
        return self.warmup_s + self.trials * mean_spacing_s + LOST_AFTER_S + 5.0


@dataclass(frozen=True)
class Observed:
    """What one run saw: the trials, the receiver's counts, the pipeline's events, the publishers'
    ``done`` events, and the CPU spent while the trials ran."""

    trials: list[Trial]
    receiver: Receiver
    pipeline: Child
    done: list[dict[str, Any]]
    broker_dropped: int | None
    start_wall: float
    end_wall: float
    cpu: CpuUse


async def run(cfg: Config, workdir: Path) -> dict[str, Any]:
    """The processes, the background load, the trials; then the figures."""
    probes = probe_site_ids(cfg.trials)
    receiver = Receiver()
    await receiver.start()
    registry_file = workdir / "registry.yaml"
    registry_file.write_text(registry_text(cfg.sites, cfg.meters, probes, receiver.url), encoding="utf-8")
    per_meter = math.ceil(cfg.rate * cfg.load_s / (cfg.sites * cfg.meters))
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - per_meter * 1000 - 120_000  # the fleet's event time ends two minutes ago
    start_ms -= start_ms % 1000
    db = Database(workdir, None, fast=False)
    broker = BenchBroker(workdir / "mosquitto")
    probe = Probe()
    trials: list[Trial] = []
    try:
        await db.start()
        db_url = await db.fresh(f"peakwatch_notify_{uuid.uuid4().hex[:8]}")
        broker.start()
        async with children() as spawned:
            load = Load(
                broker.url,
                cfg.sites,
                cfg.meters,
                per_meter,
                start_ms,
                ("--rate", str(cfg.rate / cfg.publishers)),
            )
            pipeline, publishers = await _start(cfg, spawned, registry_file, db_url, load, probe)
            for pub in publishers:
                pub.send("go")
            await asyncio.sleep(cfg.warmup_s)  # the load reaches its steady state; nothing to await
            pids = {**roles(pipeline, publishers, broker, db), "bench": [psutil.Process().pid]}
            before, start_wall = snapshot(pids), time.time()
            await _run_trials(cfg, probes, probe, receiver, trials)
            end_wall = time.time()
            pids["postgres"] = db.server_pids()
            cpu = cpu_between(before, snapshot(pids))
            done = [await pub.wait_for("done", cfg.load_s + 120) for pub in publishers]
            stats = await broker.stats()
            await stop_all(pipeline, publishers)
    finally:
        probe.close()
        broker.stop()
        await receiver.stop()
        await db.stop(keep=cfg.keep)
    _note_commits(trials, pipeline)
    observed = Observed(trials, receiver, pipeline, done, stats.dropped, start_wall, end_wall, cpu)
    return _result(cfg, observed)


async def _start(
    cfg: Config, spawned: list[Child], registry_file: Path, db_url: str, load: Load, probe: Probe
) -> tuple[Child, list[Child]]:
    """The pipeline (with its notifier) and the paced publishers, ready; the probe connected."""
    pipeline = await spawn_pipeline(
        spawned,
        registry=registry_file,
        mqtt_url=load.mqtt_url,
        database_url=db_url,
        lateness_ms=cfg.lateness_ms,
        bus=f"spool://{registry_file.parent / 'spool'}",
    )
    publishers = await spawn_publishers(spawned, load, cfg.publishers)
    ready = await pipeline.wait_for("ready", 180)
    if not ready.get("notifier"):
        raise RuntimeError("the pipeline started without a notifier (no notifications: section?)")
    built = [await pub.wait_for("ready", 600) for pub in publishers]
    await probe.connect(load.mqtt_url)
    console.print(
        f"[dim]{sum(b['readings'] for b in built):,} background readings built "
        f"({cfg.load_s:.0f} s at {cfg.rate:,.0f}/s); pipeline and notifier ready; "
        f"warming up {cfg.warmup_s:.0f} s…[/dim]"
    )
    return pipeline, publishers


async def _run_trials(
    cfg: Config, probes: list[str], probe: Probe, receiver: Receiver, trials: list[Trial]
) -> None:
    """One trial per probe site, started ``spacing_ms`` apart (so they overlap), each on the minute
    three windows back: old enough that the site's own closing readings decide it."""
    rng = random.Random(cfg.seed)
    tasks: list[asyncio.Task[None]] = []
    for k, site in enumerate(probes, start=1):
        minute = time.time_ns() // 1_000_000 // WINDOW_MS * WINDOW_MS
        trial = Trial(k=k, site=site, window_start_ms=minute - 3 * WINDOW_MS)
        trials.append(trial)
        tasks.append(asyncio.create_task(run_trial(trial, probe, receiver, cfg.lateness_ms)))
        await asyncio.sleep(rng.uniform(*cfg.spacing_ms) / 1000)
    await asyncio.gather(*tasks)


def _note_commits(trials: list[Trial], pipeline: Child) -> None:
    """When each trial's firing alert was committed: the first ``a`` event naming its site."""
    for event in pipeline.events:
        if event.get("ev") == "a":
            for trial in trials:
                if trial.committed_wall is None and trial.site in event["firing"]:
                    trial.committed_wall = float(event["t"])


def _result(cfg: Config, o: Observed) -> dict[str, Any]:
    trials = o.trials
    latencies = [t.latency_s for t in trials if t.latency_s is not None]
    to_commit = [t.committed_wall - t.t0_wall for t in trials if t.committed_wall and t.t0_wall]
    commit_to_post = [
        (t.t1 - t.t0) - (t.committed_wall - t.t0_wall)
        for t in trials
        if t.t1 is not None and t.committed_wall is not None
    ]
    lost = len(trials) - len(latencies)
    spread = _spread(latencies)
    p99 = spread["p99"]
    cpu = {**o.cpu.by_role, "rest of the machine": o.cpu.other_s}
    return {
        "trials": len(trials),
        "notified": len(latencies),
        "trials_lost": lost,
        "early": sum(1 for x in latencies if x < 0),
        "late_arrivals": sum(1 for t in trials if t.t1 is None and t.site in o.receiver.arrivals),
        "trial_errors": [t.error for t in trials if t.error],
        "latency_s": spread,
        "to_commit_s": _spread(to_commit),
        "commit_to_post_s": _spread(commit_to_post),
        "target": f"p99 < {TARGET_P99_S:g} s beyond the rule's for-duration (for: 0s), no trial lost",
        "meets_target": bool(lost == 0 and p99 is not None and p99 < TARGET_P99_S),
        "background": _background(cfg, o),
        "pipeline_lag": _lag(o.pipeline, o.start_wall, o.end_wall),
        "cpu_cores": {role: s / o.cpu.wall_s for role, s in cpu.items() if "/" not in role}
        if o.cpu.wall_s > 0
        else {},
        "receiver": {"posts": o.receiver.posts, "other_alerts": o.receiver.other_alerts},
        "trials_detail": [_trial_detail(t, o.start_wall) for t in trials],
        "settings": {
            "spacing_ms": list(cfg.spacing_ms),
            "warmup_s": cfg.warmup_s,
            "allowed_lateness_ms": cfg.lateness_ms,
            "lost_after_s": LOST_AFTER_S,
            "seed": cfg.seed,
        },
    }


def _background(cfg: Config, o: Observed) -> dict[str, Any]:
    """The paced load as the broker acknowledged it, and whether it lasted until the last trial."""
    done = o.done
    acked = sum(int(d["readings_acked"]) for d in done)
    publish_s = max(float(d["last_ack_s"]) for d in done) - min(float(d["first_publish_s"]) for d in done)
    return {
        "target_readings_per_s": cfg.rate,
        "acked_readings": acked,
        "acked_readings_per_s": acked / publish_s if publish_s > 0 else 0.0,
        "publish_s": publish_s,
        "unacknowledged_messages": sum(int(d["unacknowledged"]) for d in done),
        "sites": cfg.sites,
        "meters_per_site": cfg.meters,
        "publishers": cfg.publishers,
        "broker_dropped": o.broker_dropped,
        "covered_trials": max(float(d["last_ack_s"]) for d in done) >= o.end_wall,
    }


def _trial_detail(t: Trial, start_wall: float) -> dict[str, Any]:
    return {
        "k": t.k,
        "site": t.site,
        "t0_s": round(t.t0_wall - start_wall, 4) if t.t0_wall else None,
        "latency_s": None if t.latency_s is None else round(t.latency_s, 4),
        "to_commit_s": None
        if t.committed_wall is None or not t.t0_wall
        else round(t.committed_wall - t.t0_wall, 4),
        "error": t.error or None,
    }


async def _main(args: argparse.Namespace) -> int:
    cfg = Config(
        trials=args.trials,
        rate=args.rate,
        sites=args.sites,
        meters=args.meters,
        publishers=args.publishers,
        spacing_ms=(args.spacing_min_ms, args.spacing_max_ms),
        warmup_s=args.warmup,
        seed=args.seed,
        keep=args.keep,
    )
    machine = describe_machine()
    workdir = Path(tempfile.mkdtemp(prefix="peakwatch-notify-bench-"))
    try:
        result = await run(cfg, workdir)
    finally:
        if args.keep:
            console.print(f"[dim]kept {escape(str(workdir))}[/dim]")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print(_table(result))
    console.print(
        f"[dim]{machine['cpus']} CPUs ({machine['cpu_model']}), load average at start "
        f"{machine['load_avg_at_start'][0]:.2f}, embedded PostgreSQL durable (fsync on), "
        f"{machine['mosquitto']}[/dim]"
    )
    if result["trial_errors"]:
        console.print(f"[red]trial errors: {escape(str(result['trial_errors'][:3]))}[/red]")
    save_results("notify-latency", {"machine": machine, **result}, console)
    return 0 if result["meets_target"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200, help="probe sites, one breach each")
    parser.add_argument("--rate", type=float, default=10_000, help="background readings/s (paced)")
    parser.add_argument("--sites", type=int, default=10, help="background fleet sites")
    parser.add_argument("--meters", type=int, default=20, help="background meters per site")
    parser.add_argument("--publishers", type=int, default=1, help="background publisher processes")
    parser.add_argument("--spacing-min-ms", type=int, default=100, help="least time between trial starts")
    parser.add_argument("--spacing-max-ms", type=int, default=200, help="most time between trial starts")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the first trial")
    parser.add_argument("--seed", type=int, default=0, help="trial spacing")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (registry, broker log, database)"
    )
    args = parser.parse_args()
    if not 0 < args.spacing_min_ms <= args.spacing_max_ms:
        parser.error("need 0 < --spacing-min-ms <= --spacing-max-ms")
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
