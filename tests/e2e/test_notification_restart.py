"""``peakwatch up`` killed (SIGKILL) with a notified alert firing and another alert's ``for`` timer
running: after the restart nothing is notified twice and the timer goes on where it was (the alert
fires when the breach has held its ``for``, counted from before the kill). Real processes: mosquitto,
PostgreSQL, ``peakwatch up``, an HTTP receiver standing in for the on-call webhook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import pytest

from peakwatch.net import free_port
from peakwatch.store import Store
from tests.fixtures.mqtt import acknowledged, publisher
from tests.fixtures.receivers import HttpReceiver
from tests.support import eventually

pytestmark = pytest.mark.e2e

MIN = 60_000
REGISTRY = """
sites:
  - id: dc-restart
    name: Restart DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
  - id: quiet
    name: A site whose only meter stops
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
rules:
  - {name: pue_high, kpi: pue, op: ">", threshold: 1.5, for: 3m, site_ids: [dc-restart]}
  - {name: meter_silent, silent_for: 2s, site_ids: [quiet]}
notifications:
  receivers:
    - name: oncall
      channels: [{type: webhook, url: "HOOK_URL"}]
  route: {receiver: oncall, group_by: ["..."], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
"""


def start_up(
    tmp_path: Path, database_url: str, mqtt_url: str, hook: str, log: Path, client_id: str
) -> subprocess.Popen[bytes]:
    config = tmp_path / "restart.yaml"
    config.write_text(REGISTRY.replace("HOOK_URL", hook), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")},
        "PEAKWATCH_MQTT_CLIENT_ID": client_id,
        # no idle close: the test decides which windows close (by the readings it sends), not the clock
        "PEAKWATCH_IDLE_CLOSE_MS": "3600000",
    }
    cmd = [
        sys.executable, "-m", "cli.main", "up", "--no-demo", "--config", str(config),
        "--data-dir", str(tmp_path / "data"), "--database-url", database_url, "--mqtt-url", mqtt_url,
        "--api-port", str(free_port()),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


async def test_a_killed_peakwatch_neither_repeats_nor_forgets(
    database_url: str, mqtt_url: str, tmp_path: Path, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    hook = http_receiver.url_for(receiver_path)
    log = tmp_path / "up.log"
    client_id = f"pw-restart-{uuid.uuid4().hex[:8]}"  # the same session across the restart
    w0 = (time.time_ns() // 1_000_000 // MIN - 30) * MIN  # half an hour ago: plain event time
    facility, it = 1000.0, 500.0

    async def dc_until(end_ms: int, start_ms: int) -> None:
        """Facility and IT readings every 10 s over [start_ms, end_ms]: PUE 2.0."""
        nonlocal facility, it
        async with publisher(mqtt_url) as client:
            for ts in range(start_ms, end_ms + 1, 10_000):
                facility += 2.0
                it += 1.0
                client.publish(
                    "telemetry/dc-restart/facility",
                    msgspec.json.encode({"ts": ts, "energy_kwh": facility}),
                    qos=1,
                )
                client.publish(
                    "telemetry/dc-restart/it", msgspec.json.encode({"ts": ts, "energy_kwh": it}), qos=1
                )
            await acknowledged(client)

    store = await Store.connect(database_url)
    proc = start_up(tmp_path, database_url, mqtt_url, hook, log, client_id)
    try:
        await eventually(lambda: "peakwatch is running" in log.read_text(), "peakwatch up started")
        async with publisher(mqtt_url) as client:
            client.publish(
                "telemetry/quiet/grid-in", msgspec.json.encode({"ts": w0, "energy_kwh": 1.0}), qos=1
            )
            await acknowledged(client)
        silent = (await http_receiver.next(receiver_path, timeout=30)).json()
        assert (silent["status"], silent["alerts"][0]["labels"]["alertname"]) == ("firing", "meter_silent")

        # PUE 2.0 from w0: windows w0 and w0+1min close (the reading at w0+130 s passes their end plus
        # the 10 s lateness): the rule has held 2 of its 3 minutes
        await dc_until(w0 + 130_000, w0)

        async def pending() -> bool:
            return any(a.rule == "pue_high" and a.state == "pending" for a in await store.list_alerts())

        await eventually(pending, "pue_high pending")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

        proc = start_up(tmp_path, database_url, mqtt_url, hook, log, client_id)
        await eventually(lambda: log.read_text().count("peakwatch is running") == 2, "peakwatch up restarted")
        await dc_until(w0 + 190_000, w0 + 140_000)  # window w0+2min closes: held 3 minutes
        fired = (await http_receiver.next(receiver_path, timeout=30)).json()
        assert fired["status"] == "firing"
        alert = fired["alerts"][0]
        assert alert["labels"]["alertname"] == "pue_high"
        [record] = [a for a in await store.list_alerts() if a.rule == "pue_high"]
        assert (record.started_ms, record.fired_ms) == (w0, w0 + 3 * MIN)  # the timer ran on from w0

        # the quiet meter's alert was notified before the kill: not again (the restarted notifier knows)
        messages = [r.json() for r in http_receiver.requests(receiver_path)]
        assert [m["alerts"][0]["labels"]["alertname"] for m in messages] == ["meter_silent", "pue_high"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        await store.close()
    assert "Traceback" not in log.read_text()
