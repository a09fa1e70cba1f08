"""Registry validation: what the YAML may say, and the clear errors for what it may not."""

from __future__ import annotations

import pytest

from peakwatch.config import Registry, parse_duration_ms
from peakwatch.errors import ConfigError

SITE = """
sites:
  - id: s1
    name: Site
    kind: park
    {site_extra}
    meters:
      - {{id: m1, carrier: {carrier}, role: {role}, unit: {unit}}}
{tail}
"""


def registry(
    carrier: str = "electricity",
    role: str = "grid_import",
    unit: str = "kWh",
    site_extra: str = "",
    tail: str = "",
) -> Registry:
    return Registry.from_text(
        SITE.format(carrier=carrier, role=role, unit=unit, site_extra=site_extra, tail=tail)
    )


@pytest.mark.parametrize(
    ("carrier", "unit"),
    [
        ("electricity", "kWh"),
        ("electricity", "MWh"),
        ("natural_gas", "m3"),
        ("heat", "GJ"),
        ("heat", "MJ"),
        ("steam", "t"),
        ("steam", "GJ"),
        ("diesel", "kg"),
        ("coal", "t"),
        ("water", "m3"),
        ("product", "count"),
    ],
)
def test_carrier_and_unit_that_fit(carrier: str, unit: str) -> None:
    assert registry(carrier=carrier, role="other_load", unit=unit).meter("s1", "m1") is not None


@pytest.mark.parametrize(
    ("carrier", "unit", "message"),
    [
        ("natural_gas", "kWh", "unit 'kWh' does not fit carrier natural_gas; use one of l, m3"),
        ("electricity", "m3", "unit 'm3' does not fit carrier electricity; use one of kwh, mwh, wh"),
        ("heat", "kWh", "use one of gj, mj"),
        ("electricity", "furlongs", "unknown meter unit 'furlongs'"),
    ],
)
def test_carrier_and_unit_that_do_not_fit_are_refused(carrier: str, unit: str, message: str) -> None:
    with pytest.raises(ConfigError, match="s1/m1") as info:
        registry(carrier=carrier, role="other_load", unit=unit)
    assert message in str(info.value)


def test_grid_factor_must_be_a_grid_factor() -> None:
    with pytest.raises(ConfigError, match=r"grid_factor 'kgce\.heat' is in kgce/GJ, not kgCO2/kWh"):
        registry(site_extra="grid_factor: kgce.heat")


def test_unknown_grid_factor() -> None:
    with pytest.raises(ConfigError, match=r"unknown grid_factor 'grid\.mars'"):
        registry(site_extra="grid_factor: grid.mars")


def test_factor_override_replaces_value_and_keeps_source() -> None:
    tail = """factors:
  - {id: grid.cn.hunan.2023, value: 0.5, unit: kgCO2/kWh, source: "utility's 2023 report", data_year: 2023}
"""
    factor = registry(tail=tail).factors.get("grid.cn.hunan.2023")
    assert (factor.value, factor.source, factor.status) == (0.5, "utility's 2023 report", "unverified")


@pytest.mark.parametrize(
    ("factor", "message"),
    [
        (
            "{id: co2.natural_gas, value: 2.16, unit: kgCO2/kg, source: x}",
            "differs from the shipped 'kgCO2/m3'",
        ),
        ("{id: co2.coal, value: -1, unit: kgCO2/t, source: x}", "finite number >= 0"),
        ("{id: my.factor, value: 1, unit: x, source: x, status: official}", "factor my.factor"),
    ],
)
def test_bad_factor_overrides_are_refused(factor: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry(tail=f"factors:\n  - {factor}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: [{id: 'bad id', name: x, kind: park}]", "site id 'bad id'"),
        ("sites: [{id: a, name: x, kind: factory}]", "site a"),
        ("sites: [{id: a, name: x, kind: park, timezone: Mars/Olympus}]", "unknown time zone"),
        ("sites: [{id: a, name: x, kind: park, colour: red}]", "colour"),
        ("rules: [{name: r, kpi: happiness, op: '>', threshold: 1}]", "unknown kpi 'happiness'"),
        ("rules: [{name: r, kpi: pue, op: '>', threshold: 1, for: soon}]", "invalid duration 'soon'"),
        ("sites: [", "invalid YAML"),
    ],
)
def test_invalid_registries_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Registry.from_text(text)


@pytest.mark.parametrize(
    ("value", "ms"), [("5m", 300_000), ("30s", 30_000), ("250ms", 250), ("1.5h", 5_400_000), (90, 90_000)]
)
def test_parse_duration(value: str | int, ms: int) -> None:
    assert parse_duration_ms(value) == ms


def test_bundled_demo_registry_loads() -> None:
    demo = Registry.bundled_demo()
    assert set(demo.sites) == {"park-changsha", "dc-xiangjiang"}
    assert len(demo.site_meters("dc-xiangjiang")) == 5
