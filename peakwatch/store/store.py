"""asyncpg implementation of the store. See peakwatch/store/__init__.py for the contract."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

import asyncpg
import msgspec

from peakwatch.config import Registry
from peakwatch.domain.components import sum_components
from peakwatch.domain.models import (
    Components,
    KpiWindow,
    MeterInterval,
    MeterState,
    ProcessedBatch,
    Reading,
    Site,
)
from peakwatch.errors import StoreError
from peakwatch.store import restate
from peakwatch.store.access import AccessStore
from peakwatch.store.accounting import Accounting
from peakwatch.store.codec import register_codecs
from peakwatch.store.conn import Conn
from peakwatch.store.dead_letters import DeadLetterFilter, DeadLettersStore
from peakwatch.store.devices import DevicesStore
from peakwatch.store.errors import STORE_FAILURES, translate
from peakwatch.store.inputs import InputsStore
from peakwatch.store.migrate import apply_migrations
from peakwatch.store.notify import NotifyStore
from peakwatch.store.pooled import Pooled, convert
from peakwatch.store.records import AlertRecord, DeadLetterRecord, KpiRevision, MeterStatus
from peakwatch.store.rules import RulesStore
from peakwatch.store.sanitize import finite_amount, kpi_revision, kpi_window
from peakwatch.store.timescale import TimescalePolicy
from peakwatch.store.writes import (
    ALERTS_CHANNEL,
    KPI_SELECT,
    claim_sites,
    create_staging_tables,
    write_batch,
)

CONNECT_TIMEOUT_S: Final = 10.0
COMMAND_TIMEOUT_S: Final = 120.0
PROCESSOR_APPLICATION: Final = "peakwatch processor"
"""The ``application_name`` of a processor's sessions: how ``db restate`` tells whether one runs."""
_REGISTRY_LOCK_KEY: Final = 0x7065616B77726567  # "peakwreg"

_SITE_SELECT: Final = (
    "SELECT id, name, kind, timezone, grid_factor, factor_set, pue_category, labels FROM sites "
    "WHERE retired_at IS NULL"
)
_METER_COLUMNS: Final = (
    "id",
    "site_id",
    "carrier",
    "role",
    "register",
    "unit",
    "register_max",
    "rated_kw",
    "zone",
)
_ALERT_SELECT: Final = """
SELECT id, fingerprint, rule, site_id, state, severity, summary, value, started_at AS started_ms,
       fired_at AS fired_ms, resolved_at AS resolved_ms, updated_at AS updated_ms,
       acknowledged_at AS acknowledged_ms, acknowledged_by, labels, resolved_reason
FROM alerts"""


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    await register_codecs(conn)
    await create_staging_tables(conn)


class Store(Pooled):
    """A connection pool plus every query peakwatch runs. One instance per process; safe for
    concurrent use by many tasks (each call takes its own pooled connection)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, timescale: bool = False) -> None:
        """Use ``Store.connect``; this wraps an already configured pool."""
        super().__init__(pool)
        self._timescale = timescale
        self.inputs = InputsStore(pool)
        """Accounting inputs: factor versions, meter replacements, green instruments, value added,
        targets and the restatement queue."""
        self.devices = DevicesStore(pool)
        """Device and collector credentials for the MQTT broker."""
        self.access = AccessStore(pool)
        """API and dashboard users, their tokens and sessions, the audit log."""
        self.rules = RulesStore(pool)
        """Alert rules made through the API (the registry file holds the others)."""
        self.notify = NotifyStore(pool)
        """Silences, the notifier's group logs, the delivery log, and the notifier's wake-ups."""
        self.dead_letters = DeadLettersStore(pool)
        """Refused input: filtered, counted and paged by key."""
        self._meter_keys: dict[tuple[str, str], int] = {}
        """(site, meter) -> ``meters.key``, the compact key raw readings are stored under."""

    @classmethod
    async def connect(
        cls, url: str, *, min_size: int = 1, max_size: int = 8, application_name: str = "peakwatch"
    ) -> Store:
        """Open a pool. Raises StoreError(retryable=True) when the server cannot be reached.
        ``application_name`` names the sessions in ``pg_stat_activity`` (``PROCESSOR_APPLICATION``)."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                server_settings={"application_name": application_name},
                init=_init_connection,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except STORE_FAILURES as exc:
            raise translate(exc, "connecting to the database") from exc
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"connecting to the database: {exc}", retryable=False) from exc
        store = cls(pool)
        try:
            async with store._connection("connecting to the database") as conn:
                store._timescale = bool(
                    await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
                    )
                )
        except StoreError:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Wait for borrowed connections to come back, then close them all (terminate after 30 s)."""
        try:
            async with asyncio.timeout(30):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()

    async def migrate(self, *, policy: TimescalePolicy | None = None) -> list[str]:
        """Apply pending migrations (idempotent; safe to run on every start) and, when the timescaledb
        extension is available, hypertables, compression, retention and continuous aggregates.
        Returns the names of what was applied."""
        async with self._connection("migrating the schema") as conn:
            result = await apply_migrations(conn, policy or TimescalePolicy())
        self._timescale = result.timescale
        return result.applied

    @property
    def timescale(self) -> bool:
        """Whether the TimescaleDB path is active (known after ``migrate``)."""
        return self._timescale

    async def sync_registry(self, registry: Registry) -> None:
        """Mirror the YAML registry into ``sites`` and ``meters`` (upsert). Sites and meters no longer in
        the registry are retired, not deleted, so their history stays readable and a meter keeps its
        key; one that comes back is active again."""
        sites = list(registry.sites.values())
        meters = list(registry.meters.values())
        async with self._connection("syncing the registry") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _REGISTRY_LOCK_KEY)
            await conn.execute(
                """
                INSERT INTO sites AS s (id, name, kind, timezone, grid_factor, factor_set, pue_category,
                                        labels)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                     $7::text[], $8::jsonb[])
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                    timezone = EXCLUDED.timezone, grid_factor = EXCLUDED.grid_factor,
                    factor_set = EXCLUDED.factor_set, pue_category = EXCLUDED.pue_category,
                    labels = EXCLUDED.labels, updated_at = now(), retired_at = NULL
                WHERE (s.name, s.kind, s.timezone, s.grid_factor, s.factor_set, s.pue_category, s.labels,
                       s.retired_at)
                      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.timezone, EXCLUDED.grid_factor,
                                        EXCLUDED.factor_set, EXCLUDED.pue_category, EXCLUDED.labels, NULL)
                """,
                [s.id for s in sites],
                [s.name for s in sites],
                [s.kind.value for s in sites],
                [s.timezone for s in sites],
                [s.grid_factor for s in sites],
                [s.factor_set for s in sites],
                [s.pue_category for s in sites],
                [s.labels for s in sites],
            )
            await conn.execute(
                "UPDATE sites SET retired_at = now() WHERE retired_at IS NULL AND NOT (id = ANY($1::text[]))",
                [s.id for s in sites],
            )
            await conn.execute(
                """
                INSERT INTO meters AS m (site_id, id, carrier, role, register, unit, register_max, rated_kw,
                                         zone)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                     $7::float8[], $8::float8[], $9::text[])
                ON CONFLICT (site_id, id) DO UPDATE SET carrier = EXCLUDED.carrier, role = EXCLUDED.role,
                    register = EXCLUDED.register, unit = EXCLUDED.unit, register_max = EXCLUDED.register_max,
                    rated_kw = EXCLUDED.rated_kw, zone = EXCLUDED.zone, retired_at = NULL
                WHERE (m.carrier, m.role, m.register, m.unit, m.register_max, m.rated_kw, m.zone,
                       m.retired_at) IS DISTINCT FROM (EXCLUDED.carrier, EXCLUDED.role, EXCLUDED.register,
                                      EXCLUDED.unit, EXCLUDED.register_max, EXCLUDED.rated_kw,
                                      EXCLUDED.zone, NULL)
                """,
                [m.site_id for m in meters],
                [m.id for m in meters],
                [m.carrier.value for m in meters],
                [m.role.value for m in meters],
                [m.register.value for m in meters],
                [m.unit for m in meters],
                [m.register_max for m in meters],
                [m.rated_kw for m in meters],
                [m.zone for m in meters],
            )
            await conn.execute(
                """
                UPDATE meters m SET retired_at = now() WHERE retired_at IS NULL AND NOT EXISTS (
                    SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(site_id, id)
                    WHERE k.site_id = m.site_id AND k.id = m.id)
                """,
                [m.site_id for m in meters],
                [m.id for m in meters],
            )

    # ---------------------------------------------------------------- processor side

    async def write(self, batch: ProcessedBatch) -> None:
        """Write everything one processor step produced in ONE transaction: readings (COPY; a
        reading already stored for the same (site, meter, ts) is ignored), meter states (upsert),
        intervals (COPY, then added to existing rows), events, KPI windows (upsert: replace),
        alert changes (upsert by fingerprint), dead letters. Raises StoreError."""
        async with self._connection("writing a processed batch") as conn:
            missing = {(r.site_id, r.meter_id) for r in batch.readings} - self._meter_keys.keys()
            if missing:
                await self._load_meter_keys(conn)
                if unknown := missing - self._meter_keys.keys():
                    raise StoreError(
                        f"readings for meters not in the meters table: {sorted(unknown)[:5]}; "
                        "sync the registry first",
                        retryable=False,
                    )
            await write_batch(conn, batch, self._meter_keys)

    async def claim_sites(self, sites: Sequence[str], owner: str) -> dict[str, int]:
        """Take ``sites`` over for ``owner`` (a processor given them by the shared bus); returns each
        site's new epoch, which that processor's writes then carry (``ProcessedBatch.fence``)."""
        async with self._connection("claiming sites") as conn, conn.transaction():
            return await claim_sites(conn, sites, owner)

    async def _load_meter_keys(self, conn: Conn) -> None:
        rows = await conn.fetch("SELECT site_id, id, key FROM meters")
        self._meter_keys = {(r["site_id"], r["id"]): r["key"] for r in rows}

    async def load_meter_states(self) -> list[MeterState]:
        """Every meter's last accepted register value, for a processor that starts or restarts."""
        rows = await self._fetch(
            "loading meter states",
            "SELECT site_id, meter_id, last_ts AS last_ts_ms, last_value, last_seen AS last_seen_ms "
            "FROM meter_state ORDER BY site_id, meter_id",
        )
        return [convert(r, MeterState) for r in rows]

    async def load_readings_before_baselines(self, count: int) -> list[Reading]:
        """Up to ``count`` stored readings before each meter's baseline, newest first (a restart)."""
        async with self.transaction("loading readings before meter baselines") as conn:
            return await restate.readings_before_baselines(conn, count)

    async def load_intervals(self, since_ms: int) -> list[MeterInterval]:
        """Per-meter amounts of windows starting at or after ``since_ms`` (restores open windows)."""
        rows = await self._fetch(
            "loading meter intervals",
            "SELECT site_id, meter_id, window_start AS window_start_ms, amount FROM meter_intervals "
            "WHERE window_start >= $1 ORDER BY window_start, site_id, meter_id",
            since_ms,
        )
        return [
            convert(r, MeterInterval)
            for r in rows
            if finite_amount(r["site_id"], r["meter_id"], r["window_start_ms"], r["amount"])
        ]

    async def load_open_alerts(self) -> list[AlertRecord]:
        """Alerts in state pending or firing (restores rule state after a restart)."""
        rows = await self._fetch(
            "loading open alerts", _ALERT_SELECT + " WHERE state IN ('pending', 'firing') ORDER BY id"
        )
        return [convert(r, AlertRecord) for r in rows]

    # ---------------------------------------------------------------- API side

    async def ping(self) -> None:
        """Raise StoreError when the database does not answer ``SELECT 1``."""
        async with self._connection("pinging the database") as conn:
            await conn.fetchval("SELECT 1", timeout=5)

    async def list_sites(self) -> list[Site]:
        rows = await self._fetch("listing sites", _SITE_SELECT + " ORDER BY id")
        return [convert(r, Site) for r in rows]

    async def get_site(self, site_id: str) -> Site | None:
        rows = await self._fetch("reading a site", _SITE_SELECT + " AND id = $1", site_id)
        return convert(rows[0], Site) if rows else None

    async def latest_kpis(self, site_id: str, period: str = "1m") -> KpiWindow | None:
        """The most recent window of the site for ``period``."""
        rows = await self._fetch(
            "reading the latest KPIs",
            KPI_SELECT + " WHERE site_id = $1 AND period = $2 ORDER BY window_start DESC LIMIT 1",
            site_id,
            period,
        )
        return kpi_window(rows[0]) if rows else None

    async def kpi_series(
        self,
        site_id: str,
        from_ms: int,
        to_ms: int,
        limit: int = 10_000,
        period: str = "1m",
        *,
        conn: Conn | None = None,
    ) -> list[KpiWindow]:
        """Windows of ``period`` with ``from_ms <= start < to_ms``, oldest first. ``conn``: read inside
        that transaction (the API reads the stored and the open windows in one snapshot)."""
        query = (
            KPI_SELECT + " WHERE site_id = $1 AND period = $5 AND window_start >= $2 AND window_start < $3 "
            "ORDER BY window_start LIMIT $4"
        )
        args = (site_id, from_ms, to_ms, limit, period)
        rows = await (
            self._fetch("reading a KPI series", query, *args) if conn is None else conn.fetch(query, *args)
        )
        return [kpi_window(r) for r in rows]

    async def kpi_revisions(self, site_id: str, period: str, start_ms: int) -> list[KpiRevision]:
        """Earlier values of one window, oldest first (empty: never restated)."""
        rows = await self._fetch(
            "reading KPI revisions",
            "SELECT revision, reason, detail, replaced_at AS replaced_ms, previous, causes "
            "FROM kpi_revisions WHERE site_id = $1 AND period = $2 AND window_start = $3 ORDER BY revision",
            site_id,
            period,
            start_ms,
        )
        return [kpi_revision(r) for r in rows]

    async def components_between(self, site_id: str, period: str, from_ms: int, to_ms: int) -> Components:
        """Sum of the components of the ``period`` windows starting in ``[from_ms, to_ms)``."""
        rows = await self._fetch(
            "summing KPI components",
            KPI_SELECT + " WHERE site_id = $1 AND period = $2 AND window_start >= $3 AND window_start < $4",
            site_id,
            period,
            from_ms,
            to_ms,
        )
        return sum_components(kpi_window(r).components for r in rows)

    async def meter_statuses(self, site_id: str) -> list[MeterStatus]:
        rows = await self._fetch(
            "reading meter statuses",
            """
            SELECT m.id, m.site_id, m.carrier, m.role, m.register, m.unit, m.register_max, m.rated_kw, m.zone,
                   s.last_ts AS last_ts_ms, s.last_seen AS last_seen_ms, s.last_value
            FROM meters m
            LEFT JOIN meter_state s ON s.site_id = m.site_id AND s.meter_id = m.id
            WHERE m.site_id = $1 AND m.retired_at IS NULL
            ORDER BY m.id
            """,
            site_id,
        )
        return [
            msgspec.convert(
                {
                    "meter": {k: r[k] for k in _METER_COLUMNS},
                    "last_ts_ms": r["last_ts_ms"],
                    "last_seen_ms": r["last_seen_ms"],
                    "last_value": r["last_value"],
                },
                MeterStatus,
            )
            for r in rows
        ]

    async def list_alerts(
        self,
        *,
        site_id: str | None = None,
        state: str | None = None,
        limit: int = 500,
        site_ids: Sequence[str] | None = None,
        severity: str | None = None,
    ) -> list[AlertRecord]:
        """Newest first; ``site_ids`` limits to those sites (a caller's scope), ``None``: every site."""
        rows = await self._fetch(
            "listing alerts",
            _ALERT_SELECT + " WHERE ($1::text IS NULL OR site_id = $1) AND ($2::text IS NULL OR state = $2) "
            "AND ($4::text[] IS NULL OR site_id = ANY($4)) AND ($5::text IS NULL OR severity = $5) "
            "ORDER BY updated_at DESC, id DESC LIMIT $3",
            site_id,
            state,
            limit,
            None if site_ids is None else list(site_ids),
            severity,
        )
        return [convert(r, AlertRecord) for r in rows]

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        rows = await self._fetch("reading an alert", _ALERT_SELECT + " WHERE id = $1", alert_id)
        return convert(rows[0], AlertRecord) if rows else None

    async def acknowledge_alert(self, alert_id: int, by: str, now_ms: int) -> AlertRecord | None:
        """Mark an open (pending or firing) alert acknowledged by ``by``; ``None`` if it is not open.
        Acknowledging twice keeps the first acknowledgement."""
        rows = await self._fetch(
            "acknowledging an alert",
            "WITH acked AS (UPDATE alerts SET acknowledged_at = coalesce(acknowledged_at, $3), "
            "acknowledged_by = coalesce(acknowledged_by, $2) "
            "WHERE id = $1 AND state IN ('pending', 'firing') RETURNING id) "
            "SELECT id, pg_notify($4, '') FROM acked",
            alert_id,
            by,
            now_ms,
            ALERTS_CHANNEL,
        )
        return await self.get_alert(alert_id) if rows else None

    async def list_dead_letters(
        self,
        *,
        reason: str | None = None,
        limit: int = 500,
        site_ids: Sequence[str] | None = None,
        unknown_site: bool = True,
    ) -> list[DeadLetterRecord]:
        """The newest page of ``store.dead_letters`` (which also filters, counts and pages further)."""
        f = DeadLetterFilter(reason=reason, site_ids=site_ids, unknown_site=unknown_site)
        return await self.dead_letters.page(f, limit=limit)

    async def count_readings(self, site_id: str | None = None) -> int:
        async with self._connection("counting readings") as conn:
            if site_id is None:
                count = await conn.fetchval("SELECT count(*) FROM readings")
            else:
                count = await conn.fetchval(
                    "SELECT count(*) FROM readings r JOIN meters m ON m.key = r.meter_key "
                    "WHERE m.site_id = $1",
                    site_id,
                )
        return int(count)

    # ---------------------------------------------------------------- plumbing

    @contextlib.asynccontextmanager
    async def transaction(self, action: str) -> AsyncIterator[Conn]:
        """One connection inside one transaction, for the accountant's multi-step restatements
        (``peakwatch.store.restate`` functions). Errors become StoreError naming ``action``."""
        async with self._connection(action) as conn, conn.transaction():
            if self._timescale:
                # A restatement rewrites old windows, possibly in compressed chunks; TimescaleDB caps the
                # rows one transaction may decompress (100,000 by default, about 70 days of 1-minute
                # windows of one site), which a factor revision over a site's history exceeds.
                await conn.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
            yield conn

    @contextlib.asynccontextmanager
    async def accounting(self, action: str) -> AsyncIterator[Accounting]:
        """One accountant transaction (``transaction``) behind the accountant's protocol
        (``processor.ports.AccountingTransaction``): the accountant never holds a connection."""
        async with self.transaction(action) as conn:
            yield Accounting(conn, self.inputs)
