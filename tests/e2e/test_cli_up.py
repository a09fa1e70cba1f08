"""`peakwatch up` as a user runs it: a real process with embedded PostgreSQL, the embedded MQTT broker
and the demo simulators; a plausible PUE over HTTP within a minute; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_up_serves_demo_kpis_and_stops_cleanly(tmp_path: Path) -> None:
    api_port = free_port()
    cmd = [
        sys.executable, "-m", "cli.main", "up",
        "--data-dir", str(tmp_path / "data"),
        "--api-port", str(api_port), "--mqtt-port", str(free_port()), "--db-port", str(free_port()),
    ]  # fmt: skip
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"}
        )
    try:
        deadline = time.monotonic() + 60
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/sites/dc-xiangjiang/kpis/latest")
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                body = response.json()
                break
            time.sleep(0.5)
        assert body, f"no KPI window within 60 s:\n{log_path.read_text()}"
        pue = body["pue"]
        assert isinstance(pue, float), body
        assert 1.05 < pue < 2.0, body
        assert body["interim"] is True
        park = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/sites/park-changsha/kpis/latest").json()
        assert 0.0 < park["electrification_rate"] <= 1.0
        assert park["carbon_intensity_kg_per_kwh"] is not None
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "stopped cleanly" in log_text
    assert "Traceback" not in log_text, log_text
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists(), (
        "embedded PostgreSQL still running"
    )
