"""The system under test of the end-to-end bench, in its own process: collector + processor, no API.

    python -m bench.pipeline --config registry.yaml --mqtt-url mqtt://... --database-url postgresql://... \
        --bus spool:///tmp/spool

Wired by ``cli.stack.running_stack`` exactly as ``peakwatch up --no-demo --mqtt-url ... --database-url
...`` wires it (same Settings defaults, the bus given: the on-disk spool as ``peakwatch up``, or
``memory://`` for an A/B; MQTT 5 when the broker speaks it), except
that the processor is built here, with the same arguments plus an ``on_written`` hook, so the parent
learns when each store transaction committed and how many readings it held.

The notifier runs too when the registry has a ``notifications:`` section (as in ``peakwatch up``);
``ready`` waits until it leads, so a latency bench does not time its start-up.

Protocol with the parent: JSON lines on stdout (``ready``, ``w`` per committed write with cumulative
readings and KPI windows, ``a`` per committed write holding alert changes with the sites that fire,
``hb`` heartbeats with the bus lag and collector counters, ``stopped``); a line or EOF on stdin stops
the pipeline (after the bus drained).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from cli.stack import load_registry, running_stack
from peakwatch.config import Settings
from peakwatch.domain.models import ProcessedBatch
from processor.metrics import ProcessorMetrics
from processor.service import Processor


def _emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def _run(args: argparse.Namespace) -> None:
    settings = Settings(
        config_file=Path(args.config),
        mqtt_url=args.mqtt_url,
        database_url=args.database_url,
        mqtt_client_id=f"bench-collector-{uuid.uuid4().hex[:8]}",
        allowed_lateness_ms=args.allowed_lateness_ms,
        bus_url=args.bus,
        demo=False,
    )
    registry = load_registry(settings)
    totals = {"readings": 0, "kpi": 0, "writes": 0}

    def on_written(batch: ProcessedBatch) -> None:
        totals["writes"] += 1
        if batch.readings or batch.kpi_windows:
            totals["readings"] += len(batch.readings)
            totals["kpi"] += len(batch.kpi_windows)
            _emit({"ev": "w", "t": time.time(), "r": totals["readings"], "k": totals["kpi"]})
        firing = sorted({a.site_id for a in batch.alerts if a.state == "firing"})
        if firing:
            _emit({"ev": "a", "t": time.time(), "firing": firing})

    async with running_stack(
        settings, registry, processor=False, api=False, broker=False, notifier=True
    ) as stack:
        assert stack.bus is not None
        assert stack.store is not None
        assert stack.source is not None
        bus = stack.bus
        db, counters = stack.store, ProcessorMetrics(stack.metrics)  # wired as running_stack does
        proc = Processor(
            bus, db, registry, settings, counters, accounting=db, stored_rules=db.rules, on_written=on_written
        )
        stopping = asyncio.Event()
        loop = _serial(proc, stopping) if args.serial_processor else proc.run()
        task = asyncio.create_task(loop, name="processor")
        await proc.start()
        if stack.notifier is not None:
            await asyncio.wait_for(stack.notifier.ready.wait(), 60)
        _emit(
            {
                "ev": "ready",
                "timescale": stack.store.timescale,
                "mqtt_protocol": stack.source.protocol_version,
                "notifier": stack.notifier is not None,
            }
        )
        stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
        metrics = stack.metrics
        while not stop.done():
            await asyncio.wait({stop, task}, timeout=args.heartbeat_s, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # a processor failure ends the run with its traceback
            _emit(
                {
                    "ev": "hb",
                    "t": time.time(),
                    "lag": bus.lag,
                    "messages": metrics.get_sample_value("peakwatch_collector_messages_total"),
                    "collected": metrics.get_sample_value("peakwatch_collector_readings_total"),
                    "r": totals["readings"],
                    "connected": stack.source.connected,
                    "write_s": metrics.get_sample_value("peakwatch_processor_store_write_seconds_sum"),
                    "step_s": metrics.get_sample_value("peakwatch_processor_step_seconds_sum"),
                    "cpu_s": time.process_time(),
                    "groups": metrics.get_sample_value("peakwatch_collector_bus_publish_seconds_count"),
                }
            )
        await stack.source.stop()
        deadline = time.monotonic() + 30
        while bus.lag and time.monotonic() < deadline:  # noqa: ASYNC110 - as cli.stack: lag is a counter
            await asyncio.sleep(0.05)
        proc.stop()
        stopping.set()
        await bus.close()
        await asyncio.wait_for(task, 30)
    _emit({"ev": "stopped", "r": totals["readings"], "k": totals["kpi"], "writes": totals["writes"]})


async def _serial(proc: Processor, stopping: asyncio.Event) -> None:
    """The processor loop without pipelining (poll, step, write, commit, then the next poll): what
    ``Processor.run`` did before it overlapped the next step with the write in flight."""
    await proc.start()
    while not stopping.is_set():
        await proc.run_once()
    await proc.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--allowed-lateness-ms", type=int, default=Settings().allowed_lateness_ms)
    parser.add_argument("--heartbeat-s", type=float, default=0.5)
    parser.add_argument("--bus", required=True, help="spool://<dir> (as peakwatch up) or memory://")
    parser.add_argument("--serial-processor", action="store_true", help="no write pipelining (A/B)")
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop (what-if; peakwatch up does not)"
    )
    args = parser.parse_args()
    if args.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional, not a dependency
        except ImportError:
            raise SystemExit("--uvloop needs uvloop: .venv/bin/pip install uvloop") from None
        uvloop.run(_run(args))
    else:
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
