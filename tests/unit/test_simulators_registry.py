"""The user's registry simulated (``simulators.registry_sites``): roles, units, register kinds and
rated power, without a broker. The broker path is tests/integration/test_simulate_registry.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.simulate import simulate
from peakwatch.config import Registry
from simulators.faults import FaultConfig, ReadingFaults
from simulators.registry_sites import payload_field, registry_fleet

T0 = 1_718_000_000_000  # 2024-06-10 06:13 UTC: a June day, so PV, cooling and the evening peak all occur
STEP_MS = 300_000
DAY_STEPS = 86_400_000 // STEP_MS

REGISTRY = Registry.from_mapping(
    {
        "sites": [
            {
                "id": "kiln-works",
                "name": "Kiln works",
                "kind": "park",
                "meters": [
                    {"id": "supply", "carrier": "electricity", "role": "grid_import", "unit": "MWh",
                     "rated_kw": 900},
                    {"id": "solar", "carrier": "electricity", "role": "pv_generation", "unit": "W",
                     "rated_kw": 400},
                    {"id": "kiln-1", "carrier": "electricity", "role": "process_load", "unit": "kWh",
                     "register": "interval", "rated_kw": 350},
                    {"id": "kiln-2", "carrier": "electricity", "role": "process_load", "unit": "kWh"},
                    {"id": "gas", "carrier": "natural_gas", "role": "boiler", "unit": "m3", "rated_kw": 20},
                    {"id": "oil-boiler", "carrier": "diesel", "role": "boiler", "unit": "t"},
                    {"id": "genset", "carrier": "electricity", "role": "generator_output", "unit": "kWh"},
                ],
            },
            {
                "id": "vault",
                "name": "Vault data centre",
                "kind": "data_centre",
                "meters": [
                    {"id": "incomer", "carrier": "electricity", "role": "facility_total", "unit": "kWh"},
                    {"id": "it", "carrier": "electricity", "role": "it_load", "unit": "kWh"},
                ],
            },
        ]
    }
)  # fmt: skip


def _day(registry: Registry) -> dict[tuple[str, str], list[dict[str, float]]]:
    models, _ = registry_fleet(registry, seed=7)
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    for k in range(DAY_STEPS + 1):
        for model in models:
            for sample in model.step(T0 + k * STEP_MS):
                out.setdefault((sample.site_id, sample.meter_id), []).append(sample.fields)
    return out


def test_every_meter_with_a_model_is_simulated_and_the_others_are_named_with_the_reason() -> None:
    models, left_out = registry_fleet(REGISTRY, seed=0)
    assert {(m.info.id, s.id) for m in models for s in m.meters} == {
        ("kiln-works", "supply"),
        ("kiln-works", "solar"),
        ("kiln-works", "kiln-1"),
        ("kiln-works", "kiln-2"),
        ("kiln-works", "gas"),
        ("vault", "incomer"),
        ("vault", "it"),
    }
    assert {(u.meter_id, u.reason) for u in left_out} == {
        ("oil-boiler", "role boiler is modelled as natural_gas, not diesel"),
        ("genset", "no model for role generator_output"),
    }


def test_no_reading_implies_more_than_the_meters_rated_power_over_a_whole_day() -> None:
    day = _day(REGISTRY)
    hours = STEP_MS / 3_600_000
    # canonical rate per step: MWh register deltas x 1000, W samples / 1000, interval kWh / step
    registers = [f["energy_mwh"] for f in day[("kiln-works", "supply")]]
    supply = [b - a for a, b in itertools.pairwise(registers)]
    assert max(supply) * 1000 / hours <= 900 + 1e-6
    assert min(supply) >= 0
    solar_kw = [f["power_w"] / 1000 for f in day[("kiln-works", "solar")]]
    assert max(solar_kw) <= 400 + 1e-9
    assert max(solar_kw) > 40  # the sun rose: the meter is not flat at zero
    assert min(solar_kw) == 0  # and set
    kiln = [f["energy_kwh"] / hours for f in day[("kiln-works", "kiln-1")][1:]]
    assert 0 < max(kiln) <= 350 + 1e-6
    gas = day[("kiln-works", "gas")]
    assert (gas[-1]["volume_m3"] - gas[0]["volume_m3"]) / 24 <= 20
    assert "power_kw" not in gas[0]  # a gas meter reports volume only


def test_meters_sharing_a_role_split_it_and_ratios_keep_the_templates_physics() -> None:
    day = _day(REGISTRY)
    kiln_1 = sum(f["energy_kwh"] for f in day[("kiln-works", "kiln-1")])
    kiln_2 = day[("kiln-works", "kiln-2")][-1]["energy_kwh"] - day[("kiln-works", "kiln-2")][0]["energy_kwh"]
    assert kiln_1 == pytest.approx(kiln_2, rel=1e-6)  # equal shares of the process load
    incomer = day[("vault", "incomer")][-1]["energy_kwh"] - day[("vault", "incomer")][0]["energy_kwh"]
    it = day[("vault", "it")][-1]["energy_kwh"] - day[("vault", "it")][0]["energy_kwh"]
    assert 1.1 < incomer / it < 1.7  # the data-centre template's PUE (1.25 in winter .. 1.5 in summer)


@pytest.mark.parametrize(
    ("unit", "field", "scale"),
    [
        ("kWh", "energy_kwh", 1.0),
        ("MWh", "energy_mwh", 1000.0),
        ("Wh", "energy_wh", 0.001),
        ("W", "power_w", 0.001),
        ("kW", "power_kw", 1.0),
        ("l", "volume_l", 0.001),
        ("m3", "volume_m3", 1.0),
        ("MJ", "heat_mj", 0.001),
        ("kg", "mass_kg", 0.001),
        ("count", "count", 1.0),
    ],
)
def test_a_meter_reports_in_the_field_of_its_declared_unit(unit: str, field: str, scale: float) -> None:
    assert payload_field(unit) == (field, scale)


def test_a_counter_reset_restarts_cumulative_registers_and_leaves_interval_amounts_alone() -> None:
    models, _ = registry_fleet(REGISTRY.only(["kiln-works"]), seed=0)
    faults = ReadingFaults(FaultConfig(reset_at_ms=T0 + STEP_MS), seed=0)
    faults.apply(models[0].step(T0))
    after = {s.meter_id: s.fields for s in faults.apply(models[0].step(T0 + STEP_MS))}
    assert after["supply"]["energy_mwh"] == 0.0
    assert after["kiln-2"]["energy_kwh"] == 0.0
    assert after["kiln-1"]["energy_kwh"] > 0.0  # an interval amount is no register: nothing to reset
    assert after["solar"]["power_w"] >= 0.0


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(simulate)
    return app


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  - id: kiln-works\n    name: Kiln works\n    kind: park\n    meters:\n"
        "      - {id: supply, carrier: electricity, role: grid_import, unit: MWh}\n"
        "      - {id: genset, carrier: electricity, role: generator_output}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sites", "3"], "--sites and --synthetic-meters shape the template fleet"),
        (["--print-registry"], "the registry of --config is yours already"),
        (["--site", "nowhere"], "--site nowhere: not a simulated site; the fleet has kiln-works"),
        (["--reset-meter", "kiln-works/nope"], "--reset-meter kiln-works/nope: no such simulated meter"),
    ],
)
def test_options_that_do_not_fit_the_registry_are_clear_errors(
    app: typer.Typer, config: Path, args: list[str], message: str
) -> None:
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    result = CliRunner().invoke(
        app, ["--config", str(config), "--mqtt-url", "mqtt://127.0.0.1:1", *args], env=env
    )
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
