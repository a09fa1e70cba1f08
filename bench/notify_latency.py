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
import contextlib
import json
import math
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import psutil  # type: ignore[import-untyped]
import yaml
from rich.markup import escape
from rich.table import Table

from bench.broker import BenchBroker
from bench.e2e import RESULTS, ROOT, Child, Database, _children, _cpu_seconds, _cpu_used, _machine, console
from bench.publisher import _connect_packet, _publish
from peakwatch.config import Settings
from simulators.fleet import FleetSpec, build_fleet, registry_document

RULE: Final = "probe_pue"
RECEIVER_PATH: Final = "/probe"
TARGET_P99_S: Final = 1.0
LOST_AFTER_S: Final = 10.0
WINDOW_MS: Final = 60_000
READING_EVERY_MS: Final = 10_000
FACILITY_KWH_PER_STEP: Final = 2.0
IT_KWH_PER_STEP: Final = 1.0
"""PUE 2.0: far enough above the 1.5 line that no rounding decides a trial."""


# ---------------------------------------------------------------------------------------- receiver


class Receiver:
    """The webhook's far end: an HTTP/1.1 server (h11) that answers 200 and notes, per probe site, when
    the first firing notification naming it was complete (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.posts = 0
        self.other_alerts = 0
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{RECEIVER_PATH}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def arrival(self, site: str) -> asyncio.Future[float]:
        """Resolves with the arrival time of the first notification about ``site`` (at once if it came)."""
        future = self._waiters.get(site)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            if site in self.arrivals:
                future.set_result(self.arrivals[site])
            self._waiters[site] = future
        return future

    def _received(self, body: bytes, at: float) -> None:
        self.posts += 1
        try:
            payload = json.loads(body)
            alerts = payload["alerts"]
        except (ValueError, KeyError, TypeError):
            return
        for alert in alerts:
            labels = alert.get("labels", {})
            site = labels.get("site", "")
            if labels.get("alertname") != RULE or alert.get("status") != "firing":
                self.other_alerts += 1
                continue
            if site in self.arrivals:
                continue
            self.arrivals[site] = at
            future = self._waiters.get(site)
            if future is not None and not future.done():
                future.set_result(at)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    body.clear()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self._received(bytes(body), time.monotonic())
                    answer = b'{"status": "ok"}'
                    headers = [("content-type", "application/json"), ("content-length", str(len(answer)))]
                    writer.write(
                        (conn.send(h11.Response(status_code=200, headers=headers)) or b"")
                        + (conn.send(h11.Data(data=answer)) or b"")
                        + (conn.send(h11.EndOfMessage()) or b"")
                    )
                    await writer.drain()
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED after a client's close
                    break
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# ---------------------------------------------------------------------------------------- probe


class _ProbeProtocol(asyncio.Protocol):
    """MQTT 3.1.1, QoS 1: resolves one future per packet id when its PUBACK comes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[None] = loop.create_future()
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"broker closed the probe's connection: {exc}")
        for future in [self.connack, *self.acks.values()]:
            if not future.done():
                future.set_exception(error)

    def data_received(self, data: bytes) -> None:
        buf, pos = self._buffer + data, 0
        while pos + 2 <= len(buf):
            kind, length = buf[pos] & 0xF0, buf[pos + 1]  # CONNACK and PUBACK are 4 bytes
            if pos + 2 + length > len(buf):
                break
            if kind == 0x40:
                future = self.acks.pop((buf[pos + 2] << 8) | buf[pos + 3], None)
                if future is not None and not future.done():
                    future.set_result(None)
            elif kind == 0x20 and not self.connack.done():
                if buf[pos + 3]:
                    self.connack.set_exception(ConnectionError(f"CONNACK return code {buf[pos + 3]}"))
                else:
                    self.connack.set_result(None)
            pos += 2 + length
        self._buffer = buf[pos:]


class Probe:
    """The bench's own device: publishes a trial's readings (QoS 1) on one connection."""

    def __init__(self) -> None:
        self._proto: _ProbeProtocol | None = None
        self._next_id = 0

    async def connect(self, url: str) -> None:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            _ProbeProtocol, parts.hostname or "127.0.0.1", parts.port or 1883
        )
        assert proto.transport is not None
        proto.transport.write(_connect_packet(f"bench-probe-{uuid.uuid4().hex[:10]}"))
        await asyncio.wait_for(proto.connack, 10)
        self._proto = proto

    def publish(self, site: str, meter: str, ts_ms: int, energy_kwh: float) -> asyncio.Future[None]:
        """Write the PUBLISH now; the future resolves at its PUBACK."""
        proto = self._proto
        assert proto is not None
        assert proto.transport is not None
        self._next_id = self._next_id % 65535 + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        proto.acks[self._next_id] = future
        payload = json.dumps({"ts": ts_ms, "energy_kwh": round(energy_kwh, 4)}).encode()
        proto.transport.write(_publish(f"telemetry/{site}/{meter}".encode(), payload, self._next_id))
        return future

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(b"\xe0\x00")  # DISCONNECT
            self._proto.transport.close()


# ---------------------------------------------------------------------------------------- trials


@dataclass
class Trial:
    k: int
    site: str
    window_start_ms: int
    t0: float = 0.0
    """``time.monotonic()`` when the closing readings were written to the broker connection."""
    t0_wall: float = 0.0
    t1: float | None = None
    """When the receiver had the POST (``None``: lost, nothing within ``LOST_AFTER_S``)."""
    committed_wall: float | None = None
    """When the pipeline committed the write holding the site's firing alert (``time.time()``)."""
    error: str = ""

    @property
    def latency_s(self) -> float | None:
        return None if self.t1 is None else self.t1 - self.t0


def probe_site_ids(trials: int) -> list[str]:
    return [f"probe-{k:03d}" for k in range(1, trials + 1)]


async def run_trial(trial: Trial, probe: Probe, receiver: Receiver, lateness_ms: int) -> None:
    """Breaching readings (acknowledged), then at ``t0`` the readings that close their window."""
    w = trial.window_start_ms
    arrival = receiver.arrival(trial.site)
    steps = WINDOW_MS // READING_EVERY_MS  # readings at w+0 s .. w+50 s: the first is the registers' base
    acks: list[asyncio.Future[None]] = []
    for i in range(steps):
        ts = w + i * READING_EVERY_MS
        acks.append(probe.publish(trial.site, "facility", ts, 1000.0 + FACILITY_KWH_PER_STEP * i))
        acks.append(probe.publish(trial.site, "it", ts, 500.0 + IT_KWH_PER_STEP * i))
    try:
        await asyncio.wait_for(asyncio.gather(*acks), 10)
    except (TimeoutError, ConnectionError) as exc:
        trial.error = f"breaching readings not acknowledged: {exc!r}"
        return
    # The closing readings keep the slope, so the window's share of their interval keeps PUE at 2.0.
    close_ts = w + WINDOW_MS + lateness_ms + 1000
    last_ts = w + (steps - 1) * READING_EVERY_MS
    slope = (close_ts - last_ts) / READING_EVERY_MS
    trial.t0 = time.monotonic()
    trial.t0_wall = time.time()
    probe.publish(trial.site, "facility", close_ts, 1000.0 + FACILITY_KWH_PER_STEP * (steps - 1 + slope))
    probe.publish(trial.site, "it", close_ts, 500.0 + IT_KWH_PER_STEP * (steps - 1 + slope))
    with contextlib.suppress(TimeoutError):
        trial.t1 = await asyncio.wait_for(asyncio.shield(arrival), LOST_AFTER_S)


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


async def run(cfg: Config, workdir: Path) -> dict[str, Any]:
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
        async with _children() as children:
            pipeline = await Child.spawn(
                "pipeline",
                "bench.pipeline",
                "--config",
                str(registry_file),
                "--mqtt-url",
                broker.url,
                "--database-url",
                db_url,
                "--allowed-lateness-ms",
                str(cfg.lateness_ms),
                "--bus",
                f"spool://{workdir / 'spool'}",
            )
            children.append(pipeline)
            publishers: list[Child] = []
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
                    str(per_meter),
                    "--start-ms",
                    str(start_ms),
                    "--part",
                    f"{part}/{cfg.publishers}",
                    "--rate",
                    str(cfg.rate / cfg.publishers),
                )
                children.append(pub)
                publishers.append(pub)
            ready = await pipeline.wait_for("ready", 180)
            if not ready.get("notifier"):
                raise RuntimeError("the pipeline started without a notifier (no notifications: section?)")
            built = [await pub.wait_for("ready", 600) for pub in publishers]
            await probe.connect(broker.url)
            console.print(
                f"[dim]{sum(b['readings'] for b in built):,} background readings built "
                f"({cfg.load_s:.0f} s at {cfg.rate:,.0f}/s); pipeline and notifier ready; "
                f"warming up {cfg.warmup_s:.0f} s…[/dim]"
            )
            for pub in publishers:
                pub.send("go")
            await asyncio.sleep(cfg.warmup_s)  # the load reaches its steady state; nothing to await
            pids = {
                "pipeline": [pipeline.proc.pid],
                "publishers": [p.proc.pid for p in publishers],
                "mosquitto": [broker.pid] if broker.pid else [],
                "postgres": db.server_pids(),
                "bench": [psutil.Process().pid],
            }
            cpu0, wall0, machine0 = _cpu_seconds(pids), time.monotonic(), psutil.cpu_times()
            trials_start_wall = time.time()
            rng = random.Random(cfg.seed)
            tasks: list[asyncio.Task[None]] = []
            for k, site in enumerate(probes, start=1):
                minute = time.time_ns() // 1_000_000 // WINDOW_MS * WINDOW_MS
                trial = Trial(k=k, site=site, window_start_ms=minute - 3 * WINDOW_MS)
                trials.append(trial)
                tasks.append(asyncio.create_task(run_trial(trial, probe, receiver, cfg.lateness_ms)))
                await asyncio.sleep(rng.uniform(*cfg.spacing_ms) / 1000)
            await asyncio.gather(*tasks)
            trials_end_wall = time.time()
            pids["postgres"] = db.server_pids()
            cpu1, wall1, machine1 = _cpu_seconds(pids), time.monotonic(), psutil.cpu_times()
            done = [await pub.wait_for("done", cfg.load_s + 120) for pub in publishers]
            stats = await broker.stats()
            pipeline.send("stop")
            await pipeline.finish()
            for pub in publishers:
                await pub.finish()
    finally:
        probe.close()
        broker.stop()
        await receiver.stop()
        await db.stop(keep=cfg.keep)
    for event in pipeline.events:
        if event.get("ev") == "a":
            for trial in trials:
                if trial.committed_wall is None and trial.site in event["firing"]:
                    trial.committed_wall = float(event["t"])
    cpu = _cpu_used(cpu0, cpu1)
    busy = sum(
        getattr(machine1, f) - getattr(machine0, f) for f in ("user", "system", "nice", "softirq", "irq")
    )
    cpu["rest of the machine"] = busy - sum(s for role, s in cpu.items() if "/" not in role)
    return _result(
        cfg,
        trials,
        receiver,
        pipeline,
        done,
        stats.dropped,
        trials_start_wall,
        trials_end_wall,
        cpu,
        wall1 - wall0,
    )


def _result(
    cfg: Config,
    trials: list[Trial],
    receiver: Receiver,
    pipeline: Child,
    done: list[dict[str, Any]],
    broker_dropped: int | None,
    start_wall: float,
    end_wall: float,
    cpu: dict[str, float],
    cpu_wall_s: float,
) -> dict[str, Any]:
    latencies = [t.latency_s for t in trials if t.latency_s is not None]
    to_commit = [t.committed_wall - t.t0_wall for t in trials if t.committed_wall and t.t0_wall]
    commit_to_post = [
        (t.t1 - t.t0) - (t.committed_wall - t.t0_wall)
        for t in trials
        if t.t1 is not None and t.committed_wall is not None
    ]
    acked = sum(int(d["readings_acked"]) for d in done)
    publish_s = max(float(d["last_ack_s"]) for d in done) - min(float(d["first_publish_s"]) for d in done)
    lost = len(trials) - len(latencies)
    spread = _spread(latencies)
    p99 = spread["p99"]
    return {
        "trials": len(trials),
        "notified": len(latencies),
        "trials_lost": lost,
        "early": sum(1 for x in latencies if x < 0),
        "late_arrivals": sum(1 for t in trials if t.t1 is None and t.site in receiver.arrivals),
        "trial_errors": [t.error for t in trials if t.error],
        "latency_s": spread,
        "to_commit_s": _spread(to_commit),
        "commit_to_post_s": _spread(commit_to_post),
        "target": f"p99 < {TARGET_P99_S:g} s beyond the rule's for-duration (for: 0s), no trial lost",
        "meets_target": bool(lost == 0 and p99 is not None and p99 < TARGET_P99_S),
        "background": {
            "target_readings_per_s": cfg.rate,
            "acked_readings": acked,
            "acked_readings_per_s": acked / publish_s if publish_s > 0 else 0.0,
            "publish_s": publish_s,
            "unacknowledged_messages": sum(int(d["unacknowledged"]) for d in done),
            "sites": cfg.sites,
            "meters_per_site": cfg.meters,
            "publishers": cfg.publishers,
            "broker_dropped": broker_dropped,
            "covered_trials": max(float(d["last_ack_s"]) for d in done) >= end_wall,
        },
        "pipeline_lag": _lag(pipeline, start_wall, end_wall),
        "cpu_cores": {role: s / cpu_wall_s for role, s in cpu.items() if "/" not in role}
        if cpu_wall_s > 0
        else {},
        "receiver": {"posts": receiver.posts, "other_alerts": receiver.other_alerts},
        "trials_detail": [
            {
                "k": t.k,
                "site": t.site,
                "t0_s": round(t.t0_wall - start_wall, 4) if t.t0_wall else None,
                "latency_s": None if t.latency_s is None else round(t.latency_s, 4),
                "to_commit_s": None
                if t.committed_wall is None or not t.t0_wall
                else round(t.committed_wall - t.t0_wall, 4),
                "error": t.error or None,
            }
            for t in trials
        ],
        "settings": {
            "spacing_ms": list(cfg.spacing_ms),
            "warmup_s": cfg.warmup_s,
            "allowed_lateness_ms": cfg.lateness_ms,
            "lost_after_s": LOST_AFTER_S,
            "seed": cfg.seed,
        },
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
    machine = _machine()
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"notify-latency-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"machine": machine, **result}, indent=2), encoding="utf-8")
    console.print(f"results: {out.relative_to(ROOT)}", markup=False)
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
