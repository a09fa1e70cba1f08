"""Issue 15: a numeric domain that cannot be poisoned. Values beyond the physical bounds are refused
before any register difference (collector and processor), splits and ratios survive float64's
extremes, and a window with a value that is not finite is flagged, never null."""

from __future__ import annotations

import math
import sys

import msgspec
import pytest

from peakwatch.domain.components import decode_components, encode_components, sum_components
from peakwatch.domain.derivation import derive_intervals
from peakwatch.domain.energy import MeterRegister
from peakwatch.domain.kpis import NOT_COMPUTABLE, finite_window, ratio
from peakwatch.domain.models import Carrier, KpiWindow, Meter, Reading, ReadingBatch, Role
from peakwatch.domain.outcomes import OUT_OF_RANGE
from peakwatch.domain.reasons import Reason
from peakwatch.domain.spreading import split_interval
from processor.meters import MeterTracker, StepOutput
from tests.unit.test_collector_decode import decode, one_reading

MIN = 60_000
W0 = 1_767_225_600_000
MAX = sys.float_info.max  # 1.7976931348623157e308
MIN_NORMAL = sys.float_info.min  # 2.2250738585072014e-308
TINY = 5e-324  # the smallest subnormal
METER = Meter(id="m", site_id="s", carrier=Carrier.ELECTRICITY, role=Role.GRID_IMPORT, unit="kWh")


# ------------------------------------------------------------------------------------- collector


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("energy_kwh", 1e308),
        ("energy_kwh", MAX),
        ("energy_kwh", 1.0000000000000002e15),  # the next float above 1e15
        ("energy_mwh", 1e13),  # 1e16 kWh once converted
        ("volume_m3", 2e15),
        ("power_kw", 1.5e8),  # 150 GW
        ("power_mw", -1e6),  # -1e9 kW
        ("count", 1e300),
    ],
)
def test_values_beyond_the_physical_bound_are_out_of_range(field: str, value: float) -> None:
    result = decode({"ts": 1_714_521_600_000, field: value})
    assert result.readings == []
    [letter] = result.dead_letters
    assert letter.reason == Reason.OUT_OF_RANGE
    assert field in letter.detail
    assert "beyond the physical bound" in letter.detail


def test_values_at_the_bound_and_tiny_ones_pass() -> None:
    r = one_reading({"ts": 1_714_521_600_000, "energy_kwh": 1e15, "power_kw": -1e8})
    assert (r.energy_kwh, r.power_kw) == (1e15, -1e8)
    r = one_reading({"ts": 1_714_521_600_000, "energy_kwh": TINY, "power_kw": -0.0})
    assert (r.energy_kwh, r.power_kw) == (TINY, -0.0)


# ------------------------------------------------------------------------------------- processor


def test_the_four_readings_of_the_finding_are_dead_letters_and_count_nothing() -> None:
    from tests.unit.fakes import make_registry

    tracker = MeterTracker(make_registry(), MIN)
    out = StepOutput(W0)
    values = (1e308, 1.79e308, 1.0, 1.79e308)
    readings = [
        Reading(site_id="park", meter_id="grid-in", ts_ms=W0 + 50_000 + i * 10_000, energy_kwh=v)
        for i, v in enumerate(values)
    ]
    tracker.apply_batch(ReadingBatch("park", readings), out)
    intervals, _ = tracker.drain(out, W0)
    assert [letter.reason for letter in out.dead_letters] == [Reason.OUT_OF_RANGE] * 3
    assert [r.energy_kwh for r in out.readings] == [1.0]  # the baseline; the others are not stored
    assert intervals == []  # one reading in range: a baseline, no energy yet


def test_out_of_range_leaves_the_register_as_it_was() -> None:
    reg = MeterRegister(METER)
    pending: dict[int, float] = {}
    notes: list[tuple[object, ...]] = []
    reg.account(W0, 10.0, pending, MIN, notes)  # type: ignore[arg-type]
    for bad in (1e308, math.nan, math.inf, -MAX):
        assert reg.account(W0 + 1_000, bad, pending, MIN, notes) is OUT_OF_RANGE  # type: ignore[arg-type]
    assert (reg.last_ts, reg.last_value, pending) == (W0, 10.0, {})


def test_rederivation_skips_stored_readings_out_of_range() -> None:
    # 10 kWh at W0, 1.79e308 at W0 + 30 s (stored by an older version), 16 kWh at W0 + 90 s:
    # 6 kWh over [0 s, 90 s): 4 kWh to minute 0 (60 of 90 s) and 2 kWh to minute 1
    readings = [
        Reading(site_id="s", meter_id="m", ts_ms=W0 + t, energy_kwh=v)
        for t, v in ((0, 10.0), (30_000, 1.79e308), (90_000, 16.0))
    ]
    derived = derive_intervals(METER, readings, [], MIN, from_ms=0, to_ms=1 << 62)
    assert derived.amounts == {W0: pytest.approx(4.0), W0 + MIN: pytest.approx(2.0)}
    assert sum(derived.amounts.values()) == 6.0


# ------------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("amount", [MAX, -MAX, 1e308, MIN_NORMAL, TINY, -0.0, 0.0, 1e15, 2e15])
@pytest.mark.parametrize("span_ms", [90_000, 7 * MIN + 1, 86_400_001, 3 * 86_400_000 + 17])
def test_split_is_finite_and_exact_at_the_extremes_of_float64(amount: float, span_ms: int) -> None:
    shares = split_interval(W0 + 30_000, W0 + 30_000 + span_ms, amount, MIN)
    assert len(shares) > 1
    total = 0.0
    for _, share in shares:
        assert math.isfinite(share)
        assert share * amount >= 0.0  # never of the other sign
        total += share
    assert total == amount


def test_split_hand_vectors_at_the_extremes() -> None:
    # [30 s, 90 s): half in each minute. 4 subnormal ulps: 2 + 2. MAX = (2**53 - 1) ulps of 2**971:
    # the first half truncated to 2**52 - 1 ulps, the remainder 2**52 ulps (both exact floats)
    assert split_interval(30_000, 90_000, 4 * TINY, MIN) == [(0, 2 * TINY), (MIN, 2 * TINY)]
    ulp = 2.0**971
    assert split_interval(30_000, 90_000, MAX, MIN) == [(0, (2**52 - 1) * ulp), (MIN, 2**52 * ulp)]


# ------------------------------------------------------------------------------------- KPIs


def test_a_ratio_over_a_subnormal_is_none_not_infinite() -> None:
    assert ratio(1.0, TINY) is None  # 1 / 5e-324 overflows
    assert ratio(1e15, MIN_NORMAL) is None
    assert ratio(3.0, 2.0) == 1.5


def test_sums_that_cannot_be_taken_are_nan_then_flagged() -> None:
    def total(*amounts: float) -> dict[str, float]:
        return encode_components(sum_components(decode_components({"water_m3": a}) for a in amounts))

    assert math.isnan(total(math.inf, -math.inf)["water_m3"])
    assert math.isnan(total(MAX, MAX)["water_m3"])
    assert total(1e15, TINY) == {"water_m3": 1e15}


def test_a_window_with_values_that_are_not_finite_is_flagged_never_null() -> None:
    window = KpiWindow(
        site_id="s", period="1m", start_ms=W0, end_ms=W0 + MIN, electricity_kwh=math.inf,
        facility_kwh=None, it_kwh=None, renewable_generation_kwh=0.0, renewable_consumed_kwh=0.0,
        grid_import_kwh=-math.inf, grid_export_kwh=0.0, electricity_kgce=0.0, total_kgce=0.0,
        emissions_kg=0.0, electricity_emissions_kg=0.0, pue=math.nan, electrification_rate=None,
        carbon_intensity_kg_per_kwh=None, green_power_share=None, completeness=1.0,
        flags=("reset",), components=decode_components({"electricity_kwh": math.inf, "n_present": 1.0}),
        ppue={"a": math.inf, "b": 1.2},
    )  # fmt: skip
    clean = finite_window(window)
    assert (clean.electricity_kwh, clean.grid_import_kwh, clean.pue) == (0.0, 0.0, None)
    assert encode_components(clean.components) == {"electricity_kwh": 0.0, "n_present": 1.0}
    assert clean.ppue == {"a": None, "b": 1.2}
    assert clean.flags == ("not_computable", "reset")
    assert msgspec.json.decode(msgspec.json.encode(clean), type=KpiWindow) == clean
    assert finite_window(clean) is clean  # nothing left to flag
    assert NOT_COMPUTABLE == "not_computable"
