"""The start-up banner of ``peakwatch up``: it names the dashboard, the API, the broker URL devices use
(the port ``up`` chose), the database and the data directory; no password is printed, and no text is
eaten as rich markup (an IPv6 broker address is ``[::1]``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cli.main import _banner
from cli.stack import Stack
from peakwatch.config import Registry, Settings


def render(stack: Stack) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(_banner(stack, Registry.bundled_demo()))
    return console.export_text()


def test_the_banner_names_where_everything_is(tmp_path: Path) -> None:
    stack = Stack(
        settings=Settings(data_dir=tmp_path / "pw", demo=False),
        registry=Registry.bundled_demo(),
        database_url="postgresql://postgres@127.0.0.1:5433/peakwatch",
        mqtt_url="mqtt://127.0.0.1:18101",
        api_url="http://127.0.0.1:8000",
        embedded_broker=True,
    )
    text = render(stack)
    assert "Dashboard     http://127.0.0.1:8000/ " in text
    assert "API           http://127.0.0.1:8000/api/v1" in text
    assert "Broker        mqtt://127.0.0.1:18101  (embedded: this machine only, no authentication)" in text
    assert "devices publish to telemetry/<site>/<meter>" in text
    assert f"Data dir      {tmp_path / 'pw'}" in text
    assert "peakwatch users list --data-dir" in text


def test_the_banner_prints_no_password_and_keeps_brackets(tmp_path: Path) -> None:
    stack = Stack(
        settings=Settings(data_dir=tmp_path, demo=False, api_host="0.0.0.0"),
        registry=Registry.bundled_demo(),
        database_url="postgresql://peakwatch:s3cret-db@db.example:5432/peakwatch",
        mqtt_url="mqtt://collector-1:s3cret-mqtt@[::1]:1883",
        api_url="http://0.0.0.0:8000",
        embedded_broker=False,
    )
    text = render(stack)
    assert "s3cret" not in text
    assert "postgresql://peakwatch:***@db.example:5432/peakwatch" in text
    assert "mqtt://collector-1:***@[::1]:1883  (your broker; devices use their own credentials)" in text
    # every interface: the address to open is the loopback one
    assert "Dashboard     http://127.0.0.1:8000/" in text
