"""What the command line shows is what was written: help in full, as plain text; errors with every
bracket and colon of their text (rich reads ``[bold]`` as markup and ``:compression:`` as an emoji);
a listen address the machine lacks told apart from a taken port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli import main as cli_main
from cli.help import plain_help
from peakwatch.net import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The ``peakwatch`` app, every command mounted."""
    return cli_main.app


def commands(app: typer.Typer) -> Iterator[tuple[list[str], Any]]:
    """Every command and group of ``app`` with its path of names."""
    root = typer.main.get_command(app)
    ctx = root.make_context("peakwatch", ["--help"], resilient_parsing=True)

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), [*path, name])

    yield from walk(root, [])


def help_text(app: typer.Typer, path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def squeezed(text: str) -> str:
    """Without any white space: what is left of a text however it was wrapped."""
    return re.sub(r"\s+", "", text.replace("\b", ""))


def test_up_help_keeps_the_bracketed_defaults(app: typer.Typer) -> None:
    text = one_line(help_text(app, ["up"]))
    assert "[default: 1883, or a free port when 1883 is taken]" in text
    assert "[default: 5433, or a free port when 5433 is taken]" in text
    assert "kafka://host:9092[,host2:9092]?partitions=12" in text


def test_every_help_is_plain_text_and_complete(app: typer.Typer) -> None:
    found = dict((" ".join(path), command) for path, command in commands(app))
    assert {"devices add-collector", "db restate", "simulate", "users reset-password"} <= set(found)
    for name, command in found.items():
        text = help_text(app, name.split())
        assert "``" not in text, (name, text)  # RST literals read as `x`
        assert "..." not in text.replace("[ARGS]...", ""), (name, text)  # click's mark of a cut summary
        written = [(plain_help(command.help) or "").partition("\f")[0]]
        written += [param.help for param in command.params if getattr(param, "help", None)]
        if hasattr(command, "list_commands"):  # each command's whole first paragraph in the list
            written += [first_paragraph(sub) for sub in command.commands.values()]
        for part in written:
            assert squeezed(part) in squeezed(text), (name, part)
    devices = one_line(help_text(app, ["devices"]))
    assert (
        "A service account for collectors: may read every site's telemetry; give its secret to the "
        "collector in its MQTT URL (`mqtt://<id>:<secret>@broker:1883`)."
    ) in devices


def first_paragraph(command: Any) -> str:
    return (plain_help(command.help) or "").split("\n\n", 1)[0]


def test_a_yaml_error_is_shown_with_its_brackets_and_colons(app: typer.Typer, tmp_path: Path) -> None:
    folder = tmp_path / ":compression:[red]"
    folder.mkdir()
    config = folder / "sites.yaml"
    config.write_text("sites: [bold] oops: 1\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["up", "--config", str(config), "--data-dir", str(tmp_path / "data"), "--api-port", str(free_port())],
        env={"COLUMNS": "300", "NO_COLOR": "1"},
    )
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert f"{config}: 1 error:" in text
    assert "sites: [bold] oops: 1" in text
    assert ":compression:[red]" in text  # neither an emoji nor markup


def run_up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``peakwatch up`` as a process, on ports of its own (it must refuse before starting anything)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "up", "--no-demo", "--data-dir", str(tmp_path / "data"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
    )


def test_an_api_address_the_machine_lacks_is_not_called_a_taken_port(tmp_path: Path) -> None:
    ports = [str(free_port()) for _ in range(3)]
    done = run_up(
        tmp_path,
        "--api-host",
        "10.99.99.99",
        "--api-port",
        ports[0],
        "--mqtt-port",
        ports[1],
        "--db-port",
        ports[2],
    )
    assert done.returncode == 2, done.stderr
    text = one_line(done.stderr)
    assert (
        f"the API cannot listen on 10.99.99.99:{ports[0]}: "
        "address 10.99.99.99 is not available on this machine" in text
    )
    assert "(change it with --api-host)" in text
    assert "taken" not in text
    assert not (tmp_path / "data" / "postgres").exists()  # refused before the database started


def test_a_taken_api_port_is_called_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_up(
            tmp_path, "--api-port", str(port), "--mqtt-port", str(free_port()), "--db-port", str(free_port())
        )
    assert done.returncode == 2, done.stderr
    assert f"port {port} is taken (another program listens on it) (change it with --api-port)" in one_line(
        done.stderr
    )


def test_an_unknown_host_name_is_named(tmp_path: Path) -> None:
    done = run_up(tmp_path, "--api-host", "no-such-host.invalid", "--api-port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "'no-such-host.invalid' is not an address or a known host name" in one_line(done.stderr)


def test_a_privileged_port_is_a_permission_problem_not_a_taken_port() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 80:
        pytest.skip("this machine lets everyone listen on port 80")
    # as root, the child becomes nobody (which drops every capability) once peakwatch is imported
    code = (
        "import encodings.idna, os, pwd\n"
        "from peakwatch.net import bind_problem\n"
        "if os.geteuid() == 0:\n"
        "    nobody = pwd.getpwnam('nobody')\n"
        "    os.setgid(nobody.pw_gid)\n"
        "    os.setuid(nobody.pw_uid)\n"
        "print(bind_problem('127.0.0.1', 80))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "permission denied: port 80 is below 1024" in done.stdout
    assert "taken" not in done.stdout
