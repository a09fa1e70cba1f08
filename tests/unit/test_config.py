"""Registry validation: what the YAML may say, and the clear errors for what it may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from peakwatch.config import Registry, parse_rule, rule_document
from peakwatch.domain.factors import DEFAULT_SET
from peakwatch.domain.kpis import DEFAULT_GB40879_THRESHOLDS
from peakwatch.domain.models import Carrier, Meter, Register, Role, Site, SiteKind
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import ConfigError
from peakwatch.registry_doc import ID

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
        (
            "electricity",
            "m3",
            "unit 'm3' does not fit carrier electricity; use one of kw, kwh, mw, mwh, w, wh",
        ),
        ("natural_gas", "kW", "unit 'kW' does not fit carrier natural_gas"),
        ("heat", "kWh", "use one of gj, mj"),
        ("electricity", "furlongs", "unknown meter unit 'furlongs'"),
    ],
)
def test_carrier_and_unit_that_do_not_fit_are_refused(carrier: str, unit: str, message: str) -> None:
    with pytest.raises(ConfigError, match="site s1, meter m1: ") as info:
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
        (
            "rules: [{name: r, kpi: pue, op: '>', threshold: 1.5, recover: 1.6}]",
            "rule r: recover threshold 1.6",
        ),
        ("rules: [{name: r, kpi: pue, op: '>', threshold: 1, min_completeness: 80}]", "between 0 and 1"),
        ("rules: [{name: r, kpi: pue, op: '>', threshold: 1, keep_firing_for: later}]", "invalid duration"),
        ("rules: [{name: r, silent_for: 5m, kpi: pue}]", "a staleness rule .silent_for. takes no kpi"),
        ("rules: [{name: r, silent_for: 5m, recover: 1, for: 1m}]", "takes no for, recover"),
        ("rules: [{name: r, kpi: pue, op: '>', threshold: 1, meter_roles: [it_load]}]", "meter_roles scope"),
        ("rules: [{name: r, silent_for: 0}]", "silent_for must be positive"),
        ("rules: [{name: r, silent_for: 5m, meter_roles: [toaster]}]", "unknown meter roles"),
        ("rules: [{name: r}]", "give kpi, op and threshold"),
        ("rules: [{name: r, silent_for: 5m}, {name: r, silent_for: 1m}]", "duplicate rule names"),
        ("sites: [{id: a, name: x, kind: park, labels: {class: 'new large'}}]", "label class: new large"),
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


# ------------------------------------------------------------------ meter lifecycle and factor sets (#3)


def meter_registry(meter: str, site_extra: str = "", tail: str = "") -> Registry:
    return Registry.from_text(
        f"""
sites:
  - id: s1
    name: Site
    kind: data_centre
    {site_extra}
    meters:
      - {meter}
{tail}
"""
    )


@pytest.mark.parametrize(
    ("meter", "register"),
    [
        ("{id: m1, carrier: electricity, role: it_load, unit: kW}", Register.POWER),
        ("{id: m1, carrier: electricity, role: it_load, unit: W, register: power}", Register.POWER),
        ("{id: m1, carrier: electricity, role: it_load, unit: MW}", Register.POWER),
        ("{id: m1, carrier: electricity, role: it_load, unit: kWh}", Register.CUMULATIVE),
        ("{id: m1, carrier: electricity, role: it_load, unit: kWh, register: interval}", Register.INTERVAL),
    ],
)
def test_default_register_follows_the_unit(meter: str, register: Register) -> None:
    m = meter_registry(meter).meter("s1", "m1")
    assert m is not None
    assert m.register is register


@pytest.mark.parametrize(
    ("meter", "message"),
    [
        (
            "{id: m1, carrier: electricity, role: it_load, unit: kW, register: cumulative}",
            "unit 'kW' is power, so the register must be power (samples integrated over time), "
            "not cumulative",
        ),
        (
            "{id: m1, carrier: electricity, role: it_load, unit: W, register: interval}",
            "unit 'W' is power, so the register must be power",
        ),
        (
            "{id: m1, carrier: electricity, role: it_load, unit: kWh, register: power}",
            "register power needs a power unit (W, kW, MW), not 'kWh'",
        ),
        (
            "{id: m1, carrier: electricity, role: it_load, unit: kW, register_max: 1000}",
            "register_max applies to energy registers",
        ),
        (
            "{id: m1, carrier: electricity, role: it_load, rated_kw: 0}",
            "rated_kw must be a number > 0, not 0",
        ),
        ("{id: m1, carrier: electricity, role: it_load, rated_kw: -5}", "rated_kw must be a number > 0"),
        ("{id: m1, carrier: electricity, role: it_load, rated_kw: .inf}", "rated_kw must be a number > 0"),
    ],
)
def test_bad_meter_lifecycle_config_is_refused(meter: str, message: str) -> None:
    with pytest.raises(ConfigError, match="site s1, meter m1: ") as info:
        meter_registry(meter)
    assert message in str(info.value)


def test_rated_power_and_zone_are_kept() -> None:
    m = meter_registry("{id: m1, carrier: electricity, role: it_load, rated_kw: 250, zone: hall-a}").meter(
        "s1", "m1"
    )
    assert m is not None
    assert (m.rated_kw, m.zone) == (250.0, "hall-a")


def test_site_defaults() -> None:
    reg = meter_registry("{id: m1, carrier: electricity, role: it_load}")
    site = reg.sites["s1"]
    # a site that states no PUE category has none: nothing is assumed for it
    assert (site.grid_factor, site.factor_set, site.pue_category) == (None, "default", None)
    assert reg.gb40879_thresholds == DEFAULT_GB40879_THRESHOLDS
    resolved = reg.resolve_factors(site)
    assert resolved.value("grid") == 0.4976  # Hunan 2023 through the default set
    assert resolved.used["grid"] == "grid.cn.hunan.2023@1"


FACTOR_SETS = """factor_sets:
  - name: national
    description: national grid averages
    slots:
      grid: grid.cn.national.2023
      kgce.electricity.coal_equivalent: kgce.electricity.coal_equivalent.2020
"""


def test_factor_set_chosen_by_a_site() -> None:
    reg = meter_registry(
        "{id: m1, carrier: electricity, role: it_load}",
        site_extra="factor_set: national\n    pue_category: category 2",
        tail=FACTOR_SETS,
    )
    site = reg.sites["s1"]
    assert (site.factor_set, site.pue_category) == ("national", "category 2")
    resolved = reg.resolve_factors(site)
    assert resolved.value("grid") == 0.5306
    assert resolved.value("kgce.electricity.coal_equivalent") == 0.3055
    assert resolved.value("co2.natural_gas") == 2.1622  # a slot the set does not name: the default
    assert reg.factors.sets["national"].description == "national grid averages"


def test_site_grid_factor_overrides_its_set() -> None:
    reg = meter_registry(
        "{id: m1, carrier: electricity, role: it_load}",
        site_extra="factor_set: national\n    grid_factor: grid.cn.central.2023",
        tail=FACTOR_SETS,
    )
    assert reg.resolve_factors(reg.sites["s1"]).value("grid") == 0.5271


def test_factor_override_is_a_new_version_used_by_the_sets() -> None:
    reg = meter_registry(
        "{id: m1, carrier: electricity, role: it_load}",
        site_extra="factor_set: national",
        tail=FACTOR_SETS
        + "factors:\n  - {id: grid.cn.national.2023, value: 0.6, unit: kgCO2/kWh, source: revised}\n",
    )
    assert [f.value for f in reg.factors.history("grid.cn.national.2023")] == [0.5306, 0.6]
    resolved = reg.resolve_factors(reg.sites["s1"])
    assert (resolved.value("grid"), resolved.used["grid"]) == (0.6, "grid.cn.national.2023@2")


@pytest.mark.parametrize(
    ("tail", "site_extra", "message"),
    [
        ("", "factor_set: nowhere", "site s1: unknown factor_set 'nowhere'; known: default"),
        (
            "factor_sets: [{name: x, slots: {grid.mars: grid.cn.national.2023}}]",
            "",
            "unknown slot 'grid.mars'",
        ),
        ("factor_sets: [{name: x, slots: {grid: grid.mars}}]", "", "slot 'grid': unknown factor 'grid.mars'"),
        (
            "factor_sets: [{name: x, slots: {grid: kgce.heat}}]",
            "",
            "slot 'grid': factor 'kgce.heat' is in kgce/GJ, the slot needs kgCO2/kWh",
        ),
        (
            "factor_sets: [{name: x, slots: {co2.natural_gas: co2.diesel}}]",
            "",
            "factor 'co2.diesel' is in kgCO2/t, the slot needs kgCO2/m3",
        ),
        ("factor_sets: [{name: x}, {name: x}]", "", "factor set 'x': defined twice"),
        ("factor_sets: [{name: default}]", "", "the default set is built in"),
        ("factor_sets: [{name: 'a b'}]", "", "factor set 'a b': the name must match"),
        ("factor_sets: [{name: x, colour: red}]", "", "colour"),
        ("", "grid_factor: co2.coal", "grid_factor 'co2.coal' is in kgCO2/t, not kgCO2/kWh"),
        ("", "pue_category: ''", "pue_category must not be empty"),
    ],
)
def test_bad_factor_sets_are_refused(tail: str, site_extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        meter_registry("{id: m1, carrier: electricity, role: it_load}", site_extra=site_extra, tail=tail)
    assert message in str(info.value)


def test_gb40879_thresholds() -> None:
    reg = meter_registry(
        "{id: m1, carrier: electricity, role: it_load}", tail="gb40879_thresholds: [1.25, 1.4, 1.6]"
    )
    assert reg.gb40879_thresholds == (1.25, 1.4, 1.6)


@pytest.mark.parametrize(
    "value", ["[1.2, 1.3]", "[1.2, 1.5, 1.3]", "[0, 1.3, 1.5]", "[1.2, 1.2, 1.5]", "[1, 2, .inf]"]
)
def test_bad_gb40879_thresholds_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="gb40879_thresholds must be three increasing numbers > 0"):
        meter_registry("{id: m1, carrier: electricity, role: it_load}", tail=f"gb40879_thresholds: {value}")


def test_registry_constructor_stays_compatible() -> None:
    site = Site(id="s", name="S", kind=SiteKind.PARK)
    m = Meter(id="m", site_id="s", carrier=Carrier.ELECTRICITY, role=Role.GRID_IMPORT)
    reg = Registry([site], [m])
    assert reg.gb40879_thresholds == DEFAULT_GB40879_THRESHOLDS
    assert reg.resolve_factors(site).used["grid"] == "grid.cn.hunan.2023@1"
    assert DEFAULT_SET.name in reg.factors.sets
    custom = Registry([site], [m], (), None, gb40879_thresholds=(1.1, 1.2, 1.3))
    assert custom.gb40879_thresholds == (1.1, 1.2, 1.3)


def test_rule_recovery_and_gates_from_yaml() -> None:
    rule = Registry.from_text(
        "rules: [{name: r, kpi: pue, op: '>', threshold: 1.5, recover: 1.45, keep_firing_for: 10m, "
        "min_completeness: 0.9, min_it_kw: 50}]"
    ).rules[0]
    assert (rule.recover_threshold, rule.keep_firing_for_ms, rule.min_completeness, rule.min_it_kw) == (
        1.45,
        600_000,
        0.9,
        50.0,
    )


def test_every_demo_rule_survives_its_document_form() -> None:
    """The API stores rules in their registry form: writing one out and reading it back gives it again."""
    registry = Registry.bundled_demo()
    for rule in (*registry.rules, *registry.staleness_rules):
        assert parse_rule(rule_document(rule), "test") == rule
    full = parse_rule(
        {
            "name": "r",
            "kpi": "pue",
            "op": ">",
            "threshold": 1.5,
            "for": "90s",
            "recover": 1.4,
            "keep_firing_for": "2m",
            "min_completeness": 0.5,
            "min_it_kw": 10,
            "change_over": "15m",
            "labels": {"team": "a"},
            "site_ids": ["dc"],
        },
        "test",
    )
    assert parse_rule(rule_document(full), "test") == full
    assert full.for_ms == 90_000  # type: ignore[union-attr]
    for silent in ("14d", "1234567ms", "1.5s", "400d"):
        rule = parse_rule({"name": "s", "silent_for": silent}, "test")
        assert parse_rule(rule_document(rule), "test") == rule


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"bad key!": "x"}, "label name 'bad key!'"),
        ({"team": "a\nb"}, "on one line"),
        ({"team": "x" * 201}, "at most 200 characters"),
        ({f"l{i}": "x" for i in range(21)}, "at most 20 labels"),
    ],
)
def test_rule_labels_are_names_and_short_one_line_values(labels: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_rule({"name": "r", "silent_for": "5m", "labels": labels}, "test")


@pytest.mark.parametrize(
    ("channel", "reason"),
    [
        (
            '{type: webhook, url: "htps://oncall.example"}',
            "channel 0: webhook url must be http:// or https://",
        ),
        ("{type: email, to: [], sender: a@b.c, host: smtp}", "channel 0: e-mail channel without recipients"),
        ('{type: wecom, key: "k\\n"}', "channel 0: key contains a control character"),
    ],
)
def test_a_channel_that_cannot_deliver_stops_the_load(channel: str, reason: str) -> None:
    receivers = f"  receivers: [{{name: r, channels: [{channel}]}}]\n"
    text = f"sites: []\nnotifications:\n{receivers}  route: {{receiver: r}}\n"
    with pytest.raises(ConfigError, match=reason):
        Registry.from_text(text)


def test_a_misspelt_channel_option_is_an_error_and_every_channel_is_checked() -> None:
    # `sceret` would leave a signed DingTalk robot unsigned (it refuses every message): a typo is an error
    text = (
        "sites: []\nnotifications:\n  receivers: [{name: r, channels: ["
        "{type: dingtalk, access_token: t, sceret: s}, {type: wecom, key: k, mentioned: 5}, "
        "{type: webhok}]}]\n"
        "  route: {receiver: r}\n"
    )
    with pytest.raises(ConfigError) as caught:
        Registry.from_text(text)
    problems = caught.value.problems
    assert problems[0].startswith(
        "notifications: receiver 'r' channel 0: unknown field 'sceret'; known: access_token"
    )
    assert problems[1].startswith(
        "notifications: receiver 'r' channel 1: unknown field 'mentioned'; known: key"
    )
    assert problems[2].startswith(
        "notifications: receiver 'r' channel 2: unknown type 'webhok'; one of: webhook"
    )
    assert len(problems) == 3  # the receiver exists: the route naming it is not reported as wrong too


# ------------------------------------------------------------------ every error at once, by name (#14)

SEVERAL_MISTAKES = """\
sites:
  - id: dc-1
    name: DC
    kind: data_centre
    timezone: Asia/Shanghi
    meters:
      - {id: it-1, carrier: electricity, role: itt}
      - {id: fac, carrier: electricity, role: facility_total, colour: red}
      - {id: chiller, carrier: electricity, role: cooling, unit: m3, rated_kw: 0}
  - {id: 'bad id', name: P, kind: park}
  - {id: park, name: P, kind: factory, timezone: Mars/Olympus,
     meters: [{id: m, carrier: electricty, role: grid_import, rated_kw: -1}]}
rules:
  - {name: r1, kpi: pue, op: "=>", threshold: 1.5}
  - {name: r2, kpi: happiness, op: ">", threshold: 1}
factors:
  - {id: co2.coal, value: -1, unit: kgCO2/t, source: x}
notifications:
  receivers: [{name: oncall, channels: [{type: webhook, url: "htps://x"}]}]
  route: {receiver: oncall}
"""


def test_every_mistake_of_a_file_is_reported_at_once_by_site_and_meter(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(SEVERAL_MISTAKES, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Registry.from_yaml(path)
    roles = ", ".join(role.value for role in Role)
    assert info.value.problems == (
        "site dc-1: unknown time zone 'Asia/Shanghi'",
        f"site dc-1, meter it-1: role 'itt' is not one of: {roles}",
        "site dc-1, meter fac: unknown field 'colour'; known: id, carrier, role, register, unit, "
        "register_max, rated_kw, zone",
        "site dc-1, meter chiller: unit 'm3' does not fit carrier electricity; "
        "use one of kw, kwh, mw, mwh, w, wh",
        "site dc-1, meter chiller: rated_kw must be a number > 0, not 0.0",
        f"site #2: site id 'bad id' must match {ID.pattern}",
        "site park: kind 'factory' is not one of: data_centre, park",
        "site park: unknown time zone 'Mars/Olympus'",  # checked although kind was wrong
        "site park, meter m: carrier 'electricty' is not one of: electricity, natural_gas, steam, heat, "
        "diesel, coal, water, product",
        "site park, meter m: rated_kw must be a number > 0, not -1.0",
        "rule r1: op '=>' is not one of: >, >=, <, <=",
        "rule r2: unknown kpi 'happiness'; known: carbon_intensity_kg_per_kwh, completeness, "
        "electricity_kwh, electrification_rate, emissions_kg, green_power_share, pue",
        "factor co2.coal: value must be a finite number >= 0",
        "notifications: receiver 'oncall' channel 0: webhook url must be http:// or https:// (not htps://)",
    )
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 14 errors:"
    assert lines[1:] == [f"  {problem}" for problem in info.value.problems]  # one per line


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "sites: [bold] oops: 1\n",
            "line 1, column 15: invalid YAML: expected <block end>, but found '<scalar>' "
            "(while parsing a block mapping at line 1, column 1): 'sites: [bold] oops: 1'",
        ),
        ("sites: 5\n", "sites must be a list (- one entry per line), not int 5"),
        ("- a\n", "a registry is a mapping (sites:, rules:, ...), not a list"),
        ("sitez: []\n", "unknown field 'sitez'; known: sites, rules, factors, factor_sets, "
         "gb40879_thresholds, notifications"),
        ("sites: [{id: a, name: x, kind: park, labels: {tier: 5}}]", "site a: labels: expected str, got int"),
        ("sites: [{name: x, kind: park}]", "site #1: id is missing"),
    ],
)  # fmt: skip
def test_syntax_schema_and_meaning_errors_share_one_format(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        Registry.from_text(text, source="sites.yaml")
    assert str(info.value) == f"sites.yaml: 1 error:\n  {problem}"


def test_every_notification_problem_at_once() -> None:
    text = """notifications:
  receivers: [{name: a}, {name: b, language: fr}]
  maintenance: [{name: m, start: "25:00"}]
  route: {receiver: a, matchers: ["severity=~("]}
"""
    with pytest.raises(ConfigError) as info:
        Registry.from_text(text, source="n.yaml")
    problems = info.value.problems
    assert problems[:2] == (
        "notifications: receiver 'b': language 'fr' is not one of: zh-CN, en",
        "notifications: maintenance 'm': start: '25:00' is not a time of day (HH:MM, 00:00 to 24:00)",
    )
    assert problems[2].startswith("notifications: route: invalid matcher 'severity=~('")
    assert len(problems) == 3
