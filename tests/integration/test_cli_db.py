"""``peakwatch db restate`` as a process against a real database: it queues a manual restatement of
a known site, cuts a range at the current minute, says whether a processor works the queue (a session
named ``PROCESSOR_APPLICATION``; ``peakwatch up`` beside it: tests/e2e/test_cli_beside_up.py) and
``--wait`` exits 0 only once the request is done."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cli.running import StackCard, write_card
from peakwatch.config import Registry
from peakwatch.store import Store
from peakwatch.store.store import PROCESSOR_APPLICATION
from tests.support import eventually

pytestmark = pytest.mark.integration


REGISTRY = """
sites:
  - id: dc-1
    name: DC 1
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
  - id: park-1
    name: Park 1
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
"""
DAY = ("--from", "2026-01-01T00:00+08:00", "--to", "2026-01-02T00:00+08:00")


@pytest.fixture
async def sites(store: Store) -> Store:
    await store.sync_registry(Registry.from_text(REGISTRY))
    return store


@pytest.fixture
async def processor_session(database_url: str) -> AsyncIterator[Store]:
    """What a running processor leaves on the database: a session under its application name."""
    other = await Store.connect(database_url, application_name=PROCESSOR_APPLICATION)
    try:
        yield other
    finally:
        await other.close()


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


async def test_db_restate_queues_a_manual_request(sites: Store, database_url: str) -> None:
    code, out = await peakwatch("db", "restate", "--database-url", database_url, "--site", "dc-1", *DAY)
    assert code == 0, out
    assert "queued" in out
    # no processor on this database: said so, and not that one picks it up
    assert "no processor is running on this database" in out
    assert "within a second" not in out
    [request] = await sites.inputs.list_restatements(10)
    assert (request.site_id, request.meter_id, request.reason) == ("dc-1", None, "manual")
    assert (request.from_ms, request.to_ms) == (1_767_196_800_000, 1_767_283_200_000)


async def test_db_restate_refuses_an_unknown_site(sites: Store, database_url: str) -> None:
    code, out = await peakwatch("db", "restate", "--database-url", database_url, "--site", "nope", *DAY)
    assert code == 2, out
    assert "unknown site 'nope'; known sites: dc-1, park-1" in out
    assert await sites.inputs.list_restatements(10) == []


async def test_db_restate_without_a_site_queues_one_request_per_site(sites: Store, database_url: str) -> None:
    code, out = await peakwatch("db", "restate", "--database-url", database_url, *DAY)
    assert code == 0, out
    requests = await sites.inputs.list_restatements(10)
    assert sorted(r.site_id or "" for r in requests) == ["dc-1", "park-1"]


async def test_db_restate_cuts_a_future_range_at_the_current_minute(sites: Store, database_url: str) -> None:
    before = int(time.time() * 1000) // 60_000 * 60_000
    code, out = await peakwatch(
        "db", "restate", "--database-url", database_url, "--site", "park-1",
        "--from", "2026-01-01T00:00+08:00", "--to", "2999-01-01T00:00+00:00",
    )  # fmt: skip
    after = int(time.time() * 1000) // 60_000 * 60_000
    assert code == 0, out
    assert "--to 2999-01-01T00:00+00:00 is in the future; restating up to the current minute" in out
    [request] = await sites.inputs.list_restatements(10)
    assert before <= request.to_ms <= after  # the minute the command ran in, not the year 2999


async def test_db_restate_wait_without_a_processor_fails_at_once(sites: Store, database_url: str) -> None:
    started = time.monotonic()
    args = ("db", "restate", "--database-url", database_url, "--site", "dc-1", *DAY, "--wait")
    code, out = await peakwatch(*args)
    assert code == 1, out
    assert "no processor is running" in out
    assert time.monotonic() - started < 30  # not the 600 s timeout


async def test_db_restate_wait_ends_when_the_request_is_done(
    sites: Store, database_url: str, processor_session: Store
) -> None:
    command = asyncio.ensure_future(
        peakwatch("db", "restate", "--database-url", database_url, "--site", "dc-1", *DAY, "--wait")
    )
    [request] = await eventually(lambda: sites.inputs.list_restatements(10), "the request queued")
    await asyncio.sleep(1.0)  # the command is waiting now (a second of its polls)
    assert not command.done()
    await sites.inputs.mark_restatement_done([request.id])  # as the processor's accountant does
    code, out = await asyncio.wait_for(command, timeout=30)
    assert code == 0, out
    assert "a processor (1 session(s) on the database) works the queue" in out
    assert "done: dc-1 restated" in out


async def test_db_restate_wait_reports_a_failed_request_as_failed_not_at_the_timeout(
    sites: Store, database_url: str, processor_session: Store
) -> None:
    started = time.monotonic()
    command = asyncio.ensure_future(
        peakwatch("db", "restate", "--database-url", database_url, "--site", "dc-1", *DAY, "--wait")
    )
    [request] = await eventually(lambda: sites.inputs.list_restatements(10), "the request queued")
    # as the processor's accountant does when the restatement raises (one site's poisoned data)
    await sites.inputs.mark_restatement_failed(request.id, "RuntimeError: poisoned ledger of site dc-1")
    code, out = await asyncio.wait_for(command, timeout=30)
    assert code == 1, out
    assert f"error: request {request.id} (dc-1) failed: RuntimeError: poisoned ledger of site dc-1" in out
    assert "the processor retries it with backoff" in out
    assert time.monotonic() - started < 30  # not the 600 s timeout
    [failing] = await sites.inputs.list_restatements(10)
    assert (failing.done_ms, failing.attempts) == (None, 1)  # still queued: retried


async def test_db_restate_wait_times_out_with_exit_1(
    sites: Store, database_url: str, processor_session: Store
) -> None:
    code, out = await peakwatch(
        "db", "restate", "--database-url", database_url, "--site", "dc-1", *DAY, "--wait", "--timeout", "2"
    )
    assert code == 1, out
    assert "not done after 2 s" in out
    assert "still pending" in out


async def test_db_restate_refuses_a_range_starting_in_the_future(database_url: str) -> None:
    code, out = await peakwatch(
        "db", "restate", "--database-url", database_url,
        "--from", "2999-01-01T00:00+00:00", "--to", "2999-01-02T00:00+00:00",
    )  # fmt: skip
    assert code == 2, out
    assert "is not in the past" in out


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


async def test_a_stack_card_speaks_only_for_its_own_database(
    sites: Store, database_url: str, tmp_path: Path
) -> None:
    """A stack runs from the data directory, but --database-url names another database: that stack's
    processor does not work this queue, so the command must not count on it."""
    write_card(
        StackCard(
            pid=os.getpid(),  # alive
            started_at_ms=0,
            database_url="postgresql://postgres@127.0.0.1:1/other",
            mqtt_url="mqtt://127.0.0.1:1",
            api_url="http://127.0.0.1:1",
            data_dir=str(tmp_path),
        )
    )
    args = ("db", "restate", "--database-url", database_url, "--data-dir", str(tmp_path), "--site", "dc-1")
    code, out = await peakwatch(*args, *DAY, "--wait")
    assert code == 1, out
    assert "no processor is running" in out
    assert "peakwatch up (pid" not in out
