"""``peakwatch simulate --config`` as a process: a registry of our own, through mosquitto, into the
collector's decode path (MqttSource -> Collector -> MemoryBus).

The broker is found through the running stack's card (``cli.running``) in a data directory of the
test's own, never through ``--mqtt-url``: that is what a user typing ``simulate`` beside ``up`` gets.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import yaml
from prometheus_client import CollectorRegistry

from cli.running import StackCard, card_path, write_card
from collector import Collector, CollectorMetrics, DecodeContext, MqttSource
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry
from peakwatch.domain.devices import Device, DeviceKind, acl_file, mosquitto_hash, password_file
from peakwatch.domain.models import DeadLetter, Reading, Register
from tests.fixtures.mqtt import mosquitto_path, running_mosquitto, unique_prefix
from tests.support import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STEP_S = 10
DURATION_S = 20 * 60
STEPS = DURATION_S // STEP_S

# Neither demo site nor demo meter ids; several roles, carriers, units and register kinds.
REGISTRY_DOC = {
    "sites": [
        {
            "id": "brewery-foshan",
            "name": "Foshan brewery",
            "kind": "park",
            "timezone": "Asia/Shanghai",
            "meters": [
                {"id": "main-in", "carrier": "electricity", "role": "grid_import", "unit": "MWh",
                 "rated_kw": 600, "register_max": 1000},
                {"id": "roof-pv", "carrier": "electricity", "role": "pv_generation", "unit": "kW",
                 "rated_kw": 250},
                {"id": "bottling", "carrier": "electricity", "role": "process_load", "unit": "Wh",
                 "register": "interval", "rated_kw": 300},
                {"id": "chiller", "carrier": "electricity", "role": "heat_pump", "unit": "kWh"},
                {"id": "steam-boiler", "carrier": "natural_gas", "role": "boiler", "unit": "l",
                 "rated_kw": 40},
                {"id": "bess-out", "carrier": "electricity", "role": "storage_discharge", "unit": "kWh",
                 "register": "interval"},
                {"id": "steam", "carrier": "steam", "role": "process_heat", "unit": "t"},
            ],
        },
        {
            "id": "edge-dc",
            "name": "Edge data centre",
            "kind": "data_centre",
            "timezone": "Europe/Berlin",
            "meters": [
                {"id": "total", "carrier": "electricity", "role": "facility_total", "unit": "kWh",
                 "rated_kw": 200},
                {"id": "rack-a", "carrier": "electricity", "role": "it_load", "unit": "W", "zone": "a"},
                {"id": "rack-b", "carrier": "electricity", "role": "it_load", "unit": "kWh",
                 "register": "interval", "zone": "b"},
                {"id": "crac", "carrier": "electricity", "role": "cooling", "unit": "MWh"},
                {"id": "lights", "carrier": "electricity", "role": "lighting", "unit": "kWh"},
            ],
        },
    ]
}  # fmt: skip
UNSIMULATED = {("brewery-foshan", "steam")}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}
    return {**env, "COLUMNS": "200", "NO_COLOR": "1"}


def _simulate(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cli.main", "simulate", *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout_s)


def _card(data_dir: Path, mqtt_url: str, database_url: str = "postgresql://127.0.0.1:1/none") -> None:
    """The card a running ``peakwatch up`` leaves; this test process stands in for it (alive pid)."""
    write_card(
        StackCard(
            pid=os.getpid(),
            started_at_ms=int(time.time() * 1000),
            database_url=database_url,
            mqtt_url=mqtt_url,
            api_url="http://127.0.0.1:1",
            data_dir=str(data_dir),
        )
    )


async def _collect(
    mqtt_url: str, registry: Registry, prefix: str, run: asyncio.Future[subprocess.CompletedProcess[str]]
) -> tuple[list[Reading], list[DeadLetter], subprocess.CompletedProcess[str]]:
    """Everything the collector hands to the bus while ``run`` publishes, until it has been quiet."""
    bus = MemoryBus()
    metrics = CollectorMetrics(CollectorRegistry())
    ctx = DecodeContext(registry=registry, topic_prefix=prefix)
    handle = Collector(bus, ctx, metrics).handle
    client_id = f"collector-{uuid.uuid4().hex[:10]}"
    source = MqttSource(
        mqtt_url, client_id, ctx.topic_filter, 1, handle, connect_timeout_s=15, metrics=metrics
    )
    readings: list[Reading] = []
    dead: list[DeadLetter] = []
    await source.start()
    try:
        quiet_since = time.monotonic()
        while not run.done() or time.monotonic() - quiet_since < 2.0:
            polled = await bus.poll(timeout_s=0.2)
            if polled.batches or polled.dead_letters:
                quiet_since = time.monotonic()
            readings.extend(r for b in polled.batches for r in b.readings)
            dead.extend(polled.dead_letters)
    finally:
        await source.stop()
    return readings, dead, run.result()


def _rate_kw(meter_register: Register, previous: Reading, reading: Reading) -> float:
    """Canonical rate (kW, m3/h) the reading implies over the interval since ``previous``."""
    hours = (reading.ts_ms - previous.ts_ms) / 3_600_000
    if meter_register is Register.POWER:
        assert reading.power_kw is not None
        return reading.power_kw
    value = reading.energy_kwh if reading.energy_kwh is not None else reading.volume_m3
    before = previous.energy_kwh if previous.energy_kwh is not None else previous.volume_m3
    assert value is not None
    assert before is not None
    return (value if meter_register is Register.INTERVAL else value - before) / hours


async def test_simulate_feeds_the_users_registry_through_the_running_stacks_broker(
    mqtt_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "my-sites.yaml"
    config.write_text(yaml.safe_dump(REGISTRY_DOC), encoding="utf-8")
    registry = Registry.from_yaml(config)
    data_dir = tmp_path / "data"
    _card(data_dir, mqtt_url)
    prefix = unique_prefix()
    run = asyncio.ensure_future(
        asyncio.to_thread(
            _simulate,
            "--config", str(config), "--data-dir", str(data_dir), "--topic-prefix", prefix,
            "--speed", "max", "--start", "-30m", "--duration", f"{DURATION_S}s", "--step", f"{STEP_S}s",
            "--quiet",
        )
    )  # fmt: skip
    readings, dead, result = await _collect(mqtt_url, registry, prefix, run)

    assert result.returncode == 0, result.stderr
    assert dead == [], [(d.reason, d.source, d.detail) for d in dead[:5]]
    assert "brewery-foshan/steam" in result.stderr
    assert "process_heat" in result.stderr
    by_meter: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for r in readings:
        by_meter[(r.site_id, r.meter_id)].append(r)
    expected = {(m.site_id, m.id) for m in registry.meters.values()} - UNSIMULATED
    assert set(by_meter) == expected
    for key, rows in by_meter.items():
        assert len(rows) == STEPS, key
        meter = registry.meter(*key)
        assert meter is not None
        rows.sort(key=lambda r: r.ts_ms)
        rates = [_rate_kw(meter.register, a, b) for a, b in itertools.pairwise(rows)]
        # a register never runs backwards (no rollover is due in 20 minutes), and no reading
        # implies more than the rated power (0.1 kW: the payload's rounding over a 10 s step)
        assert min(rates) >= 0, key
        if meter.rated_kw is not None:
            assert max(rates) <= meter.rated_kw + 0.1, (key, max(rates))
    # roles keep the templates' physics: the data centre's PUE is a data centre's PUE
    it_kwh = sum(_rate_kw(Register.POWER, r, r) for r in by_meter[("edge-dc", "rack-a")]) * STEP_S / 3600
    it_kwh += sum(r.energy_kwh or 0.0 for r in by_meter[("edge-dc", "rack-b")])
    total = by_meter[("edge-dc", "total")]
    facility_kwh = (total[-1].energy_kwh or 0.0) - (total[0].energy_kwh or 0.0)
    assert 1.05 < facility_kwh / it_kwh < 2.0, facility_kwh / it_kwh


async def test_simulate_faults_and_site_choice_apply_to_a_users_registry(
    mqtt_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "my-sites.yaml"
    config.write_text(yaml.safe_dump(REGISTRY_DOC), encoding="utf-8")
    registry = Registry.from_yaml(config)
    prefix = unique_prefix()
    start_ms = (int(time.time() * 1000) - 30 * 60_000) // 60_000 * 60_000
    reset_ms = start_ms + 10 * 60_000
    run = asyncio.ensure_future(
        asyncio.to_thread(
            _simulate,
            "--config", str(config), "--mqtt-url", mqtt_url, "--topic-prefix", prefix, "--site", "edge-dc",
            "--speed", "max", "--start", str(start_ms), "--duration", f"{DURATION_S}s",
            "--reset-at", str(reset_ms), "--reset-meter", "edge-dc/lights", "--duplicate", "0.05", "--quiet",
        )
    )  # fmt: skip
    readings, dead, result = await _collect(mqtt_url, registry, prefix, run)

    assert result.returncode == 0, result.stderr
    assert dead == []
    assert {r.site_id for r in readings} == {"edge-dc"}
    keys = [(r.meter_id, r.ts_ms) for r in readings]
    assert len(keys) > len(set(keys)) == 5 * STEPS  # duplicates on top of every reading
    lights = sorted({r.ts_ms: r.energy_kwh or 0.0 for r in readings if r.meter_id == "lights"}.items())
    before = [v for ts, v in lights if ts < reset_ms]
    after = [v for ts, v in lights if ts >= reset_ms]
    assert before[-1] > 100
    assert after[0] < 1
    assert after == sorted(after)
    assert after[-1] > after[0]


async def test_simulate_continues_the_registers_the_running_stack_stored(
    mqtt_url: str, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "my-sites.yaml"
    config.write_text(yaml.safe_dump(REGISTRY_DOC), encoding="utf-8")
    registry = Registry.from_yaml(config)
    last_ts = datetime.fromtimestamp((time.time() - 120) // STEP_S * STEP_S, UTC)
    # what the stack's processor stored last (canonical units: kWh), for two meters of the registry
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO meter_state (site_id, meter_id, last_ts, last_value, last_seen) "
            "VALUES ($1, $2, $3, $4, $3)",
            [("brewery-foshan", "main-in", last_ts, 543_210.0), ("edge-dc", "total", last_ts, 98_765.4)],
        )
    finally:
        await connection.close()
    data_dir = tmp_path / "data"
    _card(data_dir, mqtt_url, database_url)
    prefix = unique_prefix()
    run = asyncio.ensure_future(
        asyncio.to_thread(
            _simulate,
            "--config", str(config), "--data-dir", str(data_dir), "--topic-prefix", prefix,
            "--speed", "max", "--backfill", "10m", "--count", "5", "--quiet",
        )
    )  # fmt: skip
    readings, dead, result = await _collect(mqtt_url, registry, prefix, run)

    assert result.returncode == 0, result.stderr
    assert dead == []
    first = {r.meter_id: r for r in sorted(readings, key=lambda r: -r.ts_ms)}
    # event time continues at the stored reading (not 10 minutes back), registers from the stored values
    assert first["main-in"].ts_ms == int(last_ts.timestamp() * 1000)
    assert first["main-in"].energy_kwh == pytest.approx(543_210.0)  # sent as 543.21 MWh
    assert first["total"].energy_kwh == pytest.approx(98_765.4)


def test_an_unreachable_broker_from_the_card_is_named_with_where_it_came_from(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "my-sites.yaml"
    config.write_text(yaml.safe_dump(REGISTRY_DOC), encoding="utf-8")
    data_dir = tmp_path / "data"
    _card(data_dir, f"mqtt://127.0.0.1:{port}")

    result = _simulate("--config", str(config), "--data-dir", str(data_dir), "--count", "1", "--quiet")

    assert result.returncode == 2
    text = " ".join(result.stderr.split())
    assert f"cannot connect to MQTT broker 127.0.0.1:{port}" in text
    assert str(card_path(data_dir)) in text


@pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (the embedded broker has no ACL files)")
async def test_simulate_publishes_as_a_device_to_a_broker_that_wants_credentials(tmp_path: Path) -> None:
    config = tmp_path / "my-sites.yaml"
    config.write_text(yaml.safe_dump(REGISTRY_DOC), encoding="utf-8")
    registry = Registry.from_yaml(config)
    prefix = unique_prefix()
    secrets = {"gw-edge": "edge-secret", "collector-t": "collector-secret"}
    salt = b"twelve-bytes"  # mosquitto reads salts of SALT_BYTES only
    accounts = (("gw-edge", DeviceKind.DEVICE, "edge-dc"), ("collector-t", DeviceKind.COLLECTOR, None))
    devices = [
        Device(id=name, kind=kind, site_id=site, password_hash=mosquitto_hash(secret, salt), created_ms=0)
        for (name, kind, site), secret in zip(accounts, secrets.values(), strict=True)
    ]
    (tmp_path / "passwd").write_text(password_file(devices), encoding="utf-8")
    (tmp_path / "acl").write_text(acl_file(devices, prefix), encoding="utf-8")
    extra = f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
    if os.geteuid() == 0:
        extra += "user root\n"  # as in test_broker_credentials: mosquitto must read the owner-only files
    with running_mosquitto(workdir=tmp_path, allow_anonymous=False, extra_config=extra) as url:
        address = url.removeprefix("mqtt://")
        data_dir = tmp_path / "data"
        _card(data_dir, url)  # the card holds no credentials
        refused = _simulate("--config", str(config), "--data-dir", str(data_dir), "--count", "1", "--quiet")
        run = asyncio.ensure_future(
            asyncio.to_thread(
                _simulate,
                "--config", str(config), "--mqtt-url", f"mqtt://gw-edge:{secrets['gw-edge']}@{address}",
                "--site", "edge-dc", "--topic-prefix", prefix, "--speed", "max", "--start", "-30m",
                "--count", "6", "--quiet",
            )
        )  # fmt: skip
        collector_url = f"mqtt://collector-t:{secrets['collector-t']}@{address}"
        readings, dead, result = await _collect(collector_url, registry, prefix, run)

    assert refused.returncode == 2
    assert "device credential" in " ".join(refused.stderr.split())
    assert result.returncode == 0, result.stderr
    assert dead == []
    assert len(readings) == 5 * 6  # the five meters of edge-dc, six steps each
