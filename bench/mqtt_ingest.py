"""MQTT ingest throughput of the collector: broker -> MqttSource (gmqtt) -> Collector -> MemoryBus.

Run from the repository root:
``.venv/bin/python -m bench.mqtt_ingest [--messages 50000] [--readings-per-message 1] [--url mqtt://...]``.
Without ``--url`` it starts a private mosquitto (from PATH) on a free port.

For each setting (protocol version, receive maximum) the messages are first queued by the broker
for the collector's offline persistent session, then the collector is started and timed until the
last reading is on the bus: the figure is the collector's drain rate with acknowledgements after the
bus hand-over, without a publisher competing for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import gmqtt
import msgspec
from prometheus_client import CollectorRegistry

from collector import Collector, CollectorMetrics, DecodeContext, MqttSource
from collector.mqtt import ProtocolVersion
from peakwatch.bus import MemoryBus
from peakwatch.config import Registry


@contextlib.contextmanager
def _mosquitto() -> Iterator[str]:
    exe = shutil.which("mosquitto")
    if exe is None:
        raise SystemExit("mosquitto not found: install it or pass --url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = Path(tempfile.mkdtemp(prefix="peakwatch-bench-mqtt-"))
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([exe, "-c", str(config)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _publisher(url: str) -> AsyncIterator[gmqtt.Client]:
    parts = urlsplit(url)
    client = gmqtt.Client(f"bench-pub-{uuid.uuid4().hex[:8]}")
    await client.connect(parts.hostname, parts.port, version=4)
    try:
        yield client
    finally:
        await client.disconnect()


async def _run(
    url: str, protocol: ProtocolVersion, receive_maximum: int, messages: int, per_message: int = 1
) -> float:
    registry = Registry.bundled_demo()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    ctx = DecodeContext(registry=registry, topic_prefix=prefix)
    bus = MemoryBus()
    collector = Collector(bus, ctx, CollectorMetrics(CollectorRegistry()))
    client_id = f"bench-collector-{uuid.uuid4().hex[:8]}"

    def source() -> MqttSource:
        return MqttSource(
            url,
            client_id,
            ctx.topic_filter,
            1,
            collector.handle,
            protocol=protocol,
            receive_maximum=receive_maximum,
        )

    first = source()
    await first.start()  # creates the persistent session, then goes away
    await first.stop()
    now_ms = time.time_ns() // 1_000_000
    async with _publisher(url) as pub:
        for i in range(messages):
            samples = [
                {"ts": now_ms - i * per_message - j, "energy_kwh": 1000.0 + j, "power_kw": 42.0}
                for j in range(per_message)
            ]
            payload = msgspec.json.encode(samples if per_message > 1 else samples[0])
            pub.publish(f"{prefix}/dc-xiangjiang/it", payload, qos=1)
            if i % 2000 == 1999:
                await pub._persistent_storage.wait_empty()  # private: keep the publisher's window bounded
        await pub._persistent_storage.wait_empty()
    received = 0
    second = source()
    started = time.perf_counter()
    cpu_started = time.process_time()
    await second.start()
    while received < messages * per_message:
        polled = await bus.poll(timeout_s=10)
        if not polled:
            raise RuntimeError(f"stalled after {received} of {messages} readings")
        received += polled.reading_count
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    await second.stop()
    print(f"  collector process CPU {cpu / elapsed:.0%} of wall time")
    return messages / elapsed


async def _main(url: str | None, messages: int, per_message: int) -> None:
    with contextlib.ExitStack() as stack:
        broker = url or stack.enter_context(_mosquitto())
        settings: list[tuple[ProtocolVersion, int]] = [
            ("auto", 20),
            ("auto", 100),
            ("auto", 1000),
            ("auto", 65535),
            ("3.1.1", 0),
        ]
        for protocol, receive_maximum in settings:
            rate = await _run(broker, protocol, receive_maximum or 1000, messages, per_message)
            window = f"receive_maximum={receive_maximum}" if receive_maximum else "broker's window"
            readings = rate * per_message
            print(
                f"protocol={protocol:5s} {window:24s} {rate:>9,.0f} msg/s {readings:>10,.0f} readings/s "
                f"({per_message} per message)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--readings-per-message", type=int, default=1, help="1: single objects, else arrays")
    parser.add_argument("--url", default=None, help="an existing broker (default: a private mosquitto)")
    args = parser.parse_args()
    asyncio.run(_main(args.url, args.messages, args.readings_per_message))


if __name__ == "__main__":
    main()
