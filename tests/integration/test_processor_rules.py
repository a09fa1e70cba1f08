"""Alert rules made through the API reach a running processor: stored in ``alert_rules``, loaded at
start (before the open alerts are restored) and reloaded when they change."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, rule_document
from peakwatch.domain.rules import ThresholdRule
from peakwatch.store import Store
from processor.service import Processor
from tests.integration.test_processor import SETTINGS, W0, Clock, Meters, drive

pytestmark = pytest.mark.integration

REGISTRY = """
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh, register_max: 999999.99}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
"""
STRICT = ThresholdRule(
    name="pue_strict", kpi="pue", op=">", threshold=1.3, severity="critical", site_ids=("dc",)
)


async def test_a_stored_rule_fires_survives_a_restart_and_its_removal_closes_its_alert(store: Store) -> None:
    registry = Registry.from_text(REGISTRY)
    await store.sync_registry(registry)
    await store.rules.create(STRICT.name, rule_document(STRICT), "admin", W0)
    bus, clock, meters = MemoryBus(), Clock(W0), Meters()
    first = Processor(
        bus, store, registry, SETTINGS, stored_rules=store.rules, clock_ms=clock, poll_timeout_s=0.0
    )
    await drive(first, bus, clock, meters, W0, W0 + 70_000, facility_kwh=1.4)  # PUE 1.4 > 1.3
    [alert] = await store.list_alerts()
    assert (alert.rule, alert.state, alert.labels["alertname"]) == ("pue_strict", "firing", "pue_strict")

    # a restarted processor loads the stored rule before restoring: the alert is not an orphan
    second = Processor(
        bus, store, registry, SETTINGS, stored_rules=store.rules, clock_ms=clock, poll_timeout_s=0.0
    )
    await drive(second, bus, clock, meters, W0 + 80_000, W0 + 130_000, facility_kwh=1.4)
    assert [(a.id, a.state) for a in await store.list_alerts()] == [(alert.id, "firing")]

    # removed while firing: the running processor reloads and closes the alert
    await store.rules.delete(STRICT.name)
    task = asyncio.create_task(second.run())
    try:
        async with asyncio.timeout(15):
            while (await store.list_alerts())[0].state == "firing":  # noqa: ASYNC110 - no event to await:
                await asyncio.sleep(0.05)  # the processor polls the rules (rules_interval_s)
    finally:
        second.stop()
        await task
    [closed] = await store.list_alerts()
    assert closed.state == "resolved"
    assert "no longer configured" in closed.summary


async def test_version_follows_the_content(store: Store) -> None:
    empty = await store.rules.version()
    await store.rules.create("a", rule_document(STRICT), "admin", W0)
    one = await store.rules.version()
    assert await store.rules.create("a", rule_document(STRICT), "admin", W0) is None  # taken
    assert await store.rules.version() == one
    await store.rules.replace("a", rule_document(STRICT), "admin", W0)  # same instant, same spec
    assert await store.rules.version() != one  # a write is a change (updated_at moves on)
    await store.rules.delete("a")
    assert await store.rules.version() == empty
    assert await store.rules.replace("a", rule_document(STRICT), "admin", W0) is None  # not brought back
    looser = msgspec.structs.replace(STRICT, threshold=1.6)
    await store.rules.create("a", rule_document(looser), "admin", W0)  # made again, differently, same instant
    again = await store.rules.version()
    await store.rules.delete("a")
    await store.rules.create("a", rule_document(STRICT), "admin", W0)
    assert len({empty, one, again, await store.rules.version()}) == 3  # STRICT at W0 again is "one"
