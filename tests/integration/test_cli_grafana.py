"""``peakwatch grafana`` as a process: export writes the committed files; push talks HTTP to a real
server standing in for Grafana's API (the endpoints grafana-client calls), and refusals are explained."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli.grafana.dashboards import ALERTS_UID, DC_UID, PARK_UID, rendered_files
from peakwatch.net import free_port

pytestmark = pytest.mark.integration

TOKEN = "glsa_test_token"


async def peakwatch(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": ""},
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_export_writes_every_dashboard(tmp_path: Path) -> None:
    target = tmp_path / "dashboards"
    code, _, err = await peakwatch("grafana", "export", "--dir", str(target))
    assert code == 0, err
    files = {p.name: p.read_text(encoding="utf-8") for p in target.iterdir()}
    assert files == rendered_files()
    assert set(files) == {f"{PARK_UID}.json", f"{DC_UID}.json", f"{ALERTS_UID}.json"}
    assert err.count("wrote") == 3
    code, _, err = await peakwatch("grafana", "export", "--dir", str(target))
    assert code == 0
    assert err.count("unchanged") == 3


async def test_push_explains_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = await peakwatch("grafana", "push", "--url", url, "--token", TOKEN)
    assert code == 2
    assert f"cannot reach Grafana at {url}: connection refused" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("url", ["grafana.local:3000", "http://grafana.local:port", "ftp://grafana.local"])
async def test_push_refuses_a_url_that_is_not_http(url: str) -> None:
    code, _, err = await peakwatch("grafana", "push", "--url", url, "--token", TOKEN)
    assert code == 2
    assert "--url must be http(s)://host[:port][/path]" in err


# --------------------------------------------------------------------- a stand-in for Grafana's API


@dataclass
class FakeGrafana:
    """What the stand-in holds and saw: folders by uid, dashboards by uid, every request."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    """(method, path, Authorization, X-Grafana-Org-Id)"""


def handler_for(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            state.requests.append(
                (
                    self.command,
                    self.path,
                    self.headers.get("Authorization"),
                    self.headers.get("X-Grafana-Org-Id"),
                )
            )
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"message": "invalid API key"})
                return False
            return True

        def do_GET(self) -> None:
            if not self.authorised():
                return
            if self.path.split("?")[0] == "/api/folders":
                self.reply(200, [{"uid": f["uid"], "title": f["title"]} for f in state.folders.values()])
                return
            kind, _, uid = self.path.removeprefix("/api/").rpartition("/")
            store = {"folders": state.folders, "dashboards/uid": state.dashboards}.get(kind)
            if store is None or uid not in store:
                self.reply(404, {"message": "not found"})
            else:
                self.reply(200, store[uid])

        def do_POST(self) -> None:
            if not self.authorised():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/folders":
                state.folders[body["uid"]] = body
                self.reply(200, {"uid": body["uid"], "title": body["title"]})
            elif self.path == "/api/dashboards/db":
                uid = body["dashboard"]["uid"]
                state.dashboards[uid] = body
                self.reply(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1})
            else:
                self.reply(404, {"message": "not found"})

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_push_creates_then_updates(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    code, out, err = await peakwatch(
        "grafana", "push", "--url", url, "--token", TOKEN, "--folder", "Energy KPIs", "--org-id", "3"
    )
    assert code == 0, err
    assert set(state.folders) == {"energy-kpis"}
    assert state.folders["energy-kpis"]["title"] == "Energy KPIs"
    assert set(state.dashboards) == {PARK_UID, DC_UID, ALERTS_UID}
    for uid, body in state.dashboards.items():
        assert body["folderUid"] == "energy-kpis"
        assert body["overwrite"] is True
        assert (
            json.dumps(body["dashboard"], indent=2, ensure_ascii=False) + "\n"
            == rendered_files()[f"{uid}.json"]
        )
    assert all(auth == f"Bearer {TOKEN}" and org == "3" for _, _, auth, org in state.requests)
    assert out.count("created") == 3

    state.requests.clear()
    code, out, err = await peakwatch(
        "grafana", "push", "--url", url, "--token", TOKEN, "--folder", "Energy KPIs"
    )
    assert code == 0, err
    assert out.count("updated") == 3
    assert "created" not in out
    assert ("POST", "/api/folders", f"Bearer {TOKEN}", None) not in state.requests  # the folder exists


async def test_push_uses_an_existing_folder_of_that_title(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    state.folders["hand-made-uid"] = {"uid": "hand-made-uid", "title": "peakwatch"}
    code, _, err = await peakwatch("grafana", "push", "--url", url, "--token", TOKEN)
    assert code == 0, err
    assert set(state.folders) == {"hand-made-uid"}
    assert {body["folderUid"] for body in state.dashboards.values()} == {"hand-made-uid"}


async def test_push_explains_a_refused_token(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    code, _, err = await peakwatch("grafana", "push", "--url", url, "--token", "wrong")
    assert code == 2
    assert "refused the token (401 Unauthorized)" in err
    assert not state.dashboards
