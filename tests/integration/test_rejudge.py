"""Restated windows are judged again by the alert rules, and the receivers hear about it.

A data centre (facility +1.5 kWh, IT +1 kWh every 10 s: PUE 1.5 when both report). The IT meter's
gateway reports 2:00 and 2:10, then goes quiet until 6:00; its readings of 2:20 .. 6:00 arrive late in
one batch. Live, minute 2 saw 9 kWh facility and only the 2:00-2:10 kWh of IT: PUE 9. Once the late
readings are in, the accountant restates minute 2 to 9 / 6 = 1.5.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from notifier.service import Notifier
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.errors import StoreError
from peakwatch.store import Store
from processor.service import Processor
from tests.fixtures.receivers import HttpReceiver

pytestmark = pytest.mark.integration

MIN = 60_000
TICK = 10_000
W0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00
SETTINGS = Settings(window_ms=MIN, allowed_lateness_ms=10_000, idle_close_ms=5_000)


def _registry(rule: str, url: str, language: str = "zh-CN") -> Registry:
    return Registry.from_text(
        f"""
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {{id: facility, carrier: electricity, role: facility_total, unit: kWh}}
      - {{id: it, carrier: electricity, role: it_load, unit: kWh}}
rules:
  - {rule}
notifications:
  receivers:
    - name: oncall
      language: {language}
      channels: [{{type: webhook, url: "{url}"}}]
  route: {{receiver: oncall, group_wait: 0s, group_interval: 1s}}
"""
    )


class Rig:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store, self.bus, self.ms = store, MemoryBus(), W0
        self.proc = Processor(
            self.bus,
            store,
            registry,
            SETTINGS,
            accounting=store,
            clock_ms=lambda: self.ms,
            poll_timeout_s=0.0,
        )
        assert registry.notifications is not None
        self.notifier = Notifier(store, registry.notifications, clock=lambda: self.ms)
        self.registry = registry
        self.it = _it

    async def start(self) -> None:
        await self.store.sync_registry(self.registry)
        await self.proc.start()

    async def send(self, readings: Iterable[Reading], now_ms: int) -> None:
        await self.bus.publish(ReadingBatch("dc", list(readings)))
        self.ms = now_ms
        await self.proc.run_once(timeout_s=0)
        await self.proc.account()
        await self.notifier.round()
        await self.notifier.delivered()

    async def drive(self, start: int, end: int, *, it: bool = True) -> None:
        for ts in range(start, end + 1, TICK):
            batch = [_reading("facility", ts, 1000.0 + 1.5 * (ts - W0) / TICK)]
            if it:
                batch.append(_reading("it", ts, self.it(ts)))
            await self.send(batch, ts + 200)


def _reading(meter: str, ts: int, value: float) -> Reading:
    return Reading(site_id="dc", meter_id=meter, ts_ms=ts, energy_kwh=round(value, 6))


def _it(ts: int) -> float:
    return 500.0 + (ts - W0) / TICK


async def _quiet_it_then_backlog(rig: Rig) -> None:
    """Live minute 2 at PUE 9 (the IT gateway quiet after 2:10), then the late IT readings arrive."""
    await rig.start()
    await rig.drive(W0, W0 + 2 * MIN + TICK)
    await rig.drive(W0 + 2 * MIN + 2 * TICK, W0 + 6 * MIN, it=False)
    live = {w.start_ms: w for w in await rig.store.kpi_series("dc", W0, W0 + 6 * MIN)}
    # facility 9 kWh, IT 1 kWh (2:00 -> 2:10): PUE 9 live
    assert live[W0 + 2 * MIN].pue == pytest.approx(9.0)
    await rig.send(
        (_reading("it", ts, rig.it(ts)) for ts in range(W0 + 2 * MIN + 2 * TICK, W0 + 6 * MIN + 1, TICK)),
        W0 + 6 * MIN + 300,
    )


@pytest.mark.parametrize(
    ("language", "reason_line"),
    [
        ("en", "Reason: restated: the recomputed windows (late or corrected data) no longer breach the rule"),
        ("zh-CN", "原因：数据重算：补到或更正的数据重新计算后，窗口不再触发该规则"),
    ],
)
async def test_an_alert_whose_evidence_was_restated_away_resolves_and_says_why(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, language: str, reason_line: str
) -> None:
    # keep_firing_for 30m: live recovery alone would hold the alert for half an hour after minute 2
    rule = '{name: pue_high, kpi: pue, op: ">", threshold: 2, keep_firing_for: 30m, severity: critical}'
    rig = Rig(store, _registry(rule, http_receiver.url_for(receiver_path), language))
    await _quiet_it_then_backlog(rig)
    await rig.drive(W0 + 6 * MIN + TICK, W0 + 8 * MIN)
    [minute2] = await store.kpi_series("dc", W0 + 2 * MIN, W0 + 3 * MIN)
    assert (minute2.pue, minute2.revision) == (pytest.approx(1.5), 1)

    [alert] = await store.list_alerts()
    assert (alert.state, alert.resolved_reason) == ("resolved", "restated")
    assert alert.started_ms == W0 + 2 * MIN
    assert "restated" in alert.summary
    messages = [r.json() for r in http_receiver.requests(receiver_path)]
    assert [m["status"] for m in messages] == ["firing", "resolved"]
    [resolved] = messages[1]["alerts"]
    assert resolved["annotations"]["resolved_reason"] == "restated"
    # the message text, in the receiver's language, says why
    assert reason_line in messages[1]["peakwatch"]["text"]
    assert reason_line not in messages[0]["peakwatch"]["text"]
    assert (
        "restated: the recomputed windows no longer breach; pue now 1.5" in resolved["annotations"]["summary"]
    )


def _it_slow_minute_4(ts: int) -> float:
    """The IT register as it really went: only 0.1 kWh a tick during 4:00 .. 5:00 (0.6 kWh in minute 4:
    PUE 9 / 0.6 = 15), normal before and after."""
    slow = min(max(ts - (W0 + 4 * MIN), 0), MIN) // TICK
    return _it(ts) - 0.9 * slow


async def test_an_alert_whose_breach_restated_later_gets_the_corrected_start(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    rule = '{name: pue_high, kpi: pue, op: ">", threshold: 2, keep_firing_for: 30m, severity: critical}'
    rig = Rig(store, _registry(rule, http_receiver.url_for(receiver_path)))
    rig.it = _it_slow_minute_4
    await _quiet_it_then_backlog(rig)
    await rig.drive(W0 + 6 * MIN + TICK, W0 + 8 * MIN)
    minutes = {w.start_ms: w for w in await store.kpi_series("dc", W0, W0 + 6 * MIN)}
    # restated: minute 2 is 9 / 6 = 1.5, minute 4 is 9 / 0.6 = 15
    assert (minutes[W0 + 2 * MIN].pue, minutes[W0 + 4 * MIN].pue) == (pytest.approx(1.5), pytest.approx(15.0))

    [alert] = await store.list_alerts()
    # still firing (minute 4 breaches), but from minute 4: minute 2's breach was restated away
    assert alert.state == "firing"
    assert alert.started_ms == W0 + 4 * MIN
    assert alert.fired_ms is not None
    assert alert.fired_ms >= alert.started_ms  # never fired before it started
    messages = [r.json() for r in http_receiver.requests(receiver_path)]
    assert {m["status"] for m in messages} == {"firing"}


async def test_a_rejudgement_that_fails_once_is_not_lost(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-judgement after a committed restatement fails once (the database away for a moment): the
    request is done all the same, and the restated windows are judged again at the accountant's next
    pass rather than never (a retry of the request restates nothing, so it would re-judge nothing)."""
    rule = '{name: pue_high, kpi: pue, op: ">", threshold: 2, keep_firing_for: 30m, severity: critical}'
    rig = Rig(store, _registry(rule, http_receiver.url_for(receiver_path), "en"))
    span = rig.proc.state.rules.rejudge_span
    failures: list[str] = []

    def fails_once(site_id: str, from_ms: int, to_ms: int) -> tuple[int, int] | None:
        if not failures:
            failures.append(site_id)
            raise StoreError("reading restated windows failed: connection lost", retryable=True)
        return span(site_id, from_ms, to_ms)

    monkeypatch.setattr(rig.proc.state.rules, "rejudge_span", fails_once)
    await _quiet_it_then_backlog(rig)
    assert failures == ["dc"], "the re-judgement never ran: the test tests nothing"
    await rig.drive(W0 + 6 * MIN + TICK, W0 + 8 * MIN)
    [minute2] = await store.kpi_series("dc", W0 + 2 * MIN, W0 + 3 * MIN)
    assert (minute2.pue, minute2.revision) == (pytest.approx(1.5), 1)
    [alert] = await store.list_alerts()
    assert (alert.state, alert.resolved_reason) == ("resolved", "restated")
    messages = [r.json() for r in http_receiver.requests(receiver_path)]
    assert [m["status"] for m in messages] == ["firing", "resolved"]
