"""Request limits and what the API tells strangers (issue 15, items 4 and 8).

The API served by uvicorn exactly as ``peakwatch up`` serves it (``cli.stack.api_server_config``) on a
real database: bodies past the limit are refused with 413 before they are read, a 422 does not echo a
large input, a large or slow upload does not stall ``/healthz``, ``X-Forwarded-For`` is believed only
from configured proxies, and a database outage shows no host or port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from api import create_app
from cli.stack import api_server_config
from peakwatch.config import Registry, Settings
from peakwatch.store import Store
from tests.support import bearer

pytestmark = pytest.mark.integration

LOGIN = "/api/v1/auth/login"
MIB = 1024 * 1024


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test owns the process's signals
        pass


@dataclass
class Served:
    url: str
    port: int


@contextlib.asynccontextmanager
async def serve(store: Store, settings: Settings) -> AsyncIterator[Served]:
    """The app on uvicorn, configured as ``peakwatch up`` configures it, on a socket bound beforehand."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = create_app(store, Registry([], []), settings)
    server = _Server(api_server_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Served(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@pytest.fixture
async def served(store: Store) -> AsyncIterator[Served]:
    async with serve(store, Settings()) as running:
        yield running


# ------------------------------------------------------------------------------------ body size


async def test_login_body_past_its_limit_is_413_before_it_is_read(served: Served) -> None:
    # 16 KiB for login (Settings.max_login_body_bytes): a 20 KiB body declared by Content-Length
    body = json.dumps({"username": "x" * 20_000, "password": "y"}).encode()
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:200]
    assert len(response.content) < 200  # nothing of the input comes back


async def test_streamed_body_without_length_is_cut_at_the_limit(served: Served) -> None:
    """300 MiB announced by nothing (chunked): the server stops at the limit; the client sees 413 or,
    when the server closes while it is still sending, a dropped connection, never a 422 echo."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"username": "'
        for _ in range(300):
            sent += MIB
            yield b"x" * MIB

    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        try:
            response = await client.post(
                LOGIN, content=chunks(), headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError:  # the server answered 413 and closed while we were still sending
            response = None
        if response is not None:
            assert response.status_code == 413, response.text[:200]
        healthy = await client.get("/healthz")
    assert healthy.status_code == 200
    assert sent < 300 * MIB, "the server read all 300 MiB"


async def test_data_route_past_the_default_limit_is_413(served: Served, store: Store) -> None:
    headers = await bearer(store)
    body = b"[" + b"0," * (MIB // 2 + 10) + b"0]"  # just over 1 MiB
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as client:
        response = await client.post(
            "/api/v1/tokens", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413, response.text[:200]


async def test_limits_are_settings(store: Store) -> None:
    settings = Settings(max_login_body_bytes=2048)
    body = json.dumps({"username": "u" * 3000, "password": "p"}).encode()
    async with serve(store, settings) as running, httpx.AsyncClient(base_url=running.url) as client:
        response = await client.post(LOGIN, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_422_echoes_no_large_input_and_no_password(served: Served) -> None:
    # 10,000 characters of user name: within the login limit, refused by the user name's pattern
    async with httpx.AsyncClient(base_url=served.url) as client:
        long_name = await client.post(LOGIN, json={"username": "u" * 10_000, "password": "p"})
        no_name = await client.post(LOGIN, json={"password": "hunter2-correct-horse"})
    assert long_name.status_code == 422
    assert len(long_name.content) < 1500, len(long_name.content)
    assert "u" * 201 not in long_name.text
    assert "(10000 characters)" in long_name.text  # says what it refused
    assert no_name.status_code == 422
    assert "hunter2-correct-horse" not in no_name.text  # the echoed body has the password masked
    assert no_name.json()["detail"][0]["loc"] == ["body", "username"]


async def test_health_answers_while_large_and_slow_uploads_run(served: Served) -> None:
    """While 4 uploads of 300 MiB and 4 slow-drip uploads (one byte every 50 ms) run, /healthz keeps
    answering; the figure (max and median latency) is printed for the report."""
    stop = asyncio.Event()

    async def flood() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(300):
                yield b"x" * MIB

        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.TransportError):
                    await client.post(LOGIN, content=chunks(), headers={"Content-Type": "application/json"})

    async def drip() -> None:
        async def slowly() -> AsyncIterator[bytes]:
            yield b'{"username": "'
            while not stop.is_set():
                yield b"x"
                await asyncio.sleep(0.05)

        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            with contextlib.suppress(httpx.TransportError):
                await client.post(LOGIN, content=slowly(), headers={"Content-Type": "application/json"})

    tasks = [asyncio.create_task(flood()) for _ in range(4)] + [asyncio.create_task(drip()) for _ in range(4)]
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            for _ in range(40):
                started = time.perf_counter()
                response = await client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"/healthz under 4x300 MiB + 4 slow uploads: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests"
    )
    # Shares the test's event loop with the eight uploading clients: generous, but far below the 5 s
    # stall of an unlimited body.
    assert max(latencies) < 1.0, latencies


# ---------------------------------------------------------------------------- forwarded headers


async def _logins(url: str, forwarded_for: list[str]) -> list[int]:
    """Failed logins of different unknown users (the per-user limit never bites), one per address."""
    codes = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for address in forwarded_for:
            response = await client.post(
                LOGIN,
                json={"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong password!"},
                headers={"X-Forwarded-For": address},
            )
            codes.append(response.status_code)
    return codes


async def test_rotating_forwarded_for_does_not_escape_the_address_limit(served: Served) -> None:
    # 5 attempts per address in 5 minutes: the 6th from this TCP peer is throttled whatever it claims
    codes = await _logins(served.url, [f"203.0.113.{i}" for i in range(1, 8)])
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429], codes


async def test_forwarded_for_is_believed_from_a_configured_proxy(store: Store) -> None:
    settings = Settings(trusted_proxies=["127.0.0.1"])
    async with serve(store, settings) as running:
        codes = await _logins(running.url, [f"198.51.100.{i}" for i in range(1, 8)])
    assert codes == [401] * 7  # seven clients behind the proxy, one attempt each


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("PEAKWATCH_TRUSTED_PROXIES", "10.0.0.5, 10.0.1.0/24")
    assert Settings().trusted_proxies == ["10.0.0.5", "10.0.1.0/24"]


# ------------------------------------------------------------------------------- database outage


@dataclass
class Proxy:
    """A loopback port forwarding to the database; ``cut`` stops listening and drops every connection
    (an outage whose error names this port)."""

    server: asyncio.Server
    writers: list[asyncio.StreamWriter]

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[Proxy]:
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        writers.extend([writer, up_writer])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy = Proxy(server, writers)
    try:
        yield proxy
    finally:
        proxy.cut()


async def test_outage_503_and_health_show_no_host_or_port(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = httpx.URL(database_url)
    async with tcp_proxy(parts.host, parts.port or 5432) as proxy:
        port = proxy.port
        store = await Store.connect(str(parts.copy_with(port=port)), min_size=0, max_size=2)
        try:
            app = create_app(store, Registry([], []), Settings())
            proxy.cut()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://peakwatch.test") as client:
                login = await client.post(LOGIN, json={"username": "someone", "password": "a password!"})
                health = await client.get("/healthz")
                ready = await client.get("/readyz")
        finally:
            await store.close()
    assert login.status_code == 503, login.text
    assert login.json() == {"detail": "database unavailable; retry later"}
    for response in (login, health, ready):
        assert str(port) not in response.text, response.text
        assert "127.0.0.1" not in response.text, response.text
    assert health.json()["database"]["ok"] is False
    assert str(port) in caplog.text  # the operator finds the details in the log
