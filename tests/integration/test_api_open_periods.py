"""Periods in progress (issue 14): today, this hour, this month and the 12 months to date are served as
``open`` windows, the exact sums of the minutes closed so far, before the accountant stores them.

The data centre of ``test_accounting``: the facility meter adds 1.5 kWh and the IT meter 1 kWh every
10 s, so every closed minute is 9 kWh / 6 kWh. The processor and its accountant run on a real
PostgreSQL; the API reads what they stored (httpx ASGI transport).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import api.routes.kpis as kpi_routes
from api import create_app
from peakwatch.domain.models import ReadingBatch
from peakwatch.store import Store
from tests.integration.test_accounting import MIN, SETTINGS, W0, Rig, facility_at, it_at, reading, ticks
from tests.support import bearer

pytestmark = pytest.mark.integration

DAY = 1440 * MIN
FEB_1 = W0 + 31 * DAY  # 2026-02-01T00:00:00+08:00
FEB_1_2025 = W0 - 334 * DAY  # 2025-02-01T00:00:00+08:00: the 12 months to date run Feb 2025 .. Jan 2026
PROGRESS = ("status", "elapsed", "covered")


@asynccontextmanager
async def api_client(store: Store, rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, rig.registry, SETTINGS)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://peakwatch.test", headers=await bearer(store)
    ) as client:
        yield client


def clock_at(ms: int) -> Callable[[], int]:
    return lambda: ms


async def series(client: httpx.AsyncClient, period: str, from_ms: int, to_ms: int, **extra: Any) -> Any:
    response = await client.get(
        "/api/v1/sites/dc/kpis", params={"period": period, "from": from_ms, "to": to_ms, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_day_in_progress_is_the_sum_of_its_closed_minutes_and_closes_with_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(store)
    await rig.start()
    await rig.drive(W0, W0 + 3 * MIN)  # readings 00:00:00 .. 00:03:00 every 10 s
    rig.clock.ms = W0 + 3 * MIN + 30_000  # then silence: minute 2 idle-closes, the day goes on
    await rig.proc.flush()
    await rig.proc.account()
    # 00:03:36 local on the API's clock (raising=False: the test must fail on its assertions, not here)
    monkeypatch.setattr(kpi_routes, "now_ms", clock_at(W0 + 3 * MIN + 36_000), raising=False)

    async with api_client(store, rig) as client:
        assert await series(client, "1d", W0, W0 + DAY, include_open="false") == []  # nothing stored yet
        [day] = await series(client, "1d", W0, W0 + DAY)
        # minutes 0, 1, 2 closed, each 6 intervals of 1.5 kWh facility and 1 kWh IT: 3 x 9 = 27 kWh
        # facility, 3 x 6 = 18 kWh IT, PUE 27 / 18 = 1.5; grid factor (Hunan 2023) 0.4976 kg/kWh:
        # 27 x 0.4976 = 13.4352 kg; 27 x 0.1229 = 3.3183 kgce; demand of quarter 0: 27 kWh / 0.25 h = 108 kW
        assert (day["window_start_ms"], day["window_end_ms"], day["period"]) == (W0, W0 + DAY, "1d")
        assert day["status"] == "open"
        assert day["facility_kwh"] == pytest.approx(27.0)
        assert day["it_kwh"] == pytest.approx(18.0)
        assert day["electricity_kwh"] == pytest.approx(27.0)
        assert day["pue"] == pytest.approx(1.5)
        assert day["emissions_kg"] == pytest.approx(13.4352)
        assert day["electricity_kgce"] == pytest.approx(3.3183)
        assert day["max_demand_kw"] == pytest.approx(108.0)
        # completeness: 2 meters x 3 minutes present of 2 x 1440 expected = 6 / 2880; covered: the
        # 3 closed minutes of 1440; elapsed: 216 s of 86,400 s
        assert day["completeness"] == pytest.approx(6 / 2880)
        assert day["covered"] == pytest.approx(3 / 1440)
        assert day["elapsed"] == pytest.approx(216 / 86_400)
        assert day["revision"] == 0

        latest = (await client.get("/api/v1/sites/dc/kpis/latest", params={"period": "1d"})).json()
        assert latest == day
        closed_only = await client.get(
            "/api/v1/sites/dc/kpis/latest", params={"period": "1d", "include_open": "false"}
        )
        assert closed_only.status_code == 404
        csv = await client.get(
            "/api/v1/sites/dc/kpis.csv", params={"period": "1d", "from": W0, "to": W0 + DAY, "fields": "pue"}
        )
        assert csv.text == (
            "window_start,window_end,status,pue\r\n"
            "2026-01-01T00:00:00+08:00,2026-01-02T00:00:00+08:00,open,1.5\r\n"
        )

        # every longer period in progress holds the same three minutes
        for period, start, end in (
            ("15m", W0, W0 + 15 * MIN),
            ("1h", W0, W0 + 60 * MIN),
            ("1mo", W0, FEB_1),
            ("12mo", FEB_1_2025, FEB_1),
        ):
            [window] = await series(client, period, start, end)
            assert (window["window_start_ms"], window["window_end_ms"]) == (start, end), period
            assert window["status"] == "open"
            assert (window["facility_kwh"], window["it_kwh"]) == (pytest.approx(27.0), pytest.approx(18.0))
            # covered: the window's time before 00:03 (for 12mo, Feb 2025 .. Dec 2025 too)
            assert window["covered"] == pytest.approx((W0 + 3 * MIN - start) / (end - start))
            # 1-minute windows are never open: the three closed ones
            assert [w["status"] for w in await series(client, "1m", W0, W0 + DAY)] == ["closed"] * 3

        # the day ends with no more readings: the accountant stores it from the same minutes
        rig.clock.ms = W0 + DAY + 2 * MIN
        await rig.proc.flush()
        await rig.proc.account()
        [closed] = await series(client, "1d", W0, W0 + DAY)
    assert closed["status"] == "closed"
    assert (closed["covered"], closed["elapsed"]) == (1.0, 1.0)
    same = {k: v for k, v in day.items() if k not in PROGRESS}
    assert {k: v for k, v in closed.items() if k not in PROGRESS} == same  # exactly, not approximately


async def test_closed_minutes_the_accountant_has_not_rolled_up_yet_count(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a quarter hour's end and the accountant's next pass, the quarter is composed from its
    minutes (and shown, not yet stored, as open) rather than missing from the hour."""
    rig = Rig(store)
    await rig.start()
    for ts in ticks(W0, W0 + 17 * MIN):  # no accountant pass: nothing longer than a minute is stored
        await rig.bus.publish(
            ReadingBatch("dc", [reading("facility", ts, facility_at(ts)), reading("it", ts, it_at(ts))])
        )
        rig.clock.ms = ts + 200
        await rig.proc.run_once(timeout_s=0)
    await rig.proc.flush()  # minutes 0..15 closed (watermark 16:50)
    monkeypatch.setattr(kpi_routes, "now_ms", clock_at(W0 + 17 * MIN), raising=False)
    async with api_client(store, rig) as client:
        assert await series(client, "15m", W0, W0 + 60 * MIN, include_open="false") == []
        quarters = await series(client, "15m", W0, W0 + 60 * MIN)
        # quarter 0: 15 closed minutes x 9 = 135 kWh, all covered; quarter 1: minute 15 only, 9 kWh
        assert [(q["status"], q["facility_kwh"], q["covered"]) for q in quarters] == [
            ("open", pytest.approx(135.0), 1.0),
            ("open", pytest.approx(9.0), pytest.approx(1 / 15)),
        ]
        [hour] = await series(client, "1h", W0, W0 + 60 * MIN)
        assert hour["facility_kwh"] == pytest.approx(144.0)  # 135 + 9
        assert hour["max_demand_kw"] == pytest.approx(540.0)  # 135 kWh / 0.25 h
        await rig.proc.account()
        [stored, still_open] = await series(client, "15m", W0, W0 + 60 * MIN)
    assert (stored["status"], still_open["status"]) == ("closed", "open")
    assert {k: v for k, v in stored.items() if k not in PROGRESS} == {
        k: v for k, v in quarters[0].items() if k not in PROGRESS
    }


async def test_a_window_the_accountant_stores_during_a_series_request_is_in_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored and the open windows come from one snapshot: when the accountant stores quarter 0 right
    after the request read the stored quarters (none yet), quarter 0 is still served, as open, not lost
    between the two reads."""
    rig = Rig(store)
    await rig.start()
    for ts in ticks(W0, W0 + 17 * MIN):  # no accountant pass: nothing longer than a minute is stored
        await rig.bus.publish(
            ReadingBatch("dc", [reading("facility", ts, facility_at(ts)), reading("it", ts, it_at(ts))])
        )
        rig.clock.ms = ts + 200
        await rig.proc.run_once(timeout_s=0)
    await rig.proc.flush()  # minutes 0..15 closed (watermark 16:50)
    monkeypatch.setattr(kpi_routes, "now_ms", clock_at(W0 + 17 * MIN), raising=False)
    read_stored = store.kpi_series
    stored_meanwhile: list[int] = []

    async def then_the_accountant_stores(*args: Any, **kwargs: Any) -> Any:
        windows = await read_stored(*args, **kwargs)
        stored_meanwhile.append(await rig.proc.account())  # commits quarter 0 (and the minutes' rollups)
        return windows

    monkeypatch.setattr(store, "kpi_series", then_the_accountant_stores)
    async with api_client(store, rig) as client:
        quarters = await series(client, "15m", W0, W0 + 60 * MIN)
    assert stored_meanwhile[0] > 0, "the accountant stored nothing between the reads: the test tests nothing"
    # the request's snapshot predates quarter 0's storing: both quarters open, 15 x 9 = 135 kWh and 9 kWh
    assert [(q["window_start_ms"], q["status"], q["facility_kwh"]) for q in quarters] == [
        (W0, "open", pytest.approx(135.0)),
        (W0 + 15 * MIN, "open", pytest.approx(9.0)),
    ]
