"""In-memory fakes of the edges, for unit tests of the logic (integration tests use the real ones).

``FakeStore`` implements the processor's side of ``peakwatch.store.Store`` with the documented write
semantics: readings idempotent on (site, meter, ts), meter states upserted, intervals added to
existing rows, events appended, KPI windows replaced, alerts upserted by fingerprint (one open alert
per fingerprint), dead letters appended; one ``write`` is all-or-nothing.
"""

from __future__ import annotations

import copy
from collections import defaultdict

from peakwatch.config import Registry
from peakwatch.domain.models import (
    DeadLetter,
    KpiWindow,
    MeterEvent,
    MeterInterval,
    MeterState,
    ProcessedBatch,
    Reading,
)
from peakwatch.errors import StoreError
from peakwatch.store.records import AlertRecord

_OPEN = ("pending", "firing")


class FakeStore:
    def __init__(self) -> None:
        self.readings: dict[tuple[str, str, int], Reading] = {}
        self.meter_states: dict[tuple[str, str], MeterState] = {}
        self.intervals: dict[tuple[str, str, int], float] = defaultdict(float)
        self.events: list[MeterEvent] = []
        self.kpi_windows: dict[tuple[str, int, int], KpiWindow] = {}
        self.alerts: list[AlertRecord] = []
        self.dead_letters: list[DeadLetter] = []
        self.writes: list[ProcessedBatch] = []
        """Every batch successfully written, in order."""
        self.epochs: dict[str, int] = {}
        """``claim_sites``: each site's ownership epoch."""
        self.attempts = 0
        self.fail_next: list[StoreError] = []
        """Errors the next ``write`` calls raise, one per call, before touching anything."""

    # ------------------------------------------------------------------ processor side

    async def write(self, batch: ProcessedBatch) -> None:
        self.attempts += 1
        if self.fail_next:
            raise self.fail_next.pop(0)
        for r in batch.readings:
            self.readings.setdefault((r.site_id, r.meter_id, r.ts_ms), r)
        for s in batch.meter_states:
            self.meter_states[(s.site_id, s.meter_id)] = s
        for iv in batch.intervals:
            self.intervals[(iv.site_id, iv.meter_id, iv.window_start_ms)] += iv.amount
        self.events.extend(batch.events)
        for w in batch.kpi_windows:
            self.kpi_windows[(w.site_id, w.start_ms, w.end_ms)] = w
        for ch in batch.alerts:
            self._upsert_alert(
                ch.fingerprint,
                ch.rule,
                ch.site_id,
                ch.state,
                ch.severity,
                ch.summary,
                ch.value,
                ch.started_ms,
                ch.at_ms,
            )
        self.dead_letters.extend(batch.dead_letters)
        self.writes.append(copy.copy(batch))

    def _upsert_alert(
        self,
        fingerprint: str,
        rule: str,
        site_id: str,
        state: str,
        severity: str,
        summary: str,
        value: float | None,
        started_ms: int,
        at_ms: int,
    ) -> None:
        for i, a in enumerate(self.alerts):
            if a.fingerprint == fingerprint and a.state in _OPEN:
                self.alerts[i] = AlertRecord(
                    id=a.id,
                    fingerprint=fingerprint,
                    rule=rule,
                    site_id=site_id,
                    state=state,
                    severity=severity,
                    summary=summary,
                    value=value,
                    started_ms=a.started_ms,
                    fired_ms=at_ms if state == "firing" and a.fired_ms is None else a.fired_ms,
                    resolved_ms=at_ms if state == "resolved" else None,
                    updated_ms=at_ms,
                )
                return
        if state in _OPEN:
            self.alerts.append(
                AlertRecord(
                    id=len(self.alerts) + 1,
                    fingerprint=fingerprint,
                    rule=rule,
                    site_id=site_id,
                    state=state,
                    severity=severity,
                    summary=summary,
                    value=value,
                    started_ms=started_ms,
                    fired_ms=at_ms if state == "firing" else None,
                    resolved_ms=None,
                    updated_ms=at_ms,
                )
            )

    async def load_meter_states(self) -> list[MeterState]:
        return list(self.meter_states.values())

    async def load_readings_before_baselines(self, count: int) -> list[Reading]:
        return []

    async def load_intervals(self, since_ms: int) -> list[MeterInterval]:
        return [
            MeterInterval(site_id=s, meter_id=m, window_start_ms=w, amount=a)
            for (s, m, w), a in self.intervals.items()
            if w >= since_ms
        ]

    async def load_open_alerts(self) -> list[AlertRecord]:
        return [a for a in self.alerts if a.state in _OPEN]

    async def latest_kpis(self, site_id: str) -> KpiWindow | None:
        windows = [w for (s, _, _), w in self.kpi_windows.items() if s == site_id]
        return max(windows, key=lambda w: w.start_ms, default=None)

    async def claim_sites(self, sites: list[str], owner: str) -> dict[str, int]:
        for site in sites:
            self.epochs[site] = self.epochs.get(site, 0) + 1
        return {site: self.epochs[site] for site in sites}

    # ------------------------------------------------------------------ test helpers

    def windows_of(self, site_id: str) -> list[KpiWindow]:
        return sorted(
            (w for (s, _, _), w in self.kpi_windows.items() if s == site_id), key=lambda w: w.start_ms
        )

    def meter_total(self, site_id: str, meter_id: str) -> float:
        return sum(a for (s, m, _), a in self.intervals.items() if (s, m) == (site_id, meter_id))


# ---------------------------------------------------------------------- registries for processor tests

PUE_RULE_YAML = """
rules:
  - name: pue_retrofit_line
    kpi: pue
    op: ">"
    threshold: 1.5
    for: 5m
    severity: critical
    summary: "PUE {value:.2f} above the 1.5 retrofit line at {site}"
    site_kinds: [data_centre]
"""


def make_registry(*, rules: bool = True) -> Registry:
    """A data centre (facility, IT, an interval-register cooling meter) and a small park."""
    doc = f"""
sites:
  - id: dc
    name: Test DC
    kind: data_centre
    meters:
      - {{id: facility, carrier: electricity, role: facility_total, unit: kWh, register_max: 999999.99}}
      - {{id: it, carrier: electricity, role: it_load, unit: kWh}}
      - {{id: cooling, carrier: electricity, role: cooling, unit: kWh, register: interval}}
  - id: park
    name: Test park
    kind: park
    meters:
      - {{id: grid-in, carrier: electricity, role: grid_import, unit: kWh}}
      - {{id: gas, carrier: natural_gas, role: boiler, unit: m3}}
{PUE_RULE_YAML if rules else ""}
"""
    return Registry.from_text(doc, source="test registry")
