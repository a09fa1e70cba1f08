"""Golden scenarios of issue #3, computed by hand from ../shared/domain.md factors (docs/kpis.md repeats
them): a data centre with a diesel generator, a park exporting PV with a battery, a market-based month,
and the exact-sum rule for longer windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peakwatch.domain.components import decode_components, sum_components
from peakwatch.domain.factors import Factor, FactorLibrary
from peakwatch.domain.kpis import (
    WindowInputs,
    gb40879_grade,
    minute_components,
    window_kpis,
)
from peakwatch.domain.models import Carrier, Meter, Role, SiteKind
from peakwatch.domain.periods import Period

DEFAULT = FactorLibrary().resolve("default")


def elec(meter_id: str, role: Role, zone: str | None = None) -> Meter:
    return Meter(id=meter_id, site_id="s", carrier=Carrier.ELECTRICITY, role=role, zone=zone)


DC_GENERATOR = (
    elec("facility", Role.FACILITY_TOTAL),
    elec("it-a", Role.IT_LOAD, zone="hall-a"),
    elec("crac-a", Role.COOLING, zone="hall-a"),
    elec("grid", Role.GRID_IMPORT),
    elec("gen-out", Role.GENERATOR_OUTPUT),
    Meter(id="gen-diesel", site_id="s", carrier=Carrier.DIESEL, role=Role.GENERATOR_FUEL, unit="kg"),
    Meter(id="water", site_id="s", carrier=Carrier.WATER, role=Role.WATER_SUPPLY, unit="m3"),
)


def test_data_centre_with_diesel_generator() -> None:
    amounts = {
        "facility": 1300.0,  # grid 1100 + generator 200, downstream of the transfer switch
        "it-a": 1000.0,
        "crac-a": 250.0,
        "grid": 1100.0,
        "gen-out": 200.0,
        "gen-diesel": 60.0,  # kg -> 0.06 t canonical
        "water": 1.8,
    }
    meters = DC_GENERATOR
    canonical = {k: (v / 1000 if k == "gen-diesel" else v) for k, v in amounts.items()}
    c = minute_components(meters, canonical)
    w = window_kpis(
        "s", 0, 3_600_000, c, WindowInputs(kind=SiteKind.DATA_CENTRE, factors=DEFAULT, period=Period.HOUR)
    )
    # PUE = 1300 / 1000: the generator's electricity is inside the facility meter, its fuel is not added
    assert w.pue == pytest.approx(1.3)
    assert w.gb40879_grade == "2"  # 1.20 < 1.30 <= 1.30
    # purchased = metered grid import 1100 -> 1100 x 0.4976 = 547.36 kg
    assert w.electricity_emissions_kg == pytest.approx(547.36)
    # diesel 0.06 t x 3095.9 = 185.754 kg; total 733.114 kg
    assert w.emissions_kg == pytest.approx(733.114)
    # CUE = 733.114 / 1000
    assert w.cue == pytest.approx(0.733114)
    # kgce: electricity not from the generator (1300 - 200) x 0.1229 = 135.19, diesel 0.06 x 1457.1 = 87.426
    assert w.total_kgce == pytest.approx(222.616)
    # electrification (final energy): 1300 x 0.1229 = 159.77 of 159.77 -> 1; coal-equivalent too
    assert w.electricity_kgce == pytest.approx(159.77)
    assert w.electricity_kgce_coal == pytest.approx(1300 * 0.3024)
    assert (w.electrification_rate, w.electrification_rate_coal) == (pytest.approx(1.0), pytest.approx(1.0))
    # WUE = 1.8 m3 x 1000 L / 1000 kWh; pPUE hall-a = (1000 + 250) / 1000
    assert w.wue_l_per_kwh == pytest.approx(1.8)
    assert w.ppue == {"hall-a": pytest.approx(1.25)}
    assert w.carbon_intensity_kg_per_kwh == pytest.approx(547.36 / 1300)
    assert w.ref == 0.0
    # an hour has no market-based values (certificates are monthly) and is interim
    assert (w.emissions_market_kg, w.green_certificates_kwh, w.interim) == (None, None, True)
    assert w.factors_used["grid"] == "grid.cn.hunan.2023@1"


PARK = (
    elec("grid-in", Role.GRID_IMPORT),
    elec("grid-out", Role.GRID_EXPORT),
    elec("pv", Role.PV_GENERATION),
    elec("bess-in", Role.STORAGE_CHARGE),
    elec("bess-out", Role.STORAGE_DISCHARGE),
    Meter(id="boiler", site_id="s", carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
    Meter(id="units", site_id="s", carrier=Carrier.PRODUCT, role=Role.PRODUCTION_OUTPUT, unit="count"),
)
PARK_QUARTER = {
    "grid-in": 100.0,
    "grid-out": 150.0,
    "pv": 400.0,
    "bess-in": 80.0,
    "bess-out": 30.0,
    "boiler": 20.0,
    "units": 500.0,
}


def test_park_exporting_pv_with_battery() -> None:
    c = minute_components(PARK, PARK_QUARTER)
    w = window_kpis(
        "s", 0, 900_000, c, WindowInputs(kind=SiteKind.PARK, factors=DEFAULT, period=Period.QUARTER_HOUR)
    )
    # consumed = 100 - 150 + 400 + 30 - 80 = 300; PV consumed = min(400 - 150, 300) = 250
    assert w.electricity_kwh == pytest.approx(300.0)
    assert w.renewable_consumed_kwh == pytest.approx(250.0)
    assert w.green_power_share == pytest.approx(250 / 300)
    # kgce 300 x 0.1229 = 36.87 + gas 20 x 1.2143 = 24.286 -> 61.156; electrification 36.87 / 61.156
    assert w.total_kgce == pytest.approx(61.156)
    assert w.electrification_rate == pytest.approx(36.87 / 61.156)
    # coal-equivalent: 300 x 0.3024 = 90.72 / (90.72 + 24.286)
    assert w.electrification_rate_coal == pytest.approx(90.72 / 115.006)
    # emissions: import 100 x 0.4976 = 49.76 + gas 20 x 2.1622 = 43.244 -> 93.004
    assert w.emissions_kg == pytest.approx(93.004)
    # 15-minute demand = 100 kWh imported / 0.25 h = 400 kW
    assert w.max_demand_kw == pytest.approx(400.0)
    # 61.156 kgce / 500 units
    assert w.energy_intensity_kgce_per_unit == pytest.approx(0.122312)
    assert w.pue is None
    assert w.cue is None


def test_market_based_month_with_certificates_and_value_added() -> None:
    c = decode_components(
        {
            "electricity_kwh": 12_000.0,
            "purchased_kwh": 10_000.0,
            "renewable_consumed_kwh": 2_000.0,
            "grid_import_kwh": 10_000.0,
            "grid_export_kwh": 0.0,
            "n_expected": 1.0,
            "n_present": 1.0,
        }
    )
    inputs = WindowInputs(
        kind=SiteKind.PARK,
        factors=DEFAULT,
        period=Period.MONTH,
        green_certificates_kwh=3_000.0,  # 3 GEC
        value_added_cny=2_000_000.0,
        max_demand_kw=950.0,
    )
    w = window_kpis("s", 0, 1, c, inputs)
    # location: 10,000 x 0.4976 = 4976; market: (10,000 - 3,000) x 0.6096 residual = 4267.2
    assert w.electricity_emissions_kg == pytest.approx(4976.0)
    assert w.emissions_market_kg == pytest.approx(4267.2)
    assert w.carbon_intensity_market_kg_per_kwh == pytest.approx(4267.2 / 12_000)
    # green share: on-site 2,000 / 12,000; market-based (2,000 + 3,000) / 12,000
    assert w.green_power_share == pytest.approx(1 / 6)
    assert w.green_power_share_market == pytest.approx(5 / 12)
    # 12,000 x 0.1229 = 1474.8 kgce per 200 x 10k CNY = 7.374
    assert w.energy_intensity_kgce_per_10k_cny == pytest.approx(7.374)
    assert w.max_demand_kw == 950.0


def test_certificates_cannot_cover_more_than_purchased() -> None:
    c = decode_components({"electricity_kwh": 100.0, "purchased_kwh": 100.0})
    inputs = WindowInputs(
        kind=SiteKind.PARK, factors=DEFAULT, period=Period.MONTH, green_certificates_kwh=5_000.0
    )
    w = window_kpis("s", 0, 1, c, inputs)
    assert w.emissions_market_kg == 0.0
    assert w.green_power_share_market == pytest.approx(1.0)


def test_day_is_the_exact_sum_of_its_minutes_and_ratios_are_not_averaged() -> None:
    meters = (elec("f", Role.FACILITY_TOTAL), elec("it", Role.IT_LOAD))
    # two minutes with very different loads: PUE 2.0 on 10 kWh IT, PUE 1.1 on 1000 kWh IT
    m1 = minute_components(meters, {"f": 20.0, "it": 10.0})
    m2 = minute_components(meters, {"f": 1100.0, "it": 1000.0})
    day = sum_components([m1, m2])
    w = window_kpis(
        "s", 0, 1, day, WindowInputs(kind=SiteKind.DATA_CENTRE, factors=DEFAULT, period=Period.DAY)
    )
    # 1120 / 1010 = 1.10891..., not the average of the ratios (1.55)
    assert w.pue == pytest.approx(1120 / 1010)
    assert w.facility_kwh == 1120.0


def test_factor_revision_changes_only_factor_dependent_values() -> None:
    revised = FactorLibrary().with_overrides(
        (
            Factor(
                id="grid.cn.hunan.2023",
                value=0.5,
                unit="kgCO2/kWh",
                source="revised",
                data_year=2023,
                published="2026-06-30",
                status="verified",
            ),
        )
    )
    c = minute_components((elec("f", Role.FACILITY_TOTAL),), {"f": 1000.0})
    before = window_kpis("s", 0, 1, c, WindowInputs(kind=SiteKind.PARK, factors=DEFAULT))
    after = window_kpis("s", 0, 1, c, WindowInputs(kind=SiteKind.PARK, factors=revised.resolve("default")))
    assert (before.emissions_kg, after.emissions_kg) == (pytest.approx(497.6), pytest.approx(500.0))
    assert before.electricity_kwh == after.electricity_kwh
    assert after.factors_used["grid"] == "grid.cn.hunan.2023@2"
    assert [f.version for f in revised.history("grid.cn.hunan.2023")] == [1, 2]


@pytest.mark.parametrize(
    ("ratio", "grade"),
    [(1.15, "1"), (1.2, "1"), (1.25, "2"), (1.5, "3"), (1.51, "over_limit"), (None, None)],
)
def test_gb40879_grades(ratio: float | None, grade: str | None) -> None:
    assert gb40879_grade(ratio, (1.2, 1.3, 1.5)) == grade


def test_completeness_counts_meter_intervals() -> None:
    meters = (elec("f", Role.FACILITY_TOTAL), elec("it", Role.IT_LOAD))
    one = minute_components(meters, {"f": 1.0})
    both = minute_components(meters, {"f": 1.0, "it": 1.0}, estimated=["it"])
    w = window_kpis(
        "s", 0, 1, sum_components([one, both]), WindowInputs(kind=SiteKind.DATA_CENTRE, factors=DEFAULT)
    )
    # 3 of 4 meter-minutes present; one estimated
    assert w.completeness == pytest.approx(0.75)
    assert w.estimated is True


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e4, allow_nan=False),
            st.floats(0, 1e4, allow_nan=False),
            st.floats(0, 50, allow_nan=False),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_pue_is_at_least_one_and_windows_are_sums_whatever_the_minutes(
    minutes: list[tuple[float, float, float]],
) -> None:
    """IT inside the facility meter (facility = IT + overhead >= IT), and a gas boiler: every minute's
    PUE and the window's are >= 1, and the window's energies are the sums of the minutes'."""
    meters = (
        elec("f", Role.FACILITY_TOTAL),
        elec("it", Role.IT_LOAD),
        Meter(id="gas", site_id="s", carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
    )
    inputs = WindowInputs(kind=SiteKind.DATA_CENTRE, factors=DEFAULT)
    parts = [
        minute_components(meters, {"f": it + overhead, "it": it, "gas": gas}) for it, overhead, gas in minutes
    ]
    for part in parts:
        pue = window_kpis("s", 0, 1, part, inputs).pue
        assert pue is None or pue >= 1.0
    total = window_kpis(
        "s",
        0,
        1,
        sum_components(parts),
        WindowInputs(kind=SiteKind.DATA_CENTRE, factors=DEFAULT, period=Period.HOUR),
    )
    assert total.pue is None or total.pue >= 1.0
    assert total.facility_kwh == pytest.approx(sum(it + o for it, o, _ in minutes))
    assert total.it_kwh == pytest.approx(sum(it for it, _, _ in minutes))
