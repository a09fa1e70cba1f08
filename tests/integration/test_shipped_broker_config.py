"""The shipped ``deploy/mosquitto/mosquitto.conf`` runs on a real mosquitto: TLS on its own listener,
credentials required everywhere (issue #7). Only paths and ports are rewritten for the test."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311

from peakwatch.domain.devices import Device, DeviceKind, acl_file, mosquitto_hash, password_file
from peakwatch.net import free_port
from tests.fixtures.mqtt import acknowledged, mosquitto_path, wait_for_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        mosquitto_path() is None or shutil.which("openssl") is None, reason="needs mosquitto and openssl"
    ),
]

SHIPPED = Path(__file__).parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (the recipe in docs/security.md)."""
    d = str(directory)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=peakwatch test CA",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{d}/san.ext",
            "-out", f"{d}/server.crt")  # fmt: skip


def device(device_id: str, kind: DeviceKind, site: str | None, secret: str) -> Device:
    return Device(
        id=device_id,
        kind=kind,
        site_id=site,
        password_hash=mosquitto_hash(secret, os.urandom(12)),
        created_ms=0,
    )


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    make_certificates(tmp_path)
    devices = [
        device("collector-1", DeviceKind.COLLECTOR, None, "collector-secret"),
        device("gw-a", DeviceKind.DEVICE, "site-a", "gw-secret"),
    ]
    (tmp_path / "passwd").write_text(password_file(devices))
    (tmp_path / "acl").write_text(acl_file(devices))
    (tmp_path / "data").mkdir()
    tls_port, plain_port = free_port(), free_port()
    config = (
        SHIPPED.read_text()
        .replace("/mosquitto/config/", f"{tmp_path}/")
        .replace("/mosquitto/certs/", f"{tmp_path}/")
        .replace("/mosquitto/data/", f"{tmp_path}/data/")
        .replace("listener 8883 0.0.0.0", f"listener {tls_port} 127.0.0.1")
        .replace("listener 1883 0.0.0.0", f"listener {plain_port} 127.0.0.1")
        .replace("log_dest stdout", "log_dest stderr")
    )
    for rewritten in (str(tmp_path), f"listener {tls_port} ", f"listener {plain_port} "):
        assert rewritten in config
    if os.geteuid() == 0:
        config += "user root\n"  # run as root, mosquitto would drop to a user that cannot read tmp_path
    (tmp_path / "mosquitto.conf").write_text(config)
    with (tmp_path / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen(
            [mosquitto_path() or "mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log
        )
    try:
        wait_for_port("127.0.0.1", tls_port, alive=proc)
        wait_for_port("127.0.0.1", plain_port, alive=proc)
        yield tls_port, plain_port, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def connect(
    port: int, user: str | None, secret: str | None, tls: ssl.SSLContext | bool
) -> gmqtt.Client:
    client = gmqtt.Client(f"{user or 'anon'}-{os.urandom(4).hex()}")
    if user is not None:
        client.set_auth_credentials(user, secret)
    await asyncio.wait_for(client.connect("127.0.0.1", port, ssl=tls, version=MQTTv311), 10)
    return client


async def test_devices_reach_the_collector_over_tls(shipped_broker: tuple[int, int, Path]) -> None:
    tls_port, _, certs = shipped_broker
    trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    received: asyncio.Queue[bytes] = asyncio.Queue()
    subscribed = asyncio.Event()
    collector = await connect(tls_port, "collector-1", "collector-secret", trust)
    collector.on_message = lambda c, t, payload, q, p: received.put_nowait(payload) or 0
    collector.on_subscribe = lambda *args: subscribed.set()
    collector.subscribe("telemetry/#", qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)
    gateway = await connect(tls_port, "gw-a", "gw-secret", trust)
    gateway.publish("telemetry/site-a/m1", b'{"ts": 1, "energy_kwh": 1.0}', qos=1)
    assert await asyncio.wait_for(received.get(), 10) == b'{"ts": 1, "energy_kwh": 1.0}'
    await acknowledged(gateway)  # a PUBACK arriving after our TLS close_notify would fail the shutdown
    await gateway.disconnect()
    await collector.disconnect()


async def test_tls_rejects_an_untrusted_broker_and_every_listener_wants_credentials(
    shipped_broker: tuple[int, int, Path],
) -> None:
    tls_port, plain_port, certs = shipped_broker
    # the system trust store does not know the test CA: the client refuses the broker
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(tls_port, "gw-a", "gw-secret", ssl.create_default_context())
    trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    for port, tls in [(tls_port, trust), (plain_port, False)]:
        for user, secret in [(None, None), ("gw-a", "wrong")]:
            with pytest.raises(gmqtt.mqtt.handler.MQTTConnectError):
                await connect(port, user, secret, tls)
