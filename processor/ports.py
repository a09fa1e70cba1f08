"""What the processor needs of the store, as protocols: given at construction, implemented by
``peakwatch.store.Store`` and, in unit tests, by in-memory fakes.

Before these, the accountant and the rule reload took the concrete ``Store`` after construction and the
accountant called ``peakwatch.store.restate`` with raw connections, so it could only be tested against
a database. Now each part of the processor names the few store operations it uses:

* ``ProcessorStore``: the live path (one write per step, restoring the sites, claiming them);
* ``AccountantStore``: the accountant (its inputs and the queue, and ``accounting`` transactions,
  ``AccountingTransaction``, in which it reads and rewrites windows and the ledger);
* ``RuleStore``: the alert rules made through the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date
from typing import TYPE_CHECKING, Protocol

from peakwatch.config import Registry
from peakwatch.domain.factors import Factor, FactorLibrary
from peakwatch.domain.models import (
    KpiWindow,
    MeterInterval,
    MeterReplacement,
    MeterState,
    ProcessedBatch,
    Reading,
    Site,
)
from peakwatch.domain.periods import Period

if TYPE_CHECKING:  # the store package imports asyncpg; the processor only needs the records' shapes
    from peakwatch.store.records import AlertRecord, RestatementRequest, StoredRule
    from peakwatch.store.restate import Attribution, LedgerMinute


class ProcessorStore(Protocol):
    """The live path's store (tests pass an in-memory fake)."""

    async def write(self, batch: ProcessedBatch) -> None: ...

    async def load_meter_states(self) -> list[MeterState]: ...

    async def load_readings_before_baselines(self, count: int) -> list[Reading]: ...

    async def load_intervals(self, since_ms: int) -> list[MeterInterval]: ...

    async def load_open_alerts(self) -> list[AlertRecord]: ...

    async def latest_kpis(self, site_id: str) -> KpiWindow | None: ...

    async def claim_sites(self, sites: list[str], owner: str) -> dict[str, int]: ...


class RuleStore(Protocol):
    """Alert rules made through the API (``peakwatch.store.rules.RulesStore``)."""

    async def version(self) -> str: ...

    async def list(self) -> list[StoredRule]: ...


class AccountingInputs(Protocol):
    """The accounting inputs and the restatement queue (``peakwatch.store.inputs.InputsStore``)."""

    async def load_factor_versions(self) -> list[Factor]: ...

    async def sync_factors(self, current: Sequence[Factor]) -> list[RestatementRequest]: ...

    async def list_replacements(
        self, site_id: str | None = None, meter_id: str | None = None
    ) -> list[MeterReplacement]: ...

    async def pending_restatements(self, limit: int = 100) -> list[RestatementRequest]: ...

    async def split_restatement(self, request_id: int) -> int: ...

    async def mark_restatement_done(self, ids: Sequence[int]) -> None: ...

    async def mark_restatement_failed(self, request_id: int, error: str) -> None: ...

    async def green_kwh(self, site_id: str, month: date) -> float: ...

    async def value_added(self, site_id: str, month: date) -> float | None: ...


class AccountingTransaction(Protocol):
    """One accountant transaction (``peakwatch.store.accounting.Accounting``): every read and write of
    a restatement commits or rolls back together."""

    async def check_fence(self, fence: Mapping[str, int]) -> None: ...

    async def frontiers(self) -> dict[tuple[str, str], int]: ...

    async def first_window_start(self, site_id: str) -> int | None: ...

    async def load_windows(self, site_id: str, period: str, from_ms: int, to_ms: int) -> list[KpiWindow]: ...

    async def windows_overlapping(
        self, site_id: str, period: str, from_ms: int, to_ms: int
    ) -> list[tuple[int, int]]: ...

    async def period_window(
        self, registry: Registry, library: FactorLibrary, site: Site, period: Period, start: int, end: int
    ) -> KpiWindow: ...

    async def save_windows(
        self,
        windows: Sequence[KpiWindow],
        reason: str,
        detail: str,
        *,
        causes: Attribution | None = None,
        exact_flags: bool = False,
    ) -> int: ...

    async def later_requests(self, site_id: str, after_id: int) -> list[RestatementRequest]: ...

    async def lock_meter(self, site_id: str, meter_id: str) -> None: ...

    async def reading_bounds(
        self, site_id: str, meter_id: str, from_ms: int, to_ms: int
    ) -> tuple[int, int]: ...

    async def readings_around(
        self, site_id: str, meter_id: str, from_ms: int, to_ms: int, *, context: int = 1
    ) -> list[Reading]: ...

    async def replace_intervals(
        self,
        site_id: str,
        meter_id: str,
        from_ms: int,
        to_ms: int,
        amounts: Mapping[int, float],
        estimated: set[int],
    ) -> None: ...

    async def meter_events(self, site_id: str, from_ms: int, to_ms: int) -> list[tuple[str, int, str]]: ...

    async def ledger(self, site_id: str, from_ms: int, to_ms: int) -> dict[int, LedgerMinute]: ...


class AccountantStore(Protocol):
    """The accountant's store: its inputs and queue, and its transactions."""

    @property
    def inputs(self) -> AccountingInputs: ...

    def accounting(self, action: str) -> AbstractAsyncContextManager[AccountingTransaction]: ...
