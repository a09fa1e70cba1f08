"""End to end through real components: gmqtt publisher -> MQTT broker -> collector -> in-process bus ->
processor -> PostgreSQL -> API (uvicorn over HTTP). The acceptance scenarios of issue #2, with
hand-computed expectations.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from gmqtt import Client as MqttClient
from gmqtt.mqtt.constants import MQTTv311

from cli.stack import Stack, running_stack
from peakwatch.config import Registry, Settings
from tests.fixtures.receivers import HttpReceiver
from tests.support import bearer, eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MIN = 60_000
HUNAN_2023 = 0.4976

REGISTRY = """
sites:
  - id: dc-e2e
    name: E2E data centre
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
  - id: park-e2e
    name: E2E park
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
      - {id: grid-out, carrier: electricity, role: grid_export, unit: kWh}
      - {id: pv, carrier: electricity, role: pv_generation, unit: kWh}
      - {id: wind, carrier: electricity, role: wind_generation, unit: kWh}
      - {id: bess-charge, carrier: electricity, role: storage_charge, unit: kWh}
      - {id: bess-discharge, carrier: electricity, role: storage_discharge, unit: kWh}
      - {id: boiler-gas, carrier: natural_gas, role: boiler, unit: m3}
  - id: dc-gen
    name: Data centre with a diesel generator
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it-a, carrier: electricity, role: it_load, unit: kWh, zone: hall-a}
      - {id: crac-a, carrier: electricity, role: cooling, unit: kWh, zone: hall-a}
      - {id: grid, carrier: electricity, role: grid_import, unit: kWh}
      - {id: gen-out, carrier: electricity, role: generator_output, unit: kWh}
      - {id: gen-diesel, carrier: diesel, role: generator_fuel, unit: kg}
      - {id: water, carrier: water, role: water_supply, unit: m3}
  - id: park-pv
    name: Park exporting PV with a battery
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
      - {id: grid-out, carrier: electricity, role: grid_export, unit: kWh}
      - {id: pv, carrier: electricity, role: pv_generation, unit: kWh}
      - {id: bess-in, carrier: electricity, role: storage_charge, unit: kWh}
      - {id: bess-out, carrier: electricity, role: storage_discharge, unit: kWh}
      - {id: boiler, carrier: natural_gas, role: boiler, unit: m3}
      - {id: units, carrier: product, role: production_output, unit: count}
  - id: dc-alert
    name: Alerting data centre
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
  - id: dc-silent
    name: A data centre whose IT meter goes quiet
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
rules:
  - {name: pue_retrofit_line, kpi: pue, op: ">", threshold: 1.5, for: 5m, site_kinds: [data_centre]}
  - {name: meter_silent, silent_for: 3s, site_ids: [dc-silent], meter_roles: [it_load], severity: critical}
notifications:
  receivers:
    - name: oncall
      channels: [{type: webhook, url: "HOOK_URL"}]
    - name: nobody
  route:
    receiver: nobody
    routes: [{receiver: oncall, group_wait: 0s, group_interval: 1s, matchers: ['alertname="meter_silent"']}]
"""
HOOK_PATH = "/e2e-pipeline-oncall"


@pytest.fixture
async def stack(
    database_url: str, mqtt_url: str, tmp_path: Any, http_receiver: HttpReceiver
) -> AsyncIterator[Stack]:
    http_receiver.clear()
    settings = Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        api_port=free_port(),
        data_dir=tmp_path,
        mqtt_client_id=f"pw-e2e-{uuid.uuid4().hex[:8]}",
        # Short enough for a quick test, long enough that a loaded CI machine does not close a window
        # between two meters' messages (a site's event time follows its newest reading).
        allowed_lateness_ms=2_000,
        idle_close_ms=1_000,
        demo=False,
    )
    registry = Registry.from_text(REGISTRY.replace("HOOK_URL", http_receiver.url_for(HOOK_PATH)))
    async with running_stack(settings, registry, broker=False) as running:
        yield running


@pytest.fixture
async def publish(mqtt_url: str) -> AsyncIterator[Callable[[str, Any], Awaitable[None]]]:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = MqttClient(f"pw-e2e-pub-{uuid.uuid4().hex[:8]}")
    await client.connect(host, int(port), version=MQTTv311)

    async def send(topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        client.publish(topic, data, qos=1)

    yield send
    await client.disconnect()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    assert stack.store is not None
    headers = await bearer(stack.store)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10, headers=headers) as client:
        yield client


def window_start(minutes_ago: int) -> int:
    now = int(time.time() * 1000)
    return now - now % MIN - minutes_ago * MIN


async def latest(api: httpx.AsyncClient, site: str) -> dict[str, Any] | None:
    response = await api.get(f"/api/v1/sites/{site}/kpis/latest")
    return response.json() if response.status_code == 200 else None


async def kpi_at(api: httpx.AsyncClient, site: str, start_ms: int) -> dict[str, Any] | None:
    response = await api.get(f"/api/v1/sites/{site}/kpis", params={"from": start_ms, "to": start_ms + MIN})
    response.raise_for_status()
    rows = [row for row in response.json() if row["window_start_ms"] == start_ms]
    return rows[0] if rows else None


async def test_data_centre_pue_from_known_energies(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    t0 = window_start(5)
    await publish(
        "telemetry/dc-e2e/facility",
        [{"ts": t0, "energy_kwh": 10_000.0}, {"ts": t0 + MIN, "energy_kwh": 11_350.0}],
    )
    await publish(
        "telemetry/dc-e2e/it", [{"ts": t0, "energy_kwh": 5_000.0}, {"ts": t0 + MIN, "energy_kwh": 6_000.0}]
    )
    row = await eventually(lambda: kpi_at(api, "dc-e2e", t0))
    assert row["facility_kwh"] == pytest.approx(1350.0)
    assert row["it_kwh"] == pytest.approx(1000.0)
    assert row["pue"] == pytest.approx(1.35)
    assert row["interim"] is True
    assert row["carbon_intensity_kg_per_kwh"] == pytest.approx(HUNAN_2023)
    assert row["emissions_kg"] == pytest.approx(1350.0 * HUNAN_2023)
    assert row["completeness"] == pytest.approx(1.0)
    assert (await latest(api, "dc-e2e")) is not None


async def test_park_electrification_carbon_and_green_share(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    t0 = window_start(4)
    # Energy over the window, per meter (kWh; gas in m3).
    deltas = {
        "grid-in": 800.0,
        "grid-out": 100.0,
        "pv": 500.0,
        "wind": 100.0,
        "bess-charge": 50.0,
        "bess-discharge": 30.0,
    }
    for meter, delta in deltas.items():
        await publish(
            f"telemetry/park-e2e/{meter}",
            [{"ts": t0, "energy_kwh": 1000.0}, {"ts": t0 + MIN, "energy_kwh": 1000.0 + delta}],
        )
    await publish(
        "telemetry/park-e2e/boiler-gas", [{"ts": t0, "volume_m3": 20.0}, {"ts": t0 + MIN, "volume_m3": 120.0}]
    )
    # Hand computation:
    # electricity consumed = import - export + PV + wind + discharge - charge
    #                      = 800 - 100 + 500 + 100 + 30 - 50 = 1280 kWh
    # electricity kgce = 1280 * 0.1229 = 157.312; gas kgce = 100 m3 * 1.2143 = 121.43
    # electrification rate = 157.312 / (157.312 + 121.43) = 157.312 / 278.742
    # location-based electricity emissions = import 800 * 0.4976 = 398.08 kg
    # carbon intensity = 398.08 / 1280 = 0.311 kg/kWh
    # emissions = 398.08 + 100 m3 * 2.1622 = 614.30 kg
    # green-power share = (PV + wind - export) / consumed = (600 - 100) / 1280 = 0.390625
    row = await eventually(lambda: kpi_at(api, "park-e2e", t0))
    assert row["electricity_kwh"] == pytest.approx(1280.0)
    assert row["electrification_rate"] == pytest.approx(157.312 / 278.742)
    assert row["carbon_intensity_kg_per_kwh"] == pytest.approx(0.311)
    assert row["emissions_kg"] == pytest.approx(614.30)
    assert row["green_power_share"] == pytest.approx(0.390625)
    assert row["pue"] is None


async def test_replayed_duplicates_and_counter_reset(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    assert stack.store is not None
    t0 = window_start(8)
    readings = [{"ts": t0 + i * 10_000, "energy_kwh": 100.0 + 10.0 * i} for i in range(7)]  # 60 kWh
    it_readings = [{"ts": t0 + i * 10_000, "energy_kwh": 50.0 + 8.0 * i} for i in range(7)]  # 48 kWh
    await publish("telemetry/dc-e2e/facility", readings)
    await publish("telemetry/dc-e2e/it", it_readings)
    # replay the whole batch, and one reading twice more
    await publish("telemetry/dc-e2e/facility", readings)
    await publish("telemetry/dc-e2e/facility", readings[3])
    row = await eventually(lambda: kpi_at(api, "dc-e2e", t0))
    assert row["facility_kwh"] == pytest.approx(60.0)
    assert row["pue"] == pytest.approx(60.0 / 48.0)
    assert await stack.store.count_readings("dc-e2e") == 14

    # Next window: the facility register resets to 0 mid-window and keeps counting.
    t1 = t0 + MIN
    after_reset = [
        {"ts": t1 + 10_000, "energy_kwh": 1.0},
        {"ts": t1 + 20_000, "energy_kwh": 11.0},
        {"ts": t1 + 60_000, "energy_kwh": 51.0},
    ]
    await publish("telemetry/dc-e2e/facility", after_reset)
    await publish("telemetry/dc-e2e/it", [{"ts": t1 + 60_000, "energy_kwh": 98.0 + 40.0}])
    row = await eventually(lambda: kpi_at(api, "dc-e2e", t1))
    # 160 -> reset: the register restarted at zero, so the 10 s interval counts the new value 1 kWh;
    # then 10 + 40 = 50 kWh: 51 kWh in all, never negative, never the old 160 again.
    assert row["facility_kwh"] == pytest.approx(51.0)
    assert "reset" in row["flags"]
    assert row["facility_kwh"] >= 0


async def test_malformed_payloads_are_dead_lettered(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    now = int(time.time() * 1000)
    await publish("telemetry/dc-e2e/facility", b"{not json")
    await publish("telemetry/dc-e2e/facility", {"energy_kwh": 1.0})
    await publish("telemetry/dc-e2e/facility", {"ts": now, "energy_kwh": "12"})
    await publish("telemetry/dc-e2e/facility", {"ts": now + 86_400_000, "energy_kwh": 1.0})
    await publish("telemetry/dc-e2e/no-such-meter", {"ts": now, "energy_kwh": 1.0})
    await publish("telemetry/dc-e2e/facility", b'{"ts": %d, "energy_kwh": NaN}' % now)
    expected = {"malformed_json", "missing_ts", "wrong_type", "ts_in_future", "unknown_meter"}

    async def reasons() -> set[str] | None:
        response = await api.get("/api/v1/dead-letters")
        response.raise_for_status()
        got = {row["reason"] for row in response.json()}
        return (
            got
            if expected <= got and ({"non_finite", "malformed_json"} & got) and len(response.json()) >= 6
            else None
        )

    got = await eventually(reasons)
    assert expected <= got


async def test_pue_rule_fires_then_resolves(stack: Stack, publish: Any, api: httpx.AsyncClient) -> None:
    t0 = window_start(20)
    facility, it = 0.0, 0.0
    # Like live meters, both report every minute (interleaved; MQTT keeps one session's order).
    # Seven minutes at PUE 1.6, then two at PUE 1.2.
    for minute in range(10):
        if minute:
            pue = 1.6 if minute <= 7 else 1.2
            it += 100.0
            facility += 100.0 * pue
        await publish("telemetry/dc-alert/facility", {"ts": t0 + minute * MIN, "energy_kwh": facility})
        await publish("telemetry/dc-alert/it", {"ts": t0 + minute * MIN, "energy_kwh": it})

    async def resolved() -> dict[str, Any] | None:
        response = await api.get("/api/v1/alerts", params={"site_id": "dc-alert"})
        response.raise_for_status()
        rows = [r for r in response.json() if r["rule"] == "pue_retrofit_line"]
        assert rows, "no alert yet"
        assert rows[0]["state"] == "resolved", rows
        return rows[0]

    alert = await eventually(resolved)
    assert alert["fired_at"] is not None
    assert alert["severity"] == "warning"


async def test_late_reading_restates_the_window_and_the_api_shows_its_history(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    """Issue #3 through the real pipeline: the IT meter's reading for a window arrives after the window
    closed; the accountant restates it, and the API serves the new value and the old one as a revision."""
    t0 = window_start(12)
    await publish(
        "telemetry/dc-e2e/facility",
        [{"ts": t0, "energy_kwh": 20_000.0}, {"ts": t0 + MIN, "energy_kwh": 21_350.0}],
    )
    await publish("telemetry/dc-e2e/it", [{"ts": t0, "energy_kwh": 7_000.0}])
    # the window closes without IT energy: no PUE rather than a wrong one
    first = await eventually(lambda: kpi_at(api, "dc-e2e", t0))
    assert first["pue"] is None
    assert first["revision"] == 0
    # the IT reading that ends the window arrives late
    await publish("telemetry/dc-e2e/it", [{"ts": t0 + MIN, "energy_kwh": 8_000.0}])

    async def restated() -> dict[str, Any] | None:
        row = await kpi_at(api, "dc-e2e", t0)
        return row if row is not None and row["revision"] >= 1 else None

    row = await eventually(restated)
    assert row["pue"] == pytest.approx(1.35)
    assert row["it_kwh"] == pytest.approx(1000.0)
    history = (await api.get(f"/api/v1/sites/dc-e2e/kpis/1m/{t0}/revisions")).json()
    assert history["current"]["pue"] == pytest.approx(1.35)
    [revision] = history["revisions"]
    assert revision["reason"] == "late_data"
    assert revision["previous"]["pue"] is None
    assert revision["previous"]["it_kwh"] is None


async def publish_deltas(publish: Any, site: str, t0: int, deltas: dict[str, tuple[str, float]]) -> None:
    """Two register readings per meter, a minute apart, whose difference is the given amount."""
    for meter, (field, delta) in deltas.items():
        await publish(
            f"telemetry/{site}/{meter}", [{"ts": t0, field: 100.0}, {"ts": t0 + MIN, field: 100.0 + delta}]
        )


async def test_golden_data_centre_with_diesel_generator(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    """The golden scenario of tests/unit/test_domain_kpis_golden.py, through MQTT and the API."""
    t0 = window_start(6)
    await publish_deltas(
        publish,
        "dc-gen",
        t0,
        {
            "facility": ("energy_kwh", 1300.0),
            "it-a": ("energy_kwh", 1000.0),
            "crac-a": ("energy_kwh", 250.0),
            "grid": ("energy_kwh", 1100.0),
            "gen-out": ("energy_kwh", 200.0),
            "gen-diesel": ("mass_kg", 60.0),
            "water": ("volume_m3", 1.8),
        },
    )
    row = await eventually(lambda: kpi_at(api, "dc-gen", t0))
    assert row["pue"] == pytest.approx(1.3)
    assert row["gb40879_grade"] == "2"
    assert row["emissions_kg"] == pytest.approx(733.114)
    assert row["cue"] == pytest.approx(0.733114)
    assert row["total_kgce"] == pytest.approx(222.616)
    assert row["electrification_rate"] == pytest.approx(1.0)
    assert row["wue_l_per_kwh"] == pytest.approx(1.8)
    assert row["ppue"] == {"hall-a": pytest.approx(1.25)}
    assert row["completeness"] == pytest.approx(1.0)


async def test_golden_park_exporting_pv_with_a_battery(
    stack: Stack, publish: Any, api: httpx.AsyncClient
) -> None:
    t0 = window_start(6)
    await publish_deltas(
        publish,
        "park-pv",
        t0,
        {
            "grid-in": ("energy_kwh", 100.0),
            "grid-out": ("energy_kwh", 150.0),
            "pv": ("energy_kwh", 400.0),
            "bess-in": ("energy_kwh", 80.0),
            "bess-out": ("energy_kwh", 30.0),
            "boiler": ("volume_m3", 20.0),
            "units": ("count", 500.0),
        },
    )
    row = await eventually(lambda: kpi_at(api, "park-pv", t0))
    assert row["electricity_kwh"] == pytest.approx(300.0)
    assert row["renewable_consumed_kwh"] == pytest.approx(250.0)
    assert row["total_kgce"] == pytest.approx(61.156)
    assert row["electrification_rate"] == pytest.approx(36.87 / 61.156)
    assert row["electrification_rate_coal"] == pytest.approx(90.72 / 115.006)
    assert row["emissions_kg"] == pytest.approx(93.004)
    assert row["energy_intensity_kgce_per_unit"] == pytest.approx(0.122312)


async def test_a_silent_meter_fires_with_no_message_arriving(
    stack: Stack, publish: Any, api: httpx.AsyncClient, http_receiver: HttpReceiver
) -> None:
    """Staleness is evaluated on the clock: after the IT meter's last reading nothing more arrives, and
    the alert still fires; a reading resolves it."""
    t0 = window_start(5)
    await publish("telemetry/dc-silent/it", {"ts": t0, "energy_kwh": 1.0})

    async def alert(state: str) -> dict[str, Any] | None:
        response = await api.get("/api/v1/alerts", params={"site_id": "dc-silent"})
        response.raise_for_status()
        rows = [r for r in response.json() if r["fingerprint"] == "meter_silent@dc-silent/it"]
        return rows[0] if rows and rows[0]["state"] == state else None

    # the notifier hears of it from the processor's commit, with nothing arriving from the meter
    message = (await http_receiver.next(HOOK_PATH, timeout=30)).json()
    assert message["status"] == "firing"
    assert message["alerts"][0]["labels"] == {
        "alertname": "meter_silent",
        "site": "dc-silent",
        "severity": "critical",
        "meter": "it",
        "meter_role": "it_load",
        "site_kind": "data_centre",
    }
    firing = await eventually(lambda: alert("firing"), "staleness alert firing", timeout_s=30)
    assert firing["severity"] == "critical"
    assert "it" in firing["summary"]
    assert firing["value"] >= 3.0
    await publish("telemetry/dc-silent/it", {"ts": t0 + MIN, "energy_kwh": 2.0})
    await eventually(lambda: alert("resolved"), "staleness alert resolved", timeout_s=30)
    assert (await http_receiver.next(HOOK_PATH, timeout=30)).json()["status"] == "resolved"
