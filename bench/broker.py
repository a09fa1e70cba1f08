"""A private mosquitto for benchmarks: the real binary on a free loopback port, queue limits off.

Mosquitto silently drops QoS 1 messages for a subscriber whose queue already holds
``max_queued_messages`` (1,000 by default). A benchmark deliberately lets the publisher run ahead of
the collector, so with the default the broker would throw readings away and the run would look
faster than it is. Here queues are bounded by memory only (``memory_limit``), and the drops that can
still happen are counted rather than assumed absent: ``$SYS/broker/publish/messages/dropped`` and the
"messages are being dropped" lines of the broker log (``BenchBroker.stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO_CONF = """\
# peakwatch benchmark broker (written by bench/broker.py; see docs/operations.md)
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# Unbounded per-client queues (the default, 1000 messages, drops QoS 1 messages silently once a
# subscriber falls behind). memory_limit is the bound instead: past it mosquitto refuses publishes
# (the publisher sees its connection close), which the bench reports as unpublished, not as lost.
max_queued_messages 0
max_queued_bytes 0
# No broker-side in-flight limit: MQTT 5 publishers get a receive maximum of 65535 instead of 20,
# and the collector's own receive maximum (MQTT 5 CONNECT) bounds what is sent to it unacknowledged.
max_inflight_messages 0
memory_limit {memory_limit}
message_size_limit 1048576
sys_interval 1
log_dest file {log}
log_type error
log_type warning
log_type notice
connection_messages false
"""

DROP_LOG_MARKER = "dropped"
"""Mosquitto 2 logs "Outgoing messages are being dropped for client ..." when a queue overflows."""


def mosquitto_version(exe: str) -> str:
    out = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False, timeout=10)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class BrokerStats:
    """What the broker says about a run (``None``: not published by this mosquitto build)."""

    dropped: int | None = None
    """``$SYS/broker/publish/messages/dropped``: messages dropped for queue/in-flight limits."""
    received: int | None = None
    sent: int | None = None
    drop_log_lines: int = 0
    sys: dict[str, str] = field(default_factory=dict)


class BenchBroker:
    """``start`` writes the config and runs mosquitto; ``stats`` reads ``$SYS``; ``stop`` ends it."""

    def __init__(self, directory: Path, *, memory_limit_bytes: int = 4 << 30) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            raise SystemExit("mosquitto not found: install it (apt-get install mosquitto mosquitto-clients)")
        self.exe = exe
        self.directory = directory
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.memory_limit_bytes = memory_limit_bytes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.log.chmod(0o666)  # mosquitto drops root privileges to its own user before logging
        self.config.write_text(
            MOSQUITTO_CONF.format(port=self.port, memory_limit=self.memory_limit_bytes, log=self.log),
            encoding="utf-8",
        )
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def stats(self, wait_s: float = 2.5) -> BrokerStats:
        """The broker's ``$SYS/broker/...`` values (retained, refreshed every second) and the number
        of drop lines in its log. Uses ``mosquitto_sub`` when installed."""
        result = BrokerStats()
        with contextlib.suppress(OSError):
            result.drop_log_lines = sum(
                1 for line in self.log.read_text(errors="replace").splitlines() if DROP_LOG_MARKER in line
            )
        sub = shutil.which("mosquitto_sub")
        if sub is None:
            return result
        proc = await asyncio.create_subprocess_exec(
            sub,
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-v",
            "-W",
            str(max(1, round(wait_s))),
            "-t",
            "$SYS/broker/#",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        for line in out.decode(errors="replace").splitlines():
            topic, _, value = line.partition(" ")
            result.sys[topic] = value
        result.dropped = _int(result.sys.get("$SYS/broker/publish/messages/dropped"))
        result.received = _int(result.sys.get("$SYS/broker/publish/messages/received"))
        result.sent = _int(result.sys.get("$SYS/broker/publish/messages/sent"))
        return result


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
