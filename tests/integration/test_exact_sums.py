"""Sums of the accounting path do not depend on the order rows are stored in.

The same rows are written in two physical orders (and, on TimescaleDB, read back from compressed
chunks, which return them in yet another order): the sums must be bit-identical, and the correctly
rounded sum. 0.1, 0.2 and 0.3 are the classic case: summed left to right 0.1 + 0.2 + 0.3 gives
0.6000000000000001, right to left 0.6; the exact sum of the three doubles,
0.6000000000000000055511151231257827, rounds to the double 0.6 (0.59999999999999997779...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from peakwatch.config import Registry
from peakwatch.domain.components import encode_components
from peakwatch.domain.models import Components, KpiWindow, ProcessedBatch
from peakwatch.store import Store

pytestmark = pytest.mark.integration

MIN = 60_000
T0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00: older than the 7-day compression horizon
PARTS = (0.1, 0.2, 0.3)
REGISTRY = Registry.from_text(
    """
sites:
  - {id: a, name: A, kind: data_centre, meters: [{id: it, carrier: electricity, role: it_load}]}
  - {id: b, name: B, kind: data_centre, meters: [{id: it, carrier: electricity, role: it_load}]}
"""
)


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_database_url"))


@pytest.fixture
async def raw(database_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def compress_everything(store: Store, raw: asyncpg.Connection[asyncpg.Record]) -> None:
    """On TimescaleDB, read the rows back from compressed chunks (their own storage order)."""
    if store.timescale:
        await raw.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) "
            "FROM (SELECT show_chunks('kpi_windows') AS c) chunks"
        )


def minute(site: str, start_ms: int, kwh: float) -> KpiWindow:
    return KpiWindow(
        site_id=site,
        start_ms=start_ms,
        end_ms=start_ms + MIN,
        electricity_kwh=kwh,
        facility_kwh=None,
        it_kwh=kwh,
        renewable_generation_kwh=0.0,
        renewable_consumed_kwh=0.0,
        grid_import_kwh=0.0,
        grid_export_kwh=0.0,
        electricity_kgce=0.0,
        total_kgce=0.0,
        emissions_kg=0.0,
        electricity_emissions_kg=0.0,
        pue=None,
        electrification_rate=None,
        carbon_intensity_kg_per_kwh=None,
        green_power_share=None,
        completeness=1.0,
        components=Components(electricity_kwh=kwh),
    )


async def test_component_sums_do_not_depend_on_storage_order(
    store: Store, raw: asyncpg.Connection[asyncpg.Record]
) -> None:
    # the same three minutes (0.3, 0.2, 0.1 kWh at 00:00, 00:01, 00:02), written one by one: site a in
    # time order, site b in reverse, so the rows lie in opposite physical orders (and an index read
    # returns them newest first: 0.1 + 0.2 + 0.3)
    for i in (0, 1, 2):
        await store.write(ProcessedBatch(kpi_windows=[minute("a", T0 + i * MIN, PARTS[2 - i])]))
    for i in (2, 1, 0):
        await store.write(ProcessedBatch(kpi_windows=[minute("b", T0 + i * MIN, PARTS[2 - i])]))
    await compress_everything(store, raw)
    a = await store.components_between("a", "1m", T0, T0 + 3 * MIN)
    b = await store.components_between("b", "1m", T0, T0 + 3 * MIN)
    assert a == b
    assert encode_components(a) == {"electricity_kwh": 0.6}


async def test_certificates_sum_does_not_depend_on_storage_order(store: Store) -> None:
    await store.sync_registry(REGISTRY)
    month = date(2026, 1, 1)
    for kwh in PARTS:
        await store.inputs.add_green_instrument("a", month, "certificate", kwh)
    for kwh in reversed(PARTS):
        await store.inputs.add_green_instrument("b", month, "certificate", kwh)
    assert await store.inputs.green_kwh("a", month) == await store.inputs.green_kwh("b", month) == 0.6
