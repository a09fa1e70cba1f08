"""Exact restatement reasons: inputs queued back to back are each credited with what they changed.

Every input is stored with its request in one transaction, so when the accountant works the first
request the second one's input is already in the store. The revision must cite the input the window's
difference shows, not the request that happened to run first.
"""

from __future__ import annotations

from datetime import date

import pytest

from peakwatch.config import Registry
from peakwatch.domain.factors import Factor
from peakwatch.domain.kpis import WindowInputs, minute_components, window_kpis
from peakwatch.store import Store, restate
from processor.accountant import Accountant

pytestmark = pytest.mark.integration

MIN = 60_000
FEB = 1_769_875_200_000  # 2026-02-01T00:00:00+08:00
MAR = 1_772_294_400_000  # 2026-03-01T00:00:00+08:00
PARK_YAML = """
sites:
  - id: park
    name: Test park
    kind: park
    meters:
      - {id: grid-in, carrier: electricity, role: grid_import, unit: kWh}
"""


async def _park(store: Store) -> tuple[Registry, Accountant]:
    """A park with two minutes of February (600 + 400 kWh imported), its month materialised."""
    registry = Registry.from_text(PARK_YAML)
    await store.sync_registry(registry)
    site = registry.sites["park"]
    inputs = WindowInputs(kind=site.kind, factors=registry.resolve_factors(site))
    meters = registry.site_meters("park")
    minutes = [
        window_kpis("park", t, t + MIN, minute_components(meters, {"grid-in": kwh}), inputs)
        for t, kwh in [(FEB, 600.0), (MAR - MIN, 400.0)]
    ]
    async with store.transaction("seeding minutes") as conn:
        await restate.save_windows(conn, minutes, "test", "")
    accountant = Accountant(store, registry, committed=lambda: {"park": MAR}, closed=lambda: {"park": MAR})
    await accountant.start()
    await accountant.run_once()
    return registry, accountant


async def test_back_to_back_inputs_each_get_their_own_reason(store: Store) -> None:
    _, accountant = await _park(store)
    # a revision of a factor the park does not use (it uses Hunan's), then the park's value added
    factor = await store.inputs.add_factor_version(
        Factor(
            id="grid.cn.central.2023",
            value=0.56,
            unit="kgCO2/kWh",
            source="test corrigendum",
            data_year=2023,
            published="2026-06-30",
            status="verified",
            version=2,
        )
    )
    value = await store.inputs.set_value_added("park", date(2026, 2, 1), 1_000_000.0)
    await accountant.run_once()

    [month] = await store.kpi_series("park", FEB, MAR, period="1mo")
    # 1000 kWh x 0.1229 kgce = 122.9 kgce per 100 x 10k CNY
    assert month.energy_intensity_kgce_per_10k_cny == pytest.approx(1.229)
    assert month.revision == 1
    [revision] = await store.kpi_revisions("park", "1mo", FEB)
    assert revision.reason == "value_added"
    assert revision.detail == "value added 1e+06 CNY for 2026-02"
    assert revision.causes == [
        {"request_id": value.id, "reason": "value_added", "detail": "value added 1e+06 CNY for 2026-02"}
    ]
    # the factor revision changed nothing of the park: no revision cites it, and it says so
    requests = {r.id: r for r in await store.inputs.list_restatements(10)}
    assert requests[factor.id].done_ms is not None
    assert requests[factor.id].restated == 0
    assert requests[value.id].done_ms is not None
    # the month only: its 12-month window still lacks the other 11 months' value added
    assert requests[value.id].restated == 1
    # the minutes did not change
    minutes = await store.kpi_series("park", FEB, MAR)
    assert [m.revision for m in minutes] == [0, 0]


async def test_a_revision_changed_by_two_inputs_lists_both(store: Store) -> None:
    _, accountant = await _park(store)
    certificates, _ = await store.inputs.add_green_instrument(
        "park", date(2026, 2, 1), "certificate", 300.0, "GEC 1"
    )
    value = await store.inputs.set_value_added("park", date(2026, 2, 1), 1_000_000.0)
    await accountant.run_once()
    [revision] = await store.kpi_revisions("park", "1mo", FEB)
    # one recomputation applied both: the revision lists each, in request order
    assert revision.reason == "green_instruments,value_added"
    assert [c["request_id"] for c in revision.causes] == [certificates.id, value.id]
    requests = {r.id: r for r in await store.inputs.list_restatements(10)}
    # certificates also change the 12-month window's market-based values; value added does not (above)
    assert (requests[certificates.id].restated, requests[value.id].restated) == (2, 1)
    [year] = await store.kpi_revisions("park", "12mo", 1_740_758_400_000)  # 2025-03-01 .. 2026-03-01 local
    assert year.reason == "green_instruments"


async def test_a_factor_overridden_in_the_registry_restates_stored_windows(store: Store) -> None:
    await _park(store)
    [month] = await store.kpi_series("park", FEB, MAR, period="1mo")
    assert month.factors_used["grid"] == "grid.cn.hunan.2023@1"
    # the operator overrides the park's grid factor in the YAML and restarts the processor
    overridden = Registry.from_text(
        PARK_YAML
        + """
factors:
  - id: grid.cn.hunan.2023
    value: 0.5
    unit: kgCO2/kWh
    source: provincial corrigendum
    data_year: 2023
    published: "2026-06-30"
    status: verified
"""
    )
    restarted = Accountant(store, overridden, committed=lambda: {"park": MAR}, closed=lambda: {"park": MAR})
    await restarted.start()
    [queued] = await store.inputs.list_restatements(1, pending=True)
    assert (queued.reason, queued.site_id, queued.factor_id) == (
        "factor_revision",
        None,
        "grid.cn.hunan.2023",
    )
    assert queued.detail == "factor grid.cn.hunan.2023@2 (registry): 0.4976 -> 0.5 kgCO2/kWh"
    await restarted.run_once()

    # every stored window is at the new version: no history mixing @1 and @2
    for period in ("1m", "15m", "1h", "1d", "1mo"):
        for w in await store.kpi_series("park", FEB, MAR, period=period):
            assert w.factors_used["grid"] == "grid.cn.hunan.2023@2", (period, w.start_ms)
    [month] = await store.kpi_series("park", FEB, MAR, period="1mo")
    assert month.emissions_kg == pytest.approx(1000 * 0.5)  # 600 + 400 kWh imported
    [revision] = await store.kpi_revisions("park", "1mo", FEB)
    assert revision.causes == [
        {"request_id": queued.id, "reason": "factor_revision", "detail": queued.detail}
    ]
    # a second start with the same registry queues nothing
    again = Accountant(store, overridden, committed=lambda: {"park": MAR}, closed=lambda: {"park": MAR})
    await again.start()
    assert await store.inputs.list_restatements(1, pending=True) == []
