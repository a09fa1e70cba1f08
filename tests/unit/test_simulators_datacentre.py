"""The data-centre model: facility = sum of sub-meters, PUE that follows the weather."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from peakwatch.domain.models import SiteKind
from simulators.datacentre import (
    DataCentreParams,
    DataCentreSimulator,
    DataCentreStep,
    chiller_kw_per_kw,
    cooling_kw,
    it_utilisation,
    lighting_kw,
    mechanical_share,
    ups_losses_kw,
)
from simulators.meters import MeterSample, SiteInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
DC = SiteInfo("dc-xiangjiang", "dc", SiteKind.DATA_CENTRE)
P = DataCentreParams()
Run = list[tuple[DataCentreStep, list[MeterSample]]]


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(
    ("outdoor_c", "expected"), [(-5.0, 0.0), (10.0, 0.0), (13.0, 0.5), (16.0, 1.0), (35.0, 1.0)]
)
def test_free_cooling_below_10_c(outdoor_c: float, expected: float) -> None:
    assert mechanical_share(outdoor_c, P) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("outdoor_c", "expected_kw_per_kw"),
    [
        (20.0, (28 - 14) / (0.38 * 287.15)),  # 0.128
        (35.0, (43 - 14) / (0.38 * 287.15)),  # 0.266
        (0.0, 1 / 12.0),  # COP capped at 12
    ],
)
def test_chiller_efficiency_falls_with_condenser_temperature(
    outdoor_c: float, expected_kw_per_kw: float
) -> None:
    assert chiller_kw_per_kw(outdoor_c, P) == pytest.approx(expected_kw_per_kw)


def test_cooling_power() -> None:
    assert cooling_kw(1000.0, 5.0, P) == pytest.approx(30.0 + 1000.0 * 0.13)
    assert cooling_kw(1000.0, 35.0, P) == pytest.approx(30.0 + 1000.0 * (0.13 + 29 / (0.38 * 287.15)))


@pytest.mark.parametrize(
    ("load", "low", "high"), [(0.3, 0.06, 0.07), (0.5, 0.05, 0.06), (0.8, 0.045, 0.05), (1.0, 0.045, 0.05)]
)
def test_ups_losses_are_3_to_7_percent_of_it(load: float, low: float, high: float) -> None:
    it_kw = load * P.it_capacity_kw
    assert low <= ups_losses_kw(it_kw, P) / it_kw <= high


def test_it_utilisation_peaks_in_the_evening_and_is_clamped() -> None:
    assert it_utilisation(21.0, 0.0, P) == pytest.approx(0.68 + 0.07)
    assert it_utilisation(9.0, 0.0, P) == pytest.approx(0.68 - 0.07)
    assert it_utilisation(21.0, 5.0, P) == 1.0
    assert it_utilisation(21.0, -5.0, P) == 0.2
    assert lighting_kw(12.0, P) > lighting_kw(2.0, P)


def run_dc(start_ms: int, steps: int, step_ms: int) -> Run:
    dc = DataCentreSimulator(DC, seed=0)
    out = []
    for k in range(steps):
        samples = dc.step(start_ms + k * step_ms)
        assert dc.last is not None
        out.append((dc.last, samples))
    return out


@pytest.fixture(scope="module")
def spring_day() -> Run:
    return run_dc(local_ms(2024, 4, 20), 24 * 60, 60_000)


def test_facility_is_the_sum_of_sub_meters(spring_day: Run) -> None:
    previous: dict[str, float] | None = None
    for s, samples in spring_day:
        assert s.facility_kw == pytest.approx(
            s.it_kw + s.cooling_kw + s.ups_losses_kw + s.lighting_kw, abs=1e-9
        )
        power = {x.meter_id: x.fields["power_kw"] for x in samples}
        assert power["facility"] == pytest.approx(
            sum(v for k, v in power.items() if k != "facility"), abs=1e-6
        )
        energy = {x.meter_id: x.fields["energy_kwh"] for x in samples}
        if previous is not None:
            d = {k: energy[k] - previous[k] for k in energy}
            assert min(d.values()) > 0
            assert d["facility"] == pytest.approx(
                d["it"] + d["cooling"] + d["ups-losses"] + d["lighting"], abs=1e-6
            )
        previous = energy


def test_pue_over_a_spring_day_is_plausible(spring_day: Run) -> None:
    daily = sum(s.facility_kw for s, _ in spring_day) / sum(s.it_kw for s, _ in spring_day)
    assert 1.25 <= daily <= 1.5
    assert all(1.15 <= s.pue <= 1.65 for s, _ in spring_day)


def test_pue_follows_the_season() -> None:
    def daily_pue(year: int, month: int, day: int) -> float:
        run = run_dc(local_ms(year, month, day), 24 * 12, 300_000)
        return sum(s.facility_kw for s, _ in run) / sum(s.it_kw for s, _ in run)

    winter, summer = daily_pue(2024, 1, 10), daily_pue(2024, 7, 25)
    assert 1.2 <= winter <= 1.3
    assert 1.4 <= summer <= 1.55
