"""KPI components: the flat form stored and served, and exact sums (peakwatch.domain.components)."""

from __future__ import annotations

import math

import pytest

from peakwatch.domain.components import (
    add_components,
    decode_components,
    encode_components,
    finite_components,
    sum_components,
)
from peakwatch.domain.kpis import green_coverage, minute_components
from peakwatch.domain.models import Carrier, Components, Fuel, FuelUse, Meter, Quantity, Role

DIESEL = Fuel(FuelUse.GENERATOR, Carrier.DIESEL, Quantity.MASS_T)
GAS = Fuel(FuelUse.DIRECT, Carrier.NATURAL_GAS, Quantity.VOLUME_M3)

# one key of every kind, in jsonb's order (shorter keys first, then bytewise)
EVERY_KIND = {
    "it_kwh": 6.0,
    "water_m3": 0.5,
    "n_present": 4.0,
    "n_expected": 4.0,
    "facility_kwh": 9.0,
    "output:count": 12.0,
    "zone:a:it_kwh": 6.0,
    "zone:a:total_kwh": 8.0,
    "genfuel:diesel:mass_t": 0.06,
    "fuel:natural_gas:volume_m3": 2.0,
}
TYPED = Components(
    n_expected=4.0,
    n_present=4.0,
    facility_kwh=9.0,
    it_kwh=6.0,
    water_m3=0.5,
    fuels={GAS: 2.0, DIESEL: 0.06},
    outputs={Quantity.COUNT: 12.0},
    zone_total_kwh={"a": 8.0},
    zone_it_kwh={"a": 6.0},
)


def test_every_kind_of_key_decodes_to_its_typed_component() -> None:
    assert decode_components(EVERY_KIND) == TYPED


def test_every_kind_of_key_encodes_in_jsonb_order() -> None:
    encoded = encode_components(TYPED)
    assert encoded == EVERY_KIND
    assert list(encoded) == list(EVERY_KIND)  # lengths 6, 8, 9, 10, 12, 12, 13, 16, 21, 26


def test_round_trips_keep_every_key_and_value() -> None:
    assert encode_components(decode_components(EVERY_KIND)) == EVERY_KIND
    assert decode_components(encode_components(TYPED)) == TYPED
    assert encode_components(Components()) == {}
    assert decode_components({}) == Components()


def test_an_absent_component_is_not_zero() -> None:
    # a facility meter that did not report: no facility_kwh key, not 0 kWh
    assert decode_components({"electricity_kwh": 1.0}).facility_kwh is None
    assert encode_components(Components(facility_kwh=0.0)) == {"facility_kwh": 0.0}


def test_an_old_row_with_fewer_keys_decodes_and_encodes_unchanged() -> None:
    old = {"it_kwh": 1, "electricity_kwh": 2.5}  # an integer, as a hand-written row may hold
    assert encode_components(decode_components(old)) == {"it_kwh": 1.0, "electricity_kwh": 2.5}


@pytest.mark.parametrize("key", ["a", "fuel:natural_gas", "fuel:plutonium:mass_t", "output:furlongs"])
def test_an_unknown_key_is_refused_not_dropped(key: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        decode_components({key: 1.0})


def test_minute_components_store_as_before() -> None:
    meters = (
        Meter(id="f", site_id="s", carrier=Carrier.ELECTRICITY, role=Role.FACILITY_TOTAL),
        Meter(id="it", site_id="s", carrier=Carrier.ELECTRICITY, role=Role.IT_LOAD, zone="h"),
        Meter(id="gas", site_id="s", carrier=Carrier.NATURAL_GAS, role=Role.BOILER, unit="m3"),
    )
    # facility 9, IT 6 in zone h, 2 m3 of gas; the IT meter estimated
    flat = encode_components(minute_components(meters, {"f": 9.0, "it": 6.0, "gas": 2.0}, estimated=["it"]))
    assert flat == {
        "it_kwh": 6.0,
        "n_present": 3.0,
        "pue_it_kwh": 6.0,
        "n_expected": 3.0,
        "n_estimated": 1.0,
        "facility_kwh": 9.0,
        "zone:h:it_kwh": 6.0,
        "purchased_kwh": 9.0,
        "grid_export_kwh": 0.0,
        "electricity_kwh": 9.0,
        "pue_facility_kwh": 9.0,
        "zone:h:total_kwh": 6.0,
        "renewable_consumed_kwh": 0.0,
        "renewable_generation_kwh": 0.0,
        "fuel:natural_gas:volume_m3": 2.0,
    }


def test_add_keeps_a_component_present_in_either() -> None:
    one = Components(electricity_kwh=1.0, fuels={GAS: 2.0})
    other = Components(electricity_kwh=0.5, water_m3=3.0, fuels={GAS: 1.0, DIESEL: 0.25})
    # 1 + 0.5 = 1.5 kWh; water only in other; gas 2 + 1 = 3; diesel only in other
    assert add_components(one, other) == Components(
        electricity_kwh=1.5, water_m3=3.0, fuels={GAS: 3.0, DIESEL: 0.25}
    )


def test_sum_is_exact_and_orders_map_entries_by_flat_key() -> None:
    # 0.1 + 0.2 + 0.3 in any order: the exact sum of the three doubles rounds to 0.6
    parts = [
        Components(zone_total_kwh={"b": 0.1}, fuels={DIESEL: 1.0}),
        Components(zone_total_kwh={"b": 0.2, "a": 1.0}, fuels={GAS: 1.0}),
        Components(zone_total_kwh={"b": 0.3}),
    ]
    total = sum_components(parts)
    assert total == sum_components(reversed(parts))
    assert total == Components(zone_total_kwh={"a": 1.0, "b": 0.6}, fuels={GAS: 1.0, DIESEL: 1.0})
    # "fuel:…" sorts before "genfuel:…", "zone:a:…" before "zone:b:…"
    assert list(total.fuels) == [GAS, DIESEL]
    assert list(total.zone_total_kwh) == ["a", "b"]


def test_finite_components_zero_what_is_not_finite() -> None:
    poisoned = Components(electricity_kwh=math.inf, it_kwh=None, fuels={GAS: math.nan})
    assert finite_components(poisoned) == Components(electricity_kwh=0.0, fuels={GAS: 0.0})
    clean = Components(electricity_kwh=1.0)
    assert finite_components(clean) is clean


def test_green_coverage_is_clamped_to_purchases_not_already_renewable() -> None:
    month = Components(purchased_kwh=100.0, electricity_kwh=120.0, renewable_consumed_kwh=40.0)
    # coverable: min(100 purchased, 120 - 40 = 80 not renewable) = 80 of the 90 certificates
    assert green_coverage(month, 90.0) == Components(green_certificates_kwh=90.0, green_covered_kwh=80.0)
