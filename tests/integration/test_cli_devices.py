"""``peakwatch devices`` as a process against a real database: an id with a trailing newline is
refused like the API refuses it, and a new secret is the only thing on standard output (issue 15,
items 7 and 8)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from peakwatch.store import Store

pytestmark = pytest.mark.integration

REGISTRY = """
sites:
  - id: site-a
    name: Site A
    kind: park
    meters:
      - {id: m1, carrier: electricity, role: grid_import, unit: kWh}
"""


async def peakwatch(database_url: str, config: Path, *args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error, apart."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        "--database-url",
        database_url,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": ""},
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(REGISTRY)
    return path


async def test_an_id_with_a_trailing_newline_is_refused(
    store: Store, database_url: str, config: Path
) -> None:
    for command in (["devices", "add", "gw-a\n", "--site", "site-a"], ["devices", "add-collector", "coll\n"]):
        code, out, err = await peakwatch(database_url, config, *command)
        assert code == 2, (out, err)
        assert "must match" in err
        assert out == ""
    assert await store.devices.list() == []


async def test_a_new_secret_is_alone_on_standard_output(
    store: Store, database_url: str, config: Path
) -> None:
    code, out, err = await peakwatch(database_url, config, "devices", "add", "gw-a", "--site", "site-a")
    assert code == 0, (out, err)
    secret = out.strip()
    assert len(secret) >= 32, out
    assert "\n" not in secret, out  # the secret, and nothing else
    assert secret not in err
    assert "gw-a" in err
    assert "shown once" in err
    code, out, err = await peakwatch(database_url, config, "devices", "rotate", "gw-a")
    assert code == 0, (out, err)
    assert out.strip() != secret
    assert len(out.strip()) >= 32
    assert out.strip() not in err
