"""Dead-letter queries on a large table: the plans and times of the API's pages, totals and counts.

Writes ``--letters`` dead letters (default 1,000,000) over 30 days, 10 sites plus letters of no site,
8 reasons (one of them most of the flood), into a fresh embedded PostgreSQL (or ``--database-url``),
then prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each query the API runs (peakwatch/store/dead_letters.py)
with its time. A page must be an index range scan whatever its depth (no OFFSET), and a count of a
time range an index-only scan.

    .venv/bin/python -m bench.dead_letters [--letters 1000000] [--port 19402] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from peakwatch.domain.models import DeadLetter, ProcessedBatch
from peakwatch.embedded.postgres import EmbeddedPostgres
from peakwatch.store import Store
from peakwatch.store.codec import register_codecs
from peakwatch.store.dead_letters import (
    DeadLetterFilter,
    DeadLetterKey,
    count_query,
    counts_query,
    page_query,
)
from peakwatch.store.timescale import TimescalePolicy

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REASONS = (
    "malformed_json",
    "unknown_meter",
    "bad_topic",
    "unknown_site",
    "ts_too_old",
    "bad_unit",
    "nan",
    "big",
)
SITES = [f"site-{n}" for n in range(10)]


def letter(i: int, n: int) -> DeadLetter:
    """Letter ``i`` of ``n``: evenly over 30 days; 70 % of them the flood's reason; one in 11 of no site."""
    site = None if i % 11 == 10 else SITES[i % 11]
    return DeadLetter(
        received_ms=START_MS + i * 30 * DAY_MS // n,
        source=f"telemetry/{site or 'nowhere'}/m{i % 7}",
        reason=REASONS[0] if i % 10 < 7 else REASONS[1 + i % 7],
        detail="bench",
        payload=b'{"energy_kwh": "x"}',
        site_id=site,
        meter_id=f"m{i % 7}",
    )


async def fill(store: Store, n: int) -> None:
    chunk = 50_000
    for first in range(0, n, chunk):
        await store.write(
            ProcessedBatch(dead_letters=[letter(i, n) for i in range(first, min(n, first + chunk))])
        )


async def explain(conn: asyncpg.Connection[Any], title: str, query: tuple[str, list[Any]]) -> None:
    sql, args = query
    for _ in range(2):  # the first run warms the cache
        started = time.perf_counter()
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
        took_ms = (time.perf_counter() - started) * 1000
    print(f"\n== {title}: {took_ms:.1f} ms\n" + "\n".join(r[0] for r in plan))


async def run(url: str, n: int) -> None:
    store = await Store.connect(url)
    try:
        await store.migrate(policy=TimescalePolicy(enabled=False))
        started = time.perf_counter()
        await fill(store, n)
        print(f"wrote {n:,} dead letters in {time.perf_counter() - started:.1f} s")
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE dead_letters")
        await _explain_all(conn, n)
    finally:
        await conn.close()


async def _explain_all(conn: asyncpg.Connection[Any], n: int) -> None:
    await register_codecs(conn)  # instants as epoch ms, as the store sends them
    everything = DeadLetterFilter()
    deep = await conn.fetchrow(
        "SELECT received_at AS ms, id FROM dead_letters ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1",
        n * 9 // 10,
    )
    assert deep is not None
    cursor = DeadLetterKey(deep["ms"], deep["id"])
    day_ms = (START_MS + 14 * DAY_MS, START_MS + 15 * DAY_MS)
    scoped = DeadLetterFilter(site_ids=SITES[:2], unknown_site=False)
    queries = [
        ("first page of 1000, every letter (admin)", page_query(everything, None, 1001)),
        ("page of 1000 at 90 % depth (cursor)", page_query(everything, cursor, 1001)),
        (
            "page of 1000, reason unknown_meter, at 90 % depth",
            page_query(DeadLetterFilter(reason=REASONS[1]), cursor, 1001),
        ),
        ("page of 1000, scope of 2 sites (LATERAL)", page_query(scoped, None, 1001)),
        (
            "page of 1000, one site, one day",
            page_query(DeadLetterFilter(site_ids=[SITES[3]], from_ms=day_ms[0], to_ms=day_ms[1]), None, 1001),
        ),
        ("total, every letter", count_query(everything)),
        ("total, one reason", count_query(DeadLetterFilter(reason=REASONS[2]))),
        ("total, one day", count_query(DeadLetterFilter(from_ms=day_ms[0], to_ms=day_ms[1]))),
        ("total, scope of 2 sites", count_query(scoped)),
        (
            "counts by site and reason, one day",
            counts_query(DeadLetterFilter(from_ms=day_ms[0], to_ms=day_ms[1])),
        ),
        ("counts by site and reason, every letter", counts_query(everything)),
    ]
    for title, query in queries:
        await explain(conn, title, query)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--letters", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=19402, help="embedded PostgreSQL's port")
    parser.add_argument("--database-url", help="an empty database instead of the embedded server")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args.letters))
        return
    with tempfile.TemporaryDirectory(prefix="pw-bench-dl-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", args.port, durable=False)
        try:
            asyncio.run(run(server.start(), args.letters))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
