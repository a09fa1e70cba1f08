"""``cli.common.database_options``: the four database options, added once to every command that needs
them, in the order and with the help they always had, handed to the command as one ``Settings``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from cli.common import database_options
from peakwatch.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CLI_MODULES = sorted(f"cli.{p.stem}" for p in (ROOT / "cli").glob("*.py") if p.stem != "__init__")


def _app(seen: list[tuple[str, Settings]]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @database_options
    def show(
        name: Annotated[str, typer.Argument(help="A name.")],
        loud: Annotated[bool, typer.Option(help="Shout.")] = False,
        *,
        settings: Settings,
    ) -> None:
        """Record what the command was given."""
        seen.append((name.upper() if loud else name, settings))

    return app


def test_the_options_follow_the_commands_own(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app([]), ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    order = [
        result.output.index(o) for o in ("--loud", "--database-url", "--data-dir", "--config", "--db-port")
    ]
    assert order == sorted(order)
    assert "Record what the command was given." in result.output


def test_the_command_gets_settings_from_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEAKWATCH_DATABASE_URL", raising=False)
    config = tmp_path / "registry.yaml"
    config.write_text("sites: []\n")
    seen: list[tuple[str, Settings]] = []
    args = ["x", "--loud", "--database-url", "postgresql://h/db", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(_app(seen), [*args, "--config", str(config), "--db-port", "6000"])
    assert result.exit_code == 0, result.output
    [(name, settings)] = seen
    assert name == "X"
    assert settings.database_url == "postgresql://h/db"
    assert settings.data_dir == tmp_path
    assert settings.config_file == config
    assert settings.db_port == 6000


def test_defaults_leave_the_environment_and_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEAKWATCH_DATABASE_URL", "postgresql://from-env/db")
    seen: list[tuple[str, Settings]] = []
    result = CliRunner().invoke(_app(seen), ["x"])
    assert result.exit_code == 0, result.output
    [(_, settings)] = seen
    assert settings.database_url == "postgresql://from-env/db"  # the option's envvar
    assert settings.db_port == 5433
    assert settings.config_file == Settings().config_file


@pytest.mark.parametrize("module", CLI_MODULES)
def test_each_cli_module_imports_on_its_own(module: str) -> None:
    """In a fresh interpreter, first of its package: an import cycle shows only in the order that
    enters it from the wrong side."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_command_without_settings_is_refused() -> None:
    def bare(name: str) -> None:
        """No settings parameter."""

    with pytest.raises(TypeError, match="no settings parameter"):
        database_options(bare)
