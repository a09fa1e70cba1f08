"""Device credentials enforced by a real Mosquitto (issue #7): ``peakwatch devices`` provisions and
exports, the broker refuses unknown clients and drops a device's publish to another site's topic.

The CLI runs as a process against the test database; the broker reads the exported files and is
reloaded with SIGHUP, as an operator would do it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv50

from peakwatch.store import Store
from tests.fixtures.mqtt import mosquitto_path, running_mosquitto

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        mosquitto_path() is None, reason="needs mosquitto (the embedded broker has no ACL files)"
    ),
]

REGISTRY = """
sites:
  - id: site-a
    name: Site A
    kind: park
    meters:
      - {id: m1, carrier: electricity, role: grid_import, unit: kWh}
      - {id: m2, carrier: electricity, role: pv_generation, unit: kWh}
  - id: site-b
    name: Site B
    kind: park
    meters:
      - {id: m1, carrier: electricity, role: grid_import, unit: kWh}
"""


async def peakwatch(database_url: str, config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from cli.main import main; main()",
        *args,
        "--database-url",
        database_url,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}, "COLUMNS": "200"},
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


def secret_of(output: str) -> str:
    match = re.search(r"^([A-Za-z0-9_-]{32})$", output, re.MULTILINE)  # alone on its line (stdout)
    assert match, output
    return match.group(1)


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    (tmp_path / "passwd").write_text("")
    (tmp_path / "acl").write_text("")
    return tmp_path


@pytest.fixture
def broker(broker_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes] | None]]:
    # With max_queued_messages 0 (unbounded, the fixture's and deploy/'s setting), mosquitto 2.0.11 resets
    # the connection of a client whose publish the ACL denies, and what it sent after that is lost with
    # the connection (fine for a forging device; the collector only reads). A finite queue keeps the
    # connection, so one client can try a forbidden and then an allowed topic in order.
    extra = (
        f"password_file {broker_dir / 'passwd'}\nacl_file {broker_dir / 'acl'}\nmax_queued_messages 1000\n"
    )
    if os.geteuid() == 0:
        # started as root, mosquitto drops to its own user, which cannot read the owner-only files of a
        # root-owned test directory; in production the files are owned by the broker's user
        extra += "user root\n"
    with running_mosquitto(workdir=broker_dir, allow_anonymous=False, extra_config=extra) as url:
        yield url, None


def reload_broker(broker_dir: Path) -> None:
    """SIGHUP to the test's mosquitto (found by its config file), as `kill -HUP` in operations."""
    out = subprocess.run(["pgrep", "-f", str(broker_dir)], capture_output=True, text=True, check=False).stdout
    for pid in out.split():
        os.kill(int(pid), signal.SIGHUP)


class Client:
    """A gmqtt MQTT 5 client that records what it receives (the broker answers a denied publish with
    reason 0x87 in the PUBACK and keeps the connection)."""

    def __init__(self, url: str, user: str | None, secret: str | None) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.host, self.port = host, int(port)
        self.client = gmqtt.Client(f"{user or 'anon'}-{os.getpid()}-{id(self)}")
        if user is not None:
            self.client.set_auth_credentials(user, secret)
        self.received: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()

        def on_message(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: object) -> int:
            self.received.append((topic, payload))
            self.arrived.set()
            return 0

        self.client.on_message = on_message
        self.subscribed = asyncio.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    async def __aenter__(self) -> Client:
        await asyncio.wait_for(self.client.connect(self.host, self.port, version=MQTTv50), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        await asyncio.wait_for(self.subscribed.wait(), 10)

    async def until(self, payload: bytes) -> list[bytes]:
        async with asyncio.timeout(10):
            while payload not in [p for _, p in self.received]:
                self.arrived.clear()
                await self.arrived.wait()
        return [p for _, p in self.received]


@pytest.fixture
async def config(tmp_path: Path, store: Store) -> Path:
    """The registry file (``store`` only makes sure the test database exists and is migrated)."""
    path = tmp_path / "sites.yaml"
    path.write_text(REGISTRY)
    return path


async def test_devices_publish_only_under_their_site(
    broker: tuple[str, object], broker_dir: Path, database_url: str, config: Path
) -> None:
    url, _ = broker
    collector = secret_of(await peakwatch(database_url, config, "devices", "add-collector", "collector-1"))
    gateway = secret_of(await peakwatch(database_url, config, "devices", "add", "gw-a", "--site", "site-a"))
    meter = secret_of(
        await peakwatch(
            database_url, config, "devices", "add", "meter-b1", "--site", "site-b", "--meter", "m1"
        )
    )
    await peakwatch(database_url, config, "devices", "export", "--out", str(broker_dir))
    assert oct((broker_dir / "passwd").stat().st_mode & 0o777) == "0o600"
    assert collector not in (broker_dir / "passwd").read_text()  # only hashes reach the file
    reload_broker(broker_dir)

    async with Client(url, "collector-1", collector) as sub:
        await sub.subscribe("telemetry/#")
        async with Client(url, "gw-a", gateway) as gw, Client(url, "meter-b1", meter) as mb:
            # forbidden publishes first, then an allowed one on the same connection: delivery is in order,
            # so once the allowed one arrived, a forbidden one that got through would have too
            gw.client.publish("telemetry/site-b/m1", b"forged by gw-a", qos=1)
            gw.client.publish("telemetry/site-a/m2", b"gw-a ok", qos=1)
            mb.client.publish("telemetry/site-b/other", b"meter-b1 other meter", qos=1)
            mb.client.publish("telemetry/site-a/m1", b"forged by meter-b1", qos=1)
            mb.client.publish("telemetry/site-b/m1", b"meter-b1 ok", qos=1)
            got = await sub.until(b"gw-a ok")
            got = await sub.until(b"meter-b1 ok")
    assert b"forged by gw-a" not in got
    assert b"forged by meter-b1" not in got
    assert b"meter-b1 other meter" not in got
    # a device cannot read other sites' telemetry either
    assert "topic read" not in (broker_dir / "acl").read_text().split("user gw-a")[1].split("user")[0]


async def test_unknown_wrong_revoked_and_rotated_credentials_are_refused(
    broker: tuple[str, object], broker_dir: Path, database_url: str, config: Path
) -> None:
    url, _ = broker
    first = secret_of(await peakwatch(database_url, config, "devices", "add", "gw-a", "--site", "site-a"))
    await peakwatch(database_url, config, "devices", "export", "--out", str(broker_dir))
    reload_broker(broker_dir)
    async with Client(url, "gw-a", first):
        pass
    for user, secret in [(None, None), ("stranger", "x"), ("gw-a", "not-the-secret")]:
        with pytest.raises(gmqtt.mqtt.handler.MQTTConnectError):
            async with Client(url, user, secret):
                pass

    second = secret_of(await peakwatch(database_url, config, "devices", "rotate", "gw-a"))
    await peakwatch(database_url, config, "devices", "export", "--out", str(broker_dir))
    reload_broker(broker_dir)
    await asyncio.sleep(0.2)  # SIGHUP is asynchronous; there is no event to wait on
    with pytest.raises(gmqtt.mqtt.handler.MQTTConnectError):
        async with Client(url, "gw-a", first):
            pass
    async with Client(url, "gw-a", second):
        pass

    await peakwatch(database_url, config, "devices", "revoke", "gw-a")
    await peakwatch(database_url, config, "devices", "export", "--out", str(broker_dir))
    reload_broker(broker_dir)
    await asyncio.sleep(0.2)
    with pytest.raises(gmqtt.mqtt.handler.MQTTConnectError):
        async with Client(url, "gw-a", second):
            pass
    listing = await peakwatch(database_url, config, "devices", "list")
    assert re.search(r"gw-a .* revoked", listing)
