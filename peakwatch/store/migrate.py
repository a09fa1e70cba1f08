"""Schema migrations: ``peakwatch/store/migrations/NNN_name.sql`` applied once each, in name order.

Every process runs ``apply_migrations`` at start-up, so it must be cheap when nothing is pending and
safe when several processes start together: the whole run holds a session advisory lock, and each
file is applied in its own transaction together with its row in ``schema_migrations``. The
TimescaleDB step (``peakwatch.store.timescale``) runs under the same lock.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Final

from peakwatch.store.conn import Conn
from peakwatch.store.timescale import TimescalePolicy, setup_timescale

_log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY: Final = 0x7065616B77617463
"""``pg_advisory_lock`` key serialising migrations ("peakwatc" in ASCII)."""
_LOCK_TIMEOUT_S: Final = 300.0
_STATEMENT_TIMEOUT_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    """File name without ``.sql``, e.g. ``001_base``; the order key."""
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationResult:
    applied: list[str]
    """Names of migrations and TimescaleDB steps applied by this run (empty when up to date)."""
    timescale: bool


def bundled_migrations() -> list[Migration]:
    """The SQL files shipped in the package, in apply order."""
    folder = resources.files("peakwatch.store").joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


async def apply_migrations(
    conn: Conn, policy: TimescalePolicy, migrations: list[Migration] | None = None
) -> MigrationResult:
    """Apply what is pending, then the TimescaleDB setup when the extension is available.
    Raises asyncpg errors (the caller translates them)."""
    todo = bundled_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=_LOCK_TIMEOUT_S)
    try:
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                name       text PRIMARY KEY,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""")
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
        done = {r["name"]: r["checksum"] for r in rows}
        applied: list[str] = []
        for migration in todo:
            if migration.name in done:
                if done[migration.name] != migration.checksum:
                    _log.warning(
                        "migration %s changed after it was applied; not re-applying it", migration.name
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql, timeout=_STATEMENT_TIMEOUT_S)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                    migration.name,
                    migration.checksum,
                )
            _log.info("applied migration %s", migration.name)
            applied.append(migration.name)
        timescale, steps = await setup_timescale(conn, policy)
        applied.extend(steps)
        return MigrationResult(applied=applied, timescale=timescale)
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
