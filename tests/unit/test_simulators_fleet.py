"""Fleet ids, the generated registry YAML, and synthetic sites."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest

from peakwatch.config import Registry
from peakwatch.domain.models import MeterFlag, Reading, ReadingBatch
from peakwatch.domain.units import PAYLOAD_FIELDS
from processor.meters import MeterTracker, StepOutput
from simulators.fleet import FleetSpec, build_fleet, registry_yaml, site_infos, template_position
from simulators.options import SimulationOptions

T0 = 1_713_000_000_000


@pytest.mark.parametrize(
    ("sites", "expected"),
    [
        (1, ["park-changsha"]),
        (2, ["park-changsha", "dc-xiangjiang"]),
        (5, ["park-changsha", "dc-xiangjiang", "park-2", "dc-2", "park-3"]),
    ],
)
def test_template_site_ids(sites: int, expected: list[str]) -> None:
    assert [i.id for i in site_infos(FleetSpec(sites=sites))] == expected


@pytest.mark.parametrize(
    ("site_id", "position"),
    [
        ("park-changsha", 0),
        ("dc-xiangjiang", 1),
        ("park-2", 2),
        ("dc-2", 3),
        ("park-11", 20),
        ("dc-11", 21),
        ("park-1", None),
        ("dc-0", None),
        ("park-02", None),
        ("load-site-0001", None),
        ("other", None),
    ],
)
def test_template_position(site_id: str, position: int | None) -> None:
    assert template_position(site_id) == position
    if position is not None:
        assert site_infos(FleetSpec(sites=position + 1))[position].id == site_id


def test_two_site_registry_equals_the_bundled_demo_registry() -> None:
    generated = Registry.from_text(registry_yaml(build_fleet(FleetSpec(sites=2))))
    demo = Registry.bundled_demo()
    assert generated.sites == demo.sites
    assert generated.meters == demo.meters
    assert generated.rules == demo.rules


def test_large_template_fleet_registry_parses_and_lists_every_meter() -> None:
    fleet = build_fleet(FleetSpec(sites=7, seed=3))
    registry = Registry.from_text(registry_yaml(fleet))
    assert list(registry.sites) == [m.info.id for m in fleet]
    for model in fleet:
        assert [m.id for m in registry.site_meters(model.info.id)] == [m.id for m in model.meters]


def test_synthetic_fleet() -> None:
    fleet = build_fleet(FleetSpec(sites=3, synthetic_meters=4))
    assert [m.info.id for m in fleet] == ["load-site-0001", "load-site-0002", "load-site-0003"]
    registry = Registry.from_text(registry_yaml(fleet, include_demo_rules=False))
    assert registry.rules == ()
    assert [m.id for m in registry.site_meters("load-site-0002")] == [
        "load-0001",
        "load-0002",
        "load-0003",
        "load-0004",
    ]
    first, second = fleet[0].step(T0), fleet[0].step(T0 + 60_000)
    for a, b in zip(first, second, strict=True):
        # one minute at 5-50 kW (+-2 % noise) adds 0.08-0.9 kWh
        assert 0.08 < b.fields["energy_kwh"] - a.fields["energy_kwh"] < 0.9
        assert b.fields["energy_kwh"] - a.fields["energy_kwh"] == pytest.approx(b.fields["power_kw"] / 60)


def test_every_sample_matches_the_registry_and_the_payload_contract() -> None:
    fleet = build_fleet(FleetSpec(sites=4))
    registry = Registry.from_text(registry_yaml(fleet))
    for model in fleet:
        for sample in model.step(T0):
            meter = registry.meter(sample.site_id, sample.meter_id)
            assert meter is not None
            assert set(sample.fields) <= set(PAYLOAD_FIELDS)
            register = "volume_m3" if meter.unit == "m3" else "energy_kwh"
            assert register in sample.fields


def test_a_site_behaves_the_same_whatever_the_fleet_size() -> None:
    small = build_fleet(FleetSpec(sites=3, seed=9))[2]
    large = build_fleet(FleetSpec(sites=10, seed=9))[2]
    assert small.info.id == large.info.id == "park-2"
    for k in range(5):
        assert msgspec.to_builtins(small.step(T0 + k * 10_000)) == msgspec.to_builtins(
            large.step(T0 + k * 10_000)
        )


@pytest.mark.parametrize(
    ("registry_sites", "sites", "site_ids"),
    [
        (None, 2, None),
        (["park-changsha", "dc-xiangjiang"], 2, ("park-changsha", "dc-xiangjiang")),
        (["dc-xiangjiang"], 2, ("dc-xiangjiang",)),
        (["my-factory"], 2, ()),
        (["park-changsha", "dc-3", "mine"], 6, ("park-changsha", "dc-3")),
    ],
)
def test_demo_options_feed_only_registry_sites(
    registry_sites: list[str] | None, sites: int, site_ids: tuple[str, ...] | None
) -> None:
    options = SimulationOptions.demo(registry_sites)
    assert (options.sites, options.site_ids) == (sites, site_ids)
    assert options.backfill_ms == 600_000
    assert SimulationOptions.demo(registry_sites, seed=4).seed == 4


@pytest.mark.parametrize("day", ["2025-01-15", "2025-07-20"], ids=["winter", "summer"])
def test_demo_readings_are_never_glitches_against_the_demo_rated_power(day: str) -> None:
    """The demo registry's rated_kw sits above every rate the simulators produce (peakwatch/demo/sites.yaml
    lists the yearly peaks): a whole winter or summer day of 10-s readings of both demo sites, through the
    processor's meter rules, gives no glitch event."""
    registry = Registry.bundled_demo()
    assert all(m.rated_kw is not None for m in registry.meters.values())
    tracker = MeterTracker(registry, 60_000)
    start = int(datetime.fromisoformat(f"{day}T00:00:00+08:00").timestamp() * 1000)
    out = StepOutput()
    for model in build_fleet(FleetSpec(sites=2)):
        readings = [
            Reading(site_id=s.site_id, meter_id=s.meter_id, ts_ms=s.ts_ms, **s.fields)  # type: ignore[arg-type]
            for ts in range(start, start + 86_400_000 + 1, 10_000)
            for s in model.step(ts)
        ]
        tracker.apply_batch(ReadingBatch(model.info.id, readings), out)
    kinds = {e.kind for e in out.events()}
    assert kinds == {MeterFlag.FIRST}
