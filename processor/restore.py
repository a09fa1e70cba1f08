"""Restart and hand-over: fill a fresh ``StepState`` from the store, so the sites go on as if the
processor had never stopped.

Meter baselines come from ``load_meter_states``; a baseline that was a drop waits for the next reading
to confirm it (or prove it a glitch). Each site's event time is set to at least the end of its latest
stored KPI window plus the allowed lateness (so no written window is closed again) and at least its
newest meter reading; the amounts of windows that can still be open (starting at or after the smallest
restored watermark minus one window) are reloaded with ``load_intervals`` so the window spanning the
restart is completed, not restarted; rule states come from ``load_open_alerts``. Window flags (reset,
rollover ...) of windows open at the restart are not restored: they stay in the meter events table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from peakwatch.config import Registry
from peakwatch.domain.models import MeterState
from processor.ports import ProcessorStore
from processor.step import StepState

log = logging.getLogger(__name__)

BEFORE_BASELINE = 3
"""Stored readings before a meter's baseline a restart looks at to find the drop the baseline may be
(readings without the meter's main quantity, such as a power sample on an energy meter, are skipped)."""


async def restore(
    state: StepState,
    store: ProcessorStore,
    registry: Registry,
    *,
    now_ms: int,
    lateness_ms: int,
    owns: Callable[[str], bool] | None,
) -> None:
    """Fill ``state`` from ``store``; ``owns`` (shared bus): the alerts of this processor's sites only."""
    states = await store.load_meter_states()
    state.tracker.restore(states)
    state.tracker.suspect_drops(await store.load_readings_before_baselines(BEFORE_BASELINE))
    watermarks = await _restore_event_time(state, store, states, now_ms=now_ms, lateness_ms=lateness_ms)
    if watermarks:
        restored = 0
        for interval in await store.load_intervals(min(watermarks) - state.window_ms):
            site_windows = state.windows.get(interval.site_id)
            if site_windows is None or registry.meter(interval.site_id, interval.meter_id) is None:
                continue
            if not site_windows.is_closed(interval.window_start_ms):
                site_windows.add(interval.meter_id, interval.window_start_ms, interval.amount)
                restored += 1
        log.info("restored %d meter states, %d open-window amounts", len(states), restored)
    alerts = await store.load_open_alerts()
    # a shared bus: only this processor's sites (any site hashes to one owner, even one no longer in the
    # registry, whose alerts that owner closes)
    state.rules.restore(alerts if owns is None else [a for a in alerts if owns(a.site_id)])


async def _restore_event_time(
    state: StepState, store: ProcessorStore, states: list[MeterState], *, now_ms: int, lateness_ms: int
) -> list[int]:
    """Set each site's event time and frontiers from what is stored; returns the restored watermarks."""
    newest_ts: dict[str, int] = {}
    for meter_state in states:
        if meter_state.last_ts_ms > newest_ts.get(meter_state.site_id, meter_state.last_ts_ms - 1):
            newest_ts[meter_state.site_id] = meter_state.last_ts_ms
    watermarks: list[int] = []
    for site_id, site_windows in state.windows.items():
        candidates: list[int] = []
        latest = await store.latest_kpis(site_id)
        if latest is not None:
            candidates.append(latest.end_ms + lateness_ms)
            state.written_end_ms[site_id] = latest.end_ms
            state.committed_end_ms[site_id] = state.closed_end_ms[site_id] = latest.end_ms
        if site_id in newest_ts:
            candidates.append(newest_ts[site_id])
        if candidates:
            site_windows.restore(max(candidates), now_ms)
            watermarks.append(max(candidates) - lateness_ms)
    return watermarks
