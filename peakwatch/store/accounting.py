"""One accountant transaction as an object: the ``restate`` queries, the fence check and the longer
windows' rollup bound to one connection (``Store.accounting``).

The accountant (``processor/accountant.py``) names what it needs as a protocol
(``processor.ports.AccountingTransaction``) and never sees a connection, so it runs against an
in-memory fake in unit tests; this is the real implementation, each method one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from peakwatch.config import Registry
from peakwatch.domain.factors import FactorLibrary
from peakwatch.domain.models import KpiWindow, Reading, Site
from peakwatch.domain.periods import Period
from peakwatch.store import restate
from peakwatch.store.conn import Conn
from peakwatch.store.inputs import InputsStore
from peakwatch.store.records import RestatementRequest
from peakwatch.store.rollups import SiteRollup
from peakwatch.store.writes import check_fence


class Accounting:
    """The accountant's view of one open transaction on ``conn``."""

    def __init__(self, conn: Conn, inputs: InputsStore) -> None:
        self._conn = conn
        self._inputs = inputs

    async def check_fence(self, fence: Mapping[str, int]) -> None:
        await check_fence(self._conn, fence)

    async def frontiers(self) -> dict[tuple[str, str], int]:
        return await restate.frontiers(self._conn)

    async def first_window_start(self, site_id: str) -> int | None:
        return await restate.first_window_start(self._conn, site_id)

    async def load_windows(self, site_id: str, period: str, from_ms: int, to_ms: int) -> list[KpiWindow]:
        return await restate.load_windows(self._conn, site_id, period, from_ms, to_ms)

    async def windows_overlapping(
        self, site_id: str, period: str, from_ms: int, to_ms: int
    ) -> list[tuple[int, int]]:
        return await restate.windows_overlapping(self._conn, site_id, period, from_ms, to_ms)

    async def period_window(
        self, registry: Registry, library: FactorLibrary, site: Site, period: Period, start: int, end: int
    ) -> KpiWindow:
        """A window of ``period`` from its stored child windows (``peakwatch.store.rollups``: the API
        computes the periods in progress the same way)."""
        rollup = SiteRollup.of(registry, library, site, self._inputs)
        return await rollup.window(self._conn, period, start, end)

    async def save_windows(
        self,
        windows: Sequence[KpiWindow],
        reason: str,
        detail: str,
        *,
        causes: restate.Attribution | None = None,
        exact_flags: bool = False,
    ) -> int:
        return await restate.save_windows(
            self._conn, windows, reason, detail, causes=causes, exact_flags=exact_flags
        )

    async def later_requests(self, site_id: str, after_id: int) -> list[RestatementRequest]:
        return await restate.later_requests(self._conn, site_id, after_id)

    async def lock_meter(self, site_id: str, meter_id: str) -> None:
        await restate.lock_meter(self._conn, site_id, meter_id)

    async def reading_bounds(self, site_id: str, meter_id: str, from_ms: int, to_ms: int) -> tuple[int, int]:
        return await restate.reading_bounds(self._conn, site_id, meter_id, from_ms, to_ms)

    async def readings_around(
        self, site_id: str, meter_id: str, from_ms: int, to_ms: int, *, context: int = 1
    ) -> list[Reading]:
        return await restate.readings_around(self._conn, site_id, meter_id, from_ms, to_ms, context=context)

    async def replace_intervals(
        self,
        site_id: str,
        meter_id: str,
        from_ms: int,
        to_ms: int,
        amounts: Mapping[int, float],
        estimated: set[int],
    ) -> None:
        await restate.replace_intervals(self._conn, site_id, meter_id, from_ms, to_ms, amounts, estimated)

    async def meter_events(self, site_id: str, from_ms: int, to_ms: int) -> list[tuple[str, int, str]]:
        return await restate.meter_events(self._conn, site_id, from_ms, to_ms)

    async def ledger(self, site_id: str, from_ms: int, to_ms: int) -> dict[int, restate.LedgerMinute]:
        return await restate.ledger(self._conn, site_id, from_ms, to_ms)
