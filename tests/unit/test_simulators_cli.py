"""``peakwatch simulate``: its help, option parsing and the registry output (no broker needed)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from cli.simulate import parse_time_ms, simulate
from peakwatch.config import Registry

NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(simulate)
    return app


def test_help_documents_every_option(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for option in (
        "--mqtt-url",
        "--topic-prefix",
        "--qos",
        "--max-inflight",
        "--batch-size",
        "--sites",
        "--synthetic-meters",
        "--seed",
        "--write-registry",
        "--print-registry",
        "--speed",
        "--step",
        "--start",
        "--backfill",
        "--duration",
        "--count",
        "--drop",
        "--duplicate",
        "--reorder",
        "--reorder-depth",
        "--malformed",
        "--malformed-kinds",
        "--reset",
        "--reset-at",
        "--reset-meter",
        "--clock-skew",
        "--clock-skew-share",
        "--quiet",
    ):
        assert option in text
    assert "PEAKWATCH_MQTT_URL" in text


def test_print_registry_writes_a_registry_and_publishes_nothing(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["--print-registry", "--sites", "3", "--mqtt-url", "mqtt://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    registry = Registry.from_text(result.stdout)
    assert list(registry.sites) == ["park-changsha", "dc-xiangjiang", "park-2"]


@pytest.mark.parametrize(
    "args",
    [
        ["--speed", "warp"],
        ["--step", "0s"],
        ["--drop", "2"],
        ["--backfill", "1m", "--start", "-1h"],
        ["--start", "2026-01-01T00:00:00"],
        ["--duration", "soon"],
        ["--malformed-kinds", "bogus"],
    ],
)
def test_bad_options_exit_with_a_usage_error(app: typer.Typer, args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--print-registry"])
    assert result.exit_code == 2


def test_unreachable_broker_is_an_error_not_a_traceback(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["--mqtt-url", "mqtt://127.0.0.1:1", "--count", "1", "--quiet"])
    assert result.exit_code == 2
    assert "cannot connect" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000000", NOW),
        ("2023-11-14T22:13:20+00:00", NOW),
        ("2023-11-15T06:13:20+08:00", NOW),
        ("+5m", NOW + 300_000),
        ("-1d", NOW - 86_400_000),
    ],
)
def test_parse_time_ms(text: str, expected: int) -> None:
    assert parse_time_ms(text, now_ms=NOW) == expected
