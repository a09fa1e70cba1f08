"""Secrets never leave the process (issue 15, item 3).

`peakwatch up` as a process, given known secrets: the collector's broker password in ``--mqtt-url``,
a database password in ``--database-url`` (a role of the test PostgreSQL with a password), channel
secrets in the notifications configuration (a web hook whose delivery fails, so its error is logged),
and a user's password. Then every output surface is searched for them: standard output and error of
`up`, ``/healthz``, ``/readyz``, ``/metrics``, every GET of the API without and with credentials
(errors included), the audit log, and a command's error naming an unreachable database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MQTT_SECRET = "mqtt-Secret-5d1f0c"
DB_SECRET = "db-Secret-8e2a77"
BEARER_SECRET = "hook-Bearer-3c9b41"
QUERY_SECRET = "hook-Query-a07e52"
USER_PASSWORD = "user-Password-6b18d0"
SECRETS = (MQTT_SECRET, DB_SECRET, BEARER_SECRET, QUERY_SECRET, USER_PASSWORD)

REGISTRY = """
sites:
  - id: site-s
    name: Secret site
    kind: park
    meters:
      - {{id: grid, carrier: electricity, role: grid_import, unit: kWh}}
rules:
  - name: meter_silent
    silent_for: 2s
    severity: warning
    summary: "meter {{meter}} silent"
notifications:
  receivers:
    - name: hook
      channels:
        - type: webhook
          url: "http://127.0.0.1:{dead_port}/alerts?token={query}"
          bearer_token: "{bearer}"
  route:
    receiver: hook
    group_wait: 0s
"""


@pytest.fixture
async def secret_database_url(database_url: str) -> AsyncIterator[str]:
    """The test database, reached as a role with a password."""
    role = f"pw_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{DB_SECRET}'")
    finally:
        await admin.close()
    parts = urlsplit(database_url)
    netloc = f"{role}:{DB_SECRET}@{parts.netloc.rsplit('@', 1)[-1]}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}")
        finally:
            await admin.close()


def _peakwatch(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _get_everything(api: str, headers: dict[str, str]) -> list[str]:
    """Every GET route of the OpenAPI schema (path parameters filled with the site or a dummy), its
    body whatever the status."""
    bodies = []
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        schema = client.get("/openapi.json")
        bodies.append(schema.text)
        for path, methods in schema.json()["paths"].items():
            if "get" not in methods or path.endswith("/stream"):  # the live stream never ends
                continue
            filled = path.replace("{site_id}", "site-s")
            while "{" in filled:
                start, end = filled.index("{"), filled.index("}")
                filled = filled[:start] + "1" + filled[end + 1 :]
            bodies.append(f"GET {filled}: " + client.get(filled).text)
        for extra in ("/", "/healthz", "/readyz", "/metrics", "/api/v1/nowhere", "/api/v1/audit?limit=x"):
            bodies.append(f"GET {extra}: " + client.get(extra).text)
    return bodies


def test_no_output_surface_shows_a_secret(
    tmp_path: Path, secret_database_url: str, mqtt_url: str, data_dir: Path
) -> None:
    config = tmp_path / "sites.yaml"
    config.write_text(REGISTRY.format(dead_port=free_port(), query=QUERY_SECRET, bearer=BEARER_SECRET))
    broker = urlsplit(mqtt_url)
    collector_url = f"mqtt://coll-1:{MQTT_SECRET}@{broker.netloc}"
    common = ("--database-url", secret_database_url, "--config", str(config))
    added = _peakwatch(
        "users", "add", "tester", "--role", "admin", "--password-stdin", *common, stdin=USER_PASSWORD
    )
    assert added.returncode == 0, added.stderr
    outputs = [added.stdout, added.stderr]

    api_port = free_port()
    out_path, err_path = tmp_path / "up.out", tmp_path / "up.err"
    cmd = [
        sys.executable, "-m", "cli.main", "up", "--no-demo", "--data-dir", str(data_dir),
        "--mqtt-url", collector_url, *common, "--api-port", str(api_port),
    ]  # fmt: skip
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "COLUMNS": "200"})
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, f"up did not serve within 60 s:\n{err_path.read_text()}"
            try:
                if httpx.get(f"{base}/healthz").json()["components"]:
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)  # another process: nothing to await
        outputs += _get_everything(base, {})
        login = httpx.post(
            f"{base}/api/v1/auth/login", json={"username": "tester", "password": USER_PASSWORD}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        outputs.append(
            httpx.post(f"{base}/api/v1/auth/login", json={"username": "tester", "password": "x"}).text
        )
        # the webhook is down: wait until the notifier has tried (and failed) to deliver the silent meter
        while '"outcome":"failed"' not in (
            log := httpx.get(f"{base}/api/v1/notifications", headers=auth).text
        ):
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline + 60, f"no failed delivery within 2 min: {log}"
            time.sleep(0.5)
        outputs += _get_everything(base, auth)
        outputs.append(httpx.get(f"{base}/api/v1/audit", headers=auth).text)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    outputs += [out_path.read_text(), err_path.read_text()]
    assert code == 0, outputs[-1]
    # a command given an unreachable database: its error names the URL, not the password
    unreachable = secret_database_url.replace(
        urlsplit(secret_database_url).netloc.rsplit("@", 1)[-1], "127.0.0.1:1"
    )
    failed = _peakwatch("users", "list", "--database-url", unreachable, "--config", str(config))
    assert failed.returncode != 0
    outputs += [failed.stdout, failed.stderr]

    everything = "\n".join(outputs)
    assert "coll-1:***@" in everything  # the broker URL is shown (health, banner), its password is not
    leaks = {secret: everything.count(secret) for secret in SECRETS if secret in everything}
    assert not leaks, {
        s: [o[max(0, o.find(s) - 200) : o.find(s) + 50] for o in outputs if s in o] for s in leaks
    }
