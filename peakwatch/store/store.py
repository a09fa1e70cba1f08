"""asyncpg implementation of the store. See peakwatch/store/__init__.py for the contract."""

from __future__ import annotations

from peakwatch.config import Registry
from peakwatch.domain.models import KpiWindow, MeterInterval, MeterState, ProcessedBatch, Site
from peakwatch.store.records import AlertRecord, DeadLetterRecord, MeterStatus


class Store:
    """A connection pool plus every query peakwatch runs. One instance per process; safe for
    concurrent use by many tasks (each call takes its own pooled connection)."""

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> Store:
        """Open a pool. Raises StoreError(retryable=True) when the server cannot be reached."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def migrate(self) -> list[str]:
        """Apply pending migrations (idempotent; safe to run on every start) and, when the timescaledb
        extension is available, hypertables, compression, retention and continuous aggregates.
        Returns the names of what was applied."""
        raise NotImplementedError

    @property
    def timescale(self) -> bool:
        """Whether the TimescaleDB path is active (known after ``migrate``)."""
        raise NotImplementedError

    async def sync_registry(self, registry: Registry) -> None:
        """Mirror the YAML registry into ``sites`` and ``meters`` (upsert; meters no longer in the
        registry are deleted, their readings kept)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- processor side

    async def write(self, batch: ProcessedBatch) -> None:
        """Write everything one processor step produced in ONE transaction: readings (COPY; a
        reading already stored for the same (site, meter, ts) is ignored), meter states (upsert),
        intervals (COPY, then added to existing rows), events, KPI windows (upsert: replace),
        alert changes (upsert by fingerprint), dead letters. Raises StoreError."""
        raise NotImplementedError

    async def load_meter_states(self) -> list[MeterState]:
        """Every meter's last accepted register value, for a processor that starts or restarts."""
        raise NotImplementedError

    async def load_intervals(self, since_ms: int) -> list[MeterInterval]:
        """Per-meter amounts of windows starting at or after ``since_ms`` (restores open windows)."""
        raise NotImplementedError

    async def load_open_alerts(self) -> list[AlertRecord]:
        """Alerts in state pending or firing (restores rule state after a restart)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- API side

    async def ping(self) -> None:
        """Raise StoreError when the database does not answer ``SELECT 1``."""
        raise NotImplementedError

    async def list_sites(self) -> list[Site]:
        raise NotImplementedError

    async def get_site(self, site_id: str) -> Site | None:
        raise NotImplementedError

    async def latest_kpis(self, site_id: str) -> KpiWindow | None:
        """The most recent closed window of the site."""
        raise NotImplementedError

    async def kpi_series(self, site_id: str, from_ms: int, to_ms: int, limit: int = 10_000) -> list[KpiWindow]:
        """Windows with ``from_ms <= start < to_ms``, oldest first."""
        raise NotImplementedError

    async def meter_statuses(self, site_id: str) -> list[MeterStatus]:
        raise NotImplementedError

    async def list_alerts(self, *, site_id: str | None = None, state: str | None = None,
                          limit: int = 500) -> list[AlertRecord]:
        """Newest first."""
        raise NotImplementedError

    async def list_dead_letters(self, *, reason: str | None = None, limit: int = 500) -> list[DeadLetterRecord]:
        """Newest first."""
        raise NotImplementedError

    async def count_readings(self, site_id: str | None = None) -> int:
        raise NotImplementedError
