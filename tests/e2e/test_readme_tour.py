"""README.md's "A five-minute tour", as a new user follows it, against `peakwatch up` as a process.

The tour's commands are read from README.md at run time (its ```bash blocks and inline `curl …`
commands, step by step), so this test follows every edit of the README. Only placeholders are
substituted: the one-time password and the broker URL that `up` printed, a new password, and the API
address `up` printed for the README's http://127.0.0.1:8000 (the test runs on free ports, never on the
machine's own 8000 or 1883). Every curl fails on an HTTP error (a `.curlrc` with `--fail-with-body`),
so a step that gets a 4xx/5xx fails. Afterwards the demo's KPIs must still be plausible: no PUE outside
0.5-5 in any stored window, no window flagged `glitch`, no glitch event in the processor's counters.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

README = Path(__file__).resolve().parents[2] / "README.md"
NEW_PASSWORD = "a long tour passphrase"
README_API = "http://127.0.0.1:8000"
_PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\n]*>")


def tour_steps(readme: str) -> list[tuple[str, list[str]]]:
    """The tour's numbered steps with their commands: ```bash blocks, and inline `curl …` spans."""
    section = re.search(r"^## A five-minute tour\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section is not None, "README.md has no '## A five-minute tour' section"
    steps: list[tuple[str, list[str]]] = []
    for number, body in re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", section.group(1), re.S | re.M):
        commands: list[str] = []
        prose = body
        for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", body, re.S | re.M):
            lines = block.splitlines()
            indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
            commands.append("\n".join(x[indent:] for x in lines))
        prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", body, flags=re.S | re.M)
        commands += [span for span in re.findall(r"`([^`\n]+)`", prose) if span.startswith("curl ")]
        steps.append((number, commands))
    assert steps, "the tour has no numbered steps"
    return steps


def tour_script(steps: list[tuple[str, list[str]]], values: dict[str, str]) -> str:
    """One bash script: each step announces itself on stderr, then runs its commands as written."""
    parts = ["shopt -s expand_aliases", "set -eo pipefail"]
    for number, commands in steps:
        parts.append(f"echo '@@ step {number}' >&2")
        parts.extend(commands)
    script = "\n".join(parts) + "\n"
    for placeholder, value in values.items():
        script = script.replace(placeholder, value)
    left = sorted(set(_PLACEHOLDER.findall(script)))
    assert not left, f"README tour placeholders this test does not know: {left}"
    # the machine's own API and broker must never be touched by a test
    assert ":8000" not in script, script
    assert ":1883" not in script, script
    return script


def test_tour_parser_reads_blocks_and_inline_commands() -> None:
    readme = (
        "## A five-minute tour\n\n1. Start:\n   ```bash\n   A=1\n   echo $A\n   ```\n"
        "2. Then `curl -s http://x/a` and `not a command`.\n\n## Next\n"
    )
    assert tour_steps(readme) == [("1", ["A=1\necho $A"]), ("2", ["curl -s http://x/a"])]


def _banner(log_path: Path, proc: subprocess.Popen[bytes], deadline: float) -> dict[str, str]:
    """The first-run password, the API and the MQTT URL `up` printed."""
    while True:
        text = log_path.read_text()
        password = re.search(r"one-time password ([A-Za-z0-9_-]{20,})", text)
        api = re.search(r"Dashboard\s+(http://127\.0\.0\.1:\d+)/", text)
        mqtt = re.search(r"Broker\s+(mqtt://127\.0\.0\.1:\d+)", text)
        if password and api and mqtt:
            return {"password": password.group(1), "api": api.group(1), "mqtt": mqtt.group(1)}
        assert proc.poll() is None, text
        assert time.monotonic() < deadline, f"no banner with password, API and MQTT URL:\n{text}"
        time.sleep(0.2)  # another process's output: nothing to await


def _metric(api: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (0 when absent)."""
    text = httpx.get(f"{api}/metrics").text
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _wait_for_window_end(api: str, end_s: float, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while _metric(api, "peakwatch_processor_last_window_end_timestamp_seconds") < end_s:
        assert proc.poll() is None
        assert time.monotonic() < deadline, "the processor stopped closing windows"
        time.sleep(1.0)  # windows close on the demo's clock: nothing to await


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's tmp_path: under root the embedded server runs as its own user, which
    pytest's private base directory would lock out (as in tests/fixtures/postgres.py)."""
    root = Path(tempfile.mkdtemp(prefix="peakwatch-tour-"))
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def test_readme_tour_as_written_keeps_the_demo_plausible(tmp_path: Path, data_dir: Path) -> None:
    api_port = free_port()
    cmd = [
        sys.executable, "-m", "cli.main", "up",
        "--data-dir", str(data_dir),
        "--api-port", str(api_port), "--mqtt-port", str(free_port()), "--db-port", str(free_port()),
    ]  # fmt: skip
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "160"},
            cwd=README.parent,
        )
    try:
        deadline = time.monotonic() + 90
        banner = _banner(log_path, proc, deadline)
        api = banner["api"]
        _wait_for_window_end(api, 1, proc, deadline)  # the backfill's first windows are written
        script = tour_script(
            tour_steps(README.read_text(encoding="utf-8")),
            {
                "<one-time password>": banner["password"],
                "<at least 12 characters>": NEW_PASSWORD,
                "<broker URL from the banner>": banner["mqtt"],
                README_API: api,
            },
        )
        # the user's shell: in a directory of their own with the install's .venv; curl fails on HTTP errors
        home = tmp_path / "user"
        home.mkdir()
        (home / ".venv").symlink_to(Path(sys.executable).parent.parent)
        (home / ".curlrc").write_text("--fail-with-body\n")
        started_s = time.time()
        run = subprocess.run(
            ["bash", "-c", script],
            cwd=home,
            env={**os.environ, "CURL_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        steps_run = re.findall(r"@@ step (\d+)", run.stderr)
        assert run.returncode == 0, (
            f"README tour step {steps_run[-1] if steps_run else '?'} failed ({run.returncode}):\n"
            f"{run.stderr}\n{run.stdout}"
        )

        # the minutes after the tour's reading close (the next demo readings have come), then judge
        _wait_for_window_end(
            api, started_s + 90, proc, time.monotonic() + 300
        )  # a bound, not a timing: CI is slow
        login = httpx.post(f"{api}/api/v1/auth/login", json={"username": "admin", "password": NEW_PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        windows = []
        for period in ("1m", "15m"):
            response = httpx.get(
                f"{api}/api/v1/sites/dc-xiangjiang/kpis", params={"period": period}, headers=auth
            )
            assert response.status_code == 200, response.text
            windows += response.json()
        minutes = [w for w in windows if w["period"] == "1m"]
        assert minutes, windows
        newest = max(datetime.fromisoformat(w["window_end"]) for w in minutes)
        assert newest.timestamp() >= started_s + 60  # the tour's reading and a minute after it
        bad = [
            (w["window_start"], w["pue"])
            for w in windows
            if w["pue"] is not None and not 0.5 <= w["pue"] <= 5
        ]
        assert bad == [], f"implausible PUE after the tour: {bad}"
        assert [w["window_start"] for w in windows if "glitch" in w["flags"]] == []
        # no demo reading, backfill included, is a glitch against the demo's rated power
        text = httpx.get(f"{api}/metrics").text
        assert not re.search(r'meter_events_total\{kind="glitch"\} [1-9]', text), text
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "Traceback" not in log_text, log_text
