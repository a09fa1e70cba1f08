"""What ``/healthz`` lists besides the database: ``Stack.components`` asks each running component for its
own ``health()`` (the stack reads no component's internals), in the order mqtt, bus, processor,
notifier, supervised tasks, stopped stack tasks."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from prometheus_client import CollectorRegistry

from cli.stack import Stack
from collector.mqtt import MqttSource
from notifier.service import Notifier
from peakwatch.bus import MemoryBus, SpoolBus
from peakwatch.clock import now_ms
from peakwatch.config import Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.health import ComponentStatus
from processor.service import Processor
from tests.unit.fakes import FakeStore, make_registry


async def _noop(topic: str, payload: bytes, received_ms: int) -> None:
    return None


class Reports:
    """Stands in for a component whose own construction needs a database."""

    def __init__(self, status: ComponentStatus) -> None:
        self.status = status

    def health(self) -> ComponentStatus:
        return self.status


async def test_components_are_each_components_own_health_in_order(tmp_path: Path) -> None:
    url = "mqtt://collector:s3cret@broker.example:1883"
    stack = Stack(settings=Settings(data_dir=tmp_path, demo=False), registry=make_registry(), mqtt_url=url)
    stack.source = MqttSource(url, "collector", "telemetry/+/+", 1, _noop)
    stack.bus = SpoolBus(tmp_path / "spool", max_bytes=1000)
    processing = ComponentStatus(name="processor", ok=True, detail="writing")
    stack.processor = cast(Processor, Reports(processing))
    sending = ComponentStatus(name="notifier", ok=True, detail="sending")
    stack.notifier = cast(Notifier, Reports(sending))
    stack.supervise().problem("processor-accountant", "site park-1", "StoreError: gone")
    try:
        assert stack.components() == [
            ComponentStatus(
                name="mqtt", ok=False, detail="mqtt://collector:***@broker.example:1883 connected=False"
            ),
            ComponentStatus(name="spool", ok=True, detail="0 item(s), 0 of 1000 bytes"),
            processing,
            sending,
            ComponentStatus(
                name="task processor-accountant",
                ok=False,
                detail="site park-1 failing (retried): StoreError: gone",
            ),
        ]
    finally:
        await stack.bus.close()


async def test_a_spool_refusing_writes_says_the_readings_wait_on_the_broker(tmp_path: Path) -> None:
    spool = SpoolBus(tmp_path, max_bytes=1000)
    spool.append_error = "cannot append a record: disk full"
    try:
        assert spool.health() == ComponentStatus(
            name="spool",
            ok=False,
            detail="0 item(s), 0 of 1000 bytes; cannot append a record: disk full: readings wait on the "
            "broker (not acknowledged)",
        )
    finally:
        await spool.close()


async def test_another_bus_reports_its_lag() -> None:
    bus = MemoryBus()
    await bus.publish(
        ReadingBatch("park-1", [Reading(site_id="park-1", meter_id="m0", ts_ms=0, energy_kwh=1.0)])
    )
    assert bus.health() == ComponentStatus(name="bus", ok=True, detail="lag=1")


def test_the_processor_says_how_long_database_writes_have_failed() -> None:
    processor = Processor(MemoryBus(), FakeStore(), make_registry(), Settings())
    assert processor.health() == ComponentStatus(name="processor", ok=True, detail="writing")
    # the writer's failure clock, as a write retried for 42 s leaves it (shown rounded to whole seconds)
    processor._writer.failing_since_ms = now_ms() - 42_000
    assert processor.health() == ComponentStatus(
        name="processor",
        ok=False,
        detail="database writes failing for 42 s; readings are kept in the spool and retried",
    )


async def test_the_spool_shows_its_depth_as_gauges_and_keeps_what_a_stop_leaves(tmp_path: Path) -> None:
    spool = SpoolBus(tmp_path, max_bytes=65_536)
    registry = CollectorRegistry()
    spool.register_metrics(registry)
    try:
        await spool.publish(
            ReadingBatch("park-1", [Reading(site_id="park-1", meter_id="m0", ts_ms=0, energy_kwh=1.0)])
        )
        # one batch published, none committed: one item kept on disk for the next start
        assert registry.get_sample_value("peakwatch_spool_items") == 1.0
        assert registry.get_sample_value("peakwatch_spool_capacity_bytes") == 65_536.0
        assert registry.get_sample_value("peakwatch_spool_full") == 0.0
        assert spool.kept_at_stop() == 1
    finally:
        await spool.close()


def test_a_memory_bus_has_no_gauges_of_its_own_and_keeps_nothing() -> None:
    bus, registry = MemoryBus(), CollectorRegistry()
    bus.register_metrics(registry)
    assert [m.name for m in registry.collect()] == []
    assert bus.kept_at_stop() is None
