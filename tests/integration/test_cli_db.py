"""``peakwatch db restate`` as a process against a real database: it queues a manual restatement."""

from __future__ import annotations

import asyncio
import sys

import pytest

from peakwatch.store import Store

pytestmark = pytest.mark.integration


async def peakwatch(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": ""},
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_db_restate_queues_a_manual_request(store: Store, database_url: str) -> None:
    code, out = await peakwatch(
        "db", "restate", "--database-url", database_url, "--site", "dc-1",
        "--from", "2026-01-01T00:00+08:00", "--to", "2026-01-02T00:00+08:00",
    )  # fmt: skip
    assert code == 0, out
    assert "queued" in out
    [request] = await store.inputs.list_restatements(10)
    assert (request.site_id, request.meter_id, request.reason) == ("dc-1", None, "manual")
    assert (request.from_ms, request.to_ms) == (1_767_196_800_000, 1_767_283_200_000)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-01-02T00:00+08:00", "2026-01-01T00:00+08:00", "--to must be after --from"),
        ("2026-01-01", "2026-01-02T00:00+08:00", "has no UTC offset"),
        ("yesterday", "2026-01-02T00:00+08:00", "not an ISO 8601"),
    ],
)
async def test_db_restate_refuses_a_bad_range(database_url: str, start: str, end: str, message: str) -> None:
    code, out = await peakwatch("db", "restate", "--database-url", database_url, "--from", start, "--to", end)
    assert code == 2
    assert message in out
