"""Readings -> processor -> alerts -> notifier -> a real HTTP receiver, on a real PostgreSQL: a PUE
hovering around the retrofit line is one message when it fires and one when it is really over."""

from __future__ import annotations

import pytest

from notifier.service import Notifier
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry
from peakwatch.store import Store
from processor.service import Processor
from tests.fixtures.receivers import HttpReceiver
from tests.integration.test_processor import MIN, SETTINGS, W0, Clock, Meters, drive

pytestmark = pytest.mark.integration


async def test_a_pue_oscillating_around_the_line_notifies_once(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    registry = Registry.from_text(
        f"""
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {{id: facility, carrier: electricity, role: facility_total, unit: kWh, register_max: 999999.99}}
      - {{id: it, carrier: electricity, role: it_load, unit: kWh}}
rules:
  - {{name: pue_retrofit_line, kpi: pue, op: ">", threshold: 1.5, recover: 1.45, severity: critical}}
notifications:
  receivers:
    - name: oncall
      channels: [{{type: webhook, url: "{http_receiver.url_for(receiver_path)}"}}]
  route: {{receiver: oncall, group_wait: 0s, group_interval: 1m}}
"""
    )
    assert registry.notifications is not None
    await store.sync_registry(registry)
    bus, clock, meters = MemoryBus(), Clock(W0), Meters()
    processor = Processor(bus, store, registry, SETTINGS, clock_ms=clock, poll_timeout_s=0.0)
    notifier = Notifier(store, registry.notifications, clock=clock)
    # one PUE a minute: above 1.5 three times, dipping below it (not below 1.45) in between, then 1.40
    pues = [1.52, 1.49, 1.51, 1.48, 1.53, 1.47, 1.51, 1.40, 1.40]
    for i, pue in enumerate(pues):
        start = W0 + i * MIN
        await drive(processor, bus, clock, meters, start, start + 50_000, facility_kwh=pue)
        await notifier.round()
        await notifier.delivered()
    await drive(processor, bus, clock, meters, W0 + 9 * MIN, W0 + 9 * MIN, facility_kwh=1.4)
    clock.ms += MIN
    await processor.flush()
    await notifier.round()
    await notifier.delivered()

    alerts = await store.list_alerts()
    assert [(a.state, a.fired_ms is not None) for a in alerts] == [("resolved", True)]
    messages = [r.json() for r in http_receiver.requests(receiver_path)]
    assert [m["status"] for m in messages] == ["firing", "resolved"]
    assert messages[0]["alerts"][0]["annotations"]["value"].startswith("1.5")
