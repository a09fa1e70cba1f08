"""`peakwatch up` as a user runs it: a real process with embedded PostgreSQL, the embedded MQTT broker
and the demo simulators; the first-run admin logs in with the printed one-time password and must change
it; then a plausible PUE over HTTP within a minute; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_up_serves_demo_kpis_and_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    api_port = free_port()
    cmd = [
        sys.executable, "-m", "cli.main", "up",
        "--data-dir", str(data_dir),
        "--api-port", str(api_port), "--mqtt-port", str(free_port()), "--db-port", str(free_port()),
    ]  # fmt: skip
    log_path, out_path = tmp_path / "up.log", tmp_path / "up.out"
    with log_path.open("wb") as log, out_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=log, env={**os.environ, "COLUMNS": "120"})
    api = f"http://127.0.0.1:{api_port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        # The one-time password on standard output, the chatter on standard error (docs/security.md)
        while (found := re.search(r"one-time password ([A-Za-z0-9_-]{20,})", out_path.read_text())) is None:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no first-run admin password:\n{log_path.read_text()}"
            time.sleep(0.2)  # another process's output: nothing to await
        one_time = found.group(1)
        assert one_time not in log_path.read_text()
        assert httpx.get(f"{api}/sites").status_code == 401
        login = httpx.post(f"{api}/auth/login", json={"username": "admin", "password": one_time})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        assert httpx.get(f"{api}/sites", headers=auth).status_code == 403  # change the password first
        changed = httpx.post(
            f"{api}/auth/password",
            headers=auth,
            json={"current_password": one_time, "new_password": "a long new passphrase"},
        )
        assert changed.status_code == 204, changed.text
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"{api}/sites/dc-xiangjiang/kpis/latest", headers=auth)
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
        park = httpx.get(f"{api}/sites/park-changsha/kpis/latest", headers=auth).json()
        assert 0.0 < park["electrification_rate"] <= 1.0
        assert park["carbon_intensity_kg_per_kwh"] is not None
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "stopped cleanly" in log_text
    assert "Traceback" not in log_text, log_text
    assert "a long new passphrase" not in log_text
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "embedded PostgreSQL still running"
