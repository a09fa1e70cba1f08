"""The accountant against an in-memory store (``processor.ports.AccountantStore``): the seam is real, so
its scheduling (frontiers, requests of other processors' sites, transient failures) is tested without
a database. The restatement arithmetic itself is tested against PostgreSQL
(tests/integration/test_accounting.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date

import msgspec

from peakwatch.config import Registry
from peakwatch.domain.factors import Factor, FactorLibrary
from peakwatch.domain.models import KpiWindow, MeterReplacement, Reading, RestatementReason, Site
from peakwatch.domain.periods import Period
from peakwatch.errors import StoreError
from peakwatch.store.records import RestatementRequest
from peakwatch.store.restate import Attribution, LedgerMinute
from processor.accountant import COMPUTED, Accountant
from processor.ports import AccountantStore
from tests.unit.fakes import make_registry
from tests.unit.test_processor_alerts import window

MIN = 60_000
T0 = 1_699_999_200_000
"""An hour boundary (472,222 h after the epoch), so quarter hours start at T0 + k * 15 min."""


def _window(site_id: str, period: Period, start: int, end: int) -> KpiWindow:
    """A window of ``period`` (its values are irrelevant here: the fake computes nothing)."""
    return msgspec.structs.replace(window(0, None, site_id), start_ms=start, end_ms=end, period=period.value)


class FakeInputs:
    """The restatement queue and accounting inputs, in memory."""

    def __init__(self, pending: list[RestatementRequest]) -> None:
        self.pending = pending
        self.done: list[int] = []
        self.split: list[int] = []

    async def load_factor_versions(self) -> list[Factor]:
        return []

    async def sync_factors(self, current: Sequence[Factor]) -> list[RestatementRequest]:
        return []

    async def list_replacements(
        self, site_id: str | None = None, meter_id: str | None = None
    ) -> list[MeterReplacement]:
        return []

    async def pending_restatements(self, limit: int = 100) -> list[RestatementRequest]:
        return [r for r in self.pending if r.id not in self.done and r.id not in self.split][:limit]

    async def split_restatement(self, request_id: int) -> int:
        self.split.append(request_id)
        return 2

    async def mark_restatement_done(self, ids: Sequence[int]) -> None:
        self.done.extend(ids)

    async def mark_restatement_failed(self, request_id: int, error: str) -> None:
        raise AssertionError(f"request {request_id} failed: {error}")

    async def green_kwh(self, site_id: str, month: date) -> float:
        return 0.0

    async def value_added(self, site_id: str, month: date) -> float | None:
        return None


class FakeTransaction:
    """One accountant transaction: records what the accountant computed, saved and fenced."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def check_fence(self, fence: Mapping[str, int]) -> None:
        self.store.fences.append(dict(fence))

    async def frontiers(self) -> dict[tuple[str, str], int]:
        return dict(self.store.stored_frontiers)

    async def first_window_start(self, site_id: str) -> int | None:
        return self.store.first.get(site_id)

    async def load_windows(self, site_id: str, period: str, from_ms: int, to_ms: int) -> list[KpiWindow]:
        return []

    async def windows_overlapping(
        self, site_id: str, period: str, from_ms: int, to_ms: int
    ) -> list[tuple[int, int]]:
        return []

    async def period_window(
        self, registry: Registry, library: FactorLibrary, site: Site, period: Period, start: int, end: int
    ) -> KpiWindow:
        self.store.computed.append((site.id, period.value, start, end))
        if self.store.transient_failures:
            self.store.transient_failures -= 1
            raise StoreError("deadlock detected", retryable=True)
        return _window(site.id, period, start, end)

    async def save_windows(
        self,
        windows: Sequence[KpiWindow],
        reason: str,
        detail: str,
        *,
        causes: Attribution | None = None,
        exact_flags: bool = False,
    ) -> int:
        self.store.saved.extend((w.period, w.start_ms, w.end_ms, reason) for w in windows)
        return 0

    async def later_requests(self, site_id: str, after_id: int) -> list[RestatementRequest]:
        return []

    async def lock_meter(self, site_id: str, meter_id: str) -> None:
        return None

    async def reading_bounds(self, site_id: str, meter_id: str, from_ms: int, to_ms: int) -> tuple[int, int]:
        return from_ms, to_ms

    async def readings_around(
        self, site_id: str, meter_id: str, from_ms: int, to_ms: int, *, context: int = 1
    ) -> list[Reading]:
        return []

    async def replace_intervals(
        self,
        site_id: str,
        meter_id: str,
        from_ms: int,
        to_ms: int,
        amounts: Mapping[int, float],
        estimated: set[int],
    ) -> None:
        return None

    async def meter_events(self, site_id: str, from_ms: int, to_ms: int) -> list[tuple[str, int, str]]:
        return []

    async def ledger(self, site_id: str, from_ms: int, to_ms: int) -> dict[int, LedgerMinute]:
        return {}


class FakeStore:
    def __init__(self, pending: list[RestatementRequest] | None = None) -> None:
        self._inputs = FakeInputs(pending or [])
        self.first: dict[str, int] = {}
        self.stored_frontiers: dict[tuple[str, str], int] = {}
        self.computed: list[tuple[str, str, int, int]] = []
        self.saved: list[tuple[str, int, int, str]] = []
        self.fences: list[dict[str, int]] = []
        self.transient_failures = 0

    @property
    def inputs(self) -> FakeInputs:
        return self._inputs

    @contextlib.asynccontextmanager
    async def accounting(self, action: str) -> AsyncIterator[FakeTransaction]:
        yield FakeTransaction(self)


def _accountant(
    store: AccountantStore,
    committed: dict[str, int],
    *,
    owns: Callable[[str], bool] | None = None,
    fence: Mapping[str, int] | None = None,
) -> Accountant:
    return Accountant(
        store, make_registry(), committed=lambda: committed, closed=lambda: committed, owns=owns, fence=fence
    )


def _request(request_id: int, site_id: str | None, reason: RestatementReason) -> RestatementRequest:
    return RestatementRequest(
        id=request_id,
        site_id=site_id,
        meter_id=None,
        from_ms=T0,
        to_ms=T0 + MIN,
        reason=reason.value,
        detail="",
        requested_ms=T0,
    )


async def test_longer_windows_follow_the_committed_frontier_inside_the_fence() -> None:
    store = FakeStore()
    store.first["dc"] = T0
    committed = {"dc": T0 + 30 * MIN}
    accountant = _accountant(store, committed, fence={"dc": 7})
    await accountant.start()
    # 30 committed minutes: two quarter hours end in (T0, T0 + 30 min]; no hour, day, month or year yet
    assert await accountant.run_once() == 2
    quarters = [("dc", "15m", T0, T0 + 15 * MIN), ("dc", "15m", T0 + 15 * MIN, T0 + 30 * MIN)]
    assert store.computed == quarters
    assert store.saved == [("15m", s, e, COMPUTED) for _, _, s, e in quarters]
    assert store.fences == [{"dc": 7}]  # every materialising transaction checks this processor's epoch
    assert await accountant.run_once() == 0  # nothing newer is committed: nothing is done again


async def test_a_restart_resumes_from_the_stored_frontiers() -> None:
    store = FakeStore()
    store.first["dc"] = T0
    store.stored_frontiers[("dc", "15m")] = T0 + 15 * MIN
    accountant = _accountant(store, {"dc": T0 + 30 * MIN})
    await accountant.start()
    assert await accountant.run_once() == 1
    assert store.computed == [("dc", "15m", T0 + 15 * MIN, T0 + 30 * MIN)]


async def test_a_transient_failure_runs_the_transaction_again() -> None:
    store = FakeStore()
    store.first["dc"] = T0
    store.transient_failures = 1
    accountant = _accountant(store, {"dc": T0 + 15 * MIN})
    await accountant.start()
    assert await accountant.run_once() == 1
    # the first attempt failed inside the transaction; the retry (peakwatch.retry) computed it again
    assert store.computed == [("dc", "15m", T0, T0 + 15 * MIN)] * 2
    assert store.saved == [("15m", T0, T0 + 15 * MIN, COMPUTED)]


async def test_on_a_shared_bus_only_its_own_sites_requests_are_worked() -> None:
    every_site = _request(1, None, RestatementReason.MANUAL)
    foreign = _request(2, "park", RestatementReason.LATE_DATA)
    own = _request(3, "dc", RestatementReason.LATE_DATA)
    store = FakeStore([every_site, foreign, own])
    accountant = _accountant(store, {}, owns=lambda site_id: site_id == "dc", fence={"dc": 1})
    await accountant.start()
    # the request for every site is split (2 new ones); park's stays for its owner; dc's waits, as
    # none of dc's windows is committed yet
    assert await accountant.run_once() == 2
    assert store.inputs.split == [1]
    assert store.inputs.done == []
    assert store.computed == []
