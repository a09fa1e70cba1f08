"""RuleEngine: rules over closed KPI windows -> alert changes (processor/alerts.py)."""

from __future__ import annotations

import msgspec
import pytest

from peakwatch.config import Registry
from peakwatch.domain.models import KpiWindow
from peakwatch.domain.rules import ThresholdRule
from peakwatch.errors import ConfigError
from peakwatch.store.records import AlertRecord
from processor.alerts import RuleEngine, render_summary, template_is_safe
from tests.unit.fakes import make_registry

MIN = 60_000
W0 = 1_699_999_980_000


def window(i: int, pue: float | None, site_id: str = "dc") -> KpiWindow:
    """The i-th 1-minute window from W0 with the given PUE (other fields are irrelevant here)."""
    return KpiWindow(
        site_id=site_id,
        start_ms=W0 + i * MIN,
        end_ms=W0 + (i + 1) * MIN,
        electricity_kwh=1.0,
        facility_kwh=None,
        it_kwh=None,
        renewable_generation_kwh=0.0,
        renewable_consumed_kwh=0.0,
        grid_import_kwh=0.0,
        grid_export_kwh=0.0,
        electricity_kgce=0.0,
        total_kgce=0.0,
        emissions_kg=0.0,
        electricity_emissions_kg=0.0,
        pue=pue,
        electrification_rate=None,
        carbon_intensity_kg_per_kwh=None,
        green_power_share=None,
        completeness=1.0,
    )


def run(engine: RuleEngine, pues: list[float | None], first: int = 0) -> list[tuple[int, str]]:
    """(window index, new state) of every change."""
    changes = []
    for i, pue in enumerate(pues, start=first):
        changes += [(i, c.state) for c in engine.evaluate(window(i, pue))]
    return changes


def test_pue_rule_fires_after_five_minutes_and_resolves() -> None:
    engine = RuleEngine(make_registry())
    changes = []
    for i, pue in enumerate([1.6, 1.7, 1.8, 1.6, 1.9, 1.7, 1.2, 1.2]):
        changes += engine.evaluate(window(i, pue))
    assert [(c.state, c.at_ms) for c in changes] == [
        ("pending", W0 + MIN),
        ("firing", W0 + 5 * MIN),
        ("resolved", W0 + 7 * MIN),
    ]
    pending, firing, resolved = changes
    assert {c.fingerprint for c in changes} == {"pue_retrofit_line@dc"}
    assert {c.started_ms for c in changes} == {W0}
    assert firing.severity == "critical"
    assert firing.summary == "PUE 1.90 above the 1.5 retrofit line at dc"
    assert resolved.value == 1.2
    assert pending.rule == "pue_retrofit_line"


def test_only_changes_are_emitted() -> None:
    engine = RuleEngine(make_registry())
    # pending at 0, inactive at 2 (never fired), nothing for the good and None windows in between
    assert run(engine, [1.6, None, 1.4, 1.3, None, 1.2]) == [(0, "pending"), (2, "inactive")]


def test_rule_applies_to_data_centres_only() -> None:
    engine = RuleEngine(make_registry())
    assert engine.evaluate(window(0, 2.0, site_id="park")) == []


def test_window_evaluated_twice_moves_state_once() -> None:
    engine = RuleEngine(make_registry())
    run(engine, [1.6, 1.6, 1.6, 1.6])
    assert run(engine, [1.6], first=3) == []  # window 3 again (e.g. closed again after a restart)
    assert run(engine, [1.6], first=4) == [(4, "firing")]


def test_restore_open_alert() -> None:
    engine = RuleEngine(make_registry())
    engine.restore(
        [
            AlertRecord(
                id=1,
                fingerprint="pue_retrofit_line@dc",
                rule="pue_retrofit_line",
                site_id="dc",
                state="pending",
                severity="critical",
                summary="",
                value=1.6,
                started_ms=W0,
                fired_ms=None,
                resolved_ms=None,
                updated_ms=W0 + 3 * MIN,
            )
        ]
    )
    # the breach started at W0: window 4 makes it 5 minutes
    assert run(engine, [1.6], first=4) == [(4, "firing")]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("PUE {value:.2f} at {site_name}", "PUE 1.60 at Test DC", id="ok"),
        pytest.param(
            "{threshold} {op} {kpi} {rule} {state} {severity}", "1.5 > pue r firing critical", id="all"
        ),
        pytest.param("PUE {valu}", "FALLBACK", id="unknown-field"),
        pytest.param("PUE {value.__class__}", "FALLBACK", id="attribute-access"),
        pytest.param("PUE {0}", "FALLBACK", id="positional"),
        pytest.param("PUE {value:%%}", "FALLBACK", id="bad-spec"),
        pytest.param("PUE {value", "FALLBACK", id="unbalanced"),
        pytest.param("", "FALLBACK", id="empty"),
    ],
)
def test_render_summary_never_raises(template: str, expected: str) -> None:
    values = {
        "value": 1.6,
        "site": "dc",
        "site_name": "Test DC",
        "threshold": 1.5,
        "rule": "r",
        "kpi": "pue",
        "op": ">",
        "state": "firing",
        "severity": "critical",
    }
    assert render_summary(template, values, "FALLBACK") == expected


def test_bad_template_uses_default_summary() -> None:
    reg = make_registry()
    bad = Registry(
        reg.sites.values(),
        reg.meters.values(),
        [ThresholdRule(name="r", kpi="pue", op=">", threshold=1.5, summary="{value:.2f")],
    )
    assert not template_is_safe("{value:.2f")
    [change] = RuleEngine(bad).evaluate(window(0, 1.6))
    assert change.summary == "r firing at dc: pue = 1.6 (rule: > 1.5)"


def test_gates_see_the_windows_mean_it_load() -> None:
    """min_it_kw compares the window's mean IT load: 0.5 kWh in a minute is 30 kW, 1 kWh is 60 kW."""
    registry = Registry(
        make_registry(rules=False).sites.values(),
        make_registry(rules=False).meters.values(),
        [ThresholdRule(name="pue_loaded", kpi="pue", op=">", threshold=1.5, min_it_kw=50.0)],
    )
    engine = RuleEngine(registry)
    idle = msgspec.structs.replace(window(0, 1.9), it_kwh=0.5)
    loaded = msgspec.structs.replace(window(1, 1.9), it_kwh=1.0)
    assert engine.evaluate(idle) == []
    assert [c.state for c in engine.evaluate(loaded)] == ["firing"]


def test_staleness_on_the_clock() -> None:
    registry = Registry.from_text(
        """
sites:
  - id: dc
    name: DC
    kind: data_centre
    meters:
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
      - {id: cooling, carrier: electricity, role: cooling, unit: kWh}
rules:
  - {name: it_silent, silent_for: 5m, meter_roles: [it_load], summary: "{meter} quiet for {silent_s:.0f} s"}
"""
    )
    engine = RuleEngine(registry)
    seen: dict[tuple[str, str], int | None] = {("dc", "it"): None, ("dc", "cooling"): None}

    def at(now: int, *, backlog: bool = False) -> list[tuple[str, str, str]]:
        changes = engine.evaluate_staleness(now, lambda s, m: seen[(s, m)], backlog=backlog)
        return [(c.fingerprint, c.state, c.summary) for c in changes]

    assert at(W0) == []  # watching starts: a meter never seen counts from here
    assert at(W0 + 4 * MIN) == []
    assert at(W0 + 6 * MIN, backlog=True) == []  # catching up: readings waiting in the spool are not silence
    assert at(W0 + 6 * MIN) == [("it_silent@dc/it", "firing", "it quiet for 360 s")]  # cooling is not watched
    assert at(W0 + 6 * MIN + 500) == []  # once a second at most
    seen[("dc", "it")] = W0 + 7 * MIN
    assert at(W0 + 7 * MIN + 1000) == [("it_silent@dc/it", "resolved", "it quiet for 421 s")]
    assert at(W0 + 20 * MIN) == [("it_silent@dc/it", "firing", "it quiet for 780 s")]


def test_rules_select_sites_by_label() -> None:
    """The plan's 1.3 line applies to new large data centres only: a label on the site selects them."""
    registry = Registry.from_text(
        """
sites:
  - {id: new-dc, name: New, kind: data_centre, labels: {class: new-large}}
  - {id: old-dc, name: Old, kind: data_centre}
rules:
  - {name: pue_new_large, kpi: pue, op: ">", threshold: 1.3, site_labels: {class: new-large}}
"""
    )
    engine = RuleEngine(registry)
    assert [c.fingerprint for c in engine.evaluate(window(0, 1.4, "new-dc"))] == ["pue_new_large@new-dc"]
    assert engine.evaluate(window(0, 1.4, "old-dc")) == []


def test_rate_of_change_rule() -> None:
    """PUE up by more than 0.1 within 5 minutes fires, whatever its level; hysteresis on the change."""
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre}
rules:
  - {name: pue_jump, kpi: pue, op: ">", threshold: 0.1, change_over: 5m, recover: 0.05}
"""
    )
    engine = RuleEngine(registry)
    pues = [1.20, 1.20, 1.22, 1.25, 1.28, 1.29, 1.33, 1.36, 1.36, 1.36, 1.36, 1.36]
    changes = [
        (i, c.state, round(c.value or 0, 2))
        for i, p in enumerate(pues)
        for c in engine.evaluate(window(i, p))
    ]
    # minute 5: 1.29 - 1.20 (minute 0) = 0.09, no; minute 6: 1.33 - 1.20 (minute 1) = 0.13, firing;
    # minutes 7-10: 0.14, 0.11, 0.08, 0.07, above the 0.05 recovery line; minute 11: 1.36 - 1.33 = 0.03
    assert changes == [(6, "firing", 0.13), (11, "resolved", 0.03)]


def test_a_gated_window_is_no_baseline_for_a_rate_rule() -> None:
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre}
rules:
  - {name: pue_jump, kpi: pue, op: ">", threshold: 0.1, change_over: 5m, min_completeness: 0.9}
"""
    )
    engine = RuleEngine(registry)
    first = msgspec.structs.replace(window(0, 0.9), completeness=0.5)  # half the meters: no evidence
    changes = engine.evaluate(first)
    for i in range(1, 12):
        changes += engine.evaluate(window(i, 1.30))
    assert changes == []


def test_restored_alerts_no_rule_produces_any_more_are_closed() -> None:
    """A meter removed from the registry (or a rule renamed or rescoped): its open alert is closed at the
    first step instead of staying open for ever."""
    registry = Registry.from_text(
        """
sites:
  - id: dc
    name: DC
    kind: data_centre
    meters:
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
rules:
  - {name: it_silent, silent_for: 5m}
"""
    )
    engine = RuleEngine(registry)

    def record(fp: str, rule: str, state: str) -> AlertRecord:
        return AlertRecord(
            id=1, fingerprint=fp, rule=rule, site_id="dc", state=state, severity="warning", summary="s",
            value=None, started_ms=W0, fired_ms=W0, resolved_ms=None, updated_ms=W0,
        )  # fmt: skip

    engine.restore(
        [
            record("it_silent@dc/old-meter", "it_silent", "firing"),
            record("gone_rule@dc", "gone_rule", "pending"),
            record("it_silent@dc/it", "it_silent", "firing"),  # still configured: kept
        ]
    )
    changes = engine.evaluate_staleness(W0 + MIN, lambda s, m: None)
    assert sorted((c.fingerprint, c.state) for c in changes) == [
        ("gone_rule@dc", "inactive"),
        ("it_silent@dc/old-meter", "resolved"),
    ]
    assert engine.evaluate_staleness(W0 + 2 * MIN, lambda s, m: None) == []  # once, and the live one stays


def test_alert_labels_carry_rule_site_and_identity() -> None:
    """Routing matches on labels: the identifying ones win over site and rule labels of the same name."""
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre, labels: {class: new-large, region: changsha, site: spoofed}}
rules:
  - {name: pue_high, kpi: pue, op: ">", threshold: 1.3, severity: critical,
     labels: {team: facilities, severity: low}}
"""
    )
    [change] = RuleEngine(registry).evaluate(window(0, 1.4))
    assert change.labels == {
        "alertname": "pue_high",
        "site": "dc",
        "severity": "critical",
        "kpi": "pue",
        "site_kind": "data_centre",
        "class": "new-large",
        "region": "changsha",
        "team": "facilities",
    }


def test_site_offline_fires_only_when_every_watched_meter_is_silent() -> None:
    registry = Registry.from_text(
        """
sites:
  - id: dc
    name: DC
    kind: data_centre
    meters:
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
      - {id: cooling, carrier: electricity, role: cooling, unit: kWh}
rules:
  - {name: site_offline, silent_for: 5m, per: site, severity: critical}
  - {name: meter_silent, silent_for: 5m}
"""
    )
    engine = RuleEngine(registry)
    seen: dict[tuple[str, str], int | None] = {("dc", "it"): None, ("dc", "cooling"): None}

    def at(now: int) -> list[tuple[str, str]]:
        return [(c.fingerprint, c.state) for c in engine.evaluate_staleness(now, lambda s, m: seen[(s, m)])]

    assert at(W0) == []
    seen[("dc", "cooling")] = W0 + 3 * MIN  # cooling reports, IT stays silent
    assert at(W0 + 6 * MIN) == [("meter_silent@dc/it", "firing")]  # the site is not offline
    assert at(W0 + 9 * MIN) == [("meter_silent@dc/cooling", "firing"), ("site_offline@dc", "firing")]
    seen[("dc", "it")] = W0 + 10 * MIN
    changes = engine.evaluate_staleness(W0 + 10 * MIN + 1000, lambda s, m: seen[(s, m)])
    assert [(c.fingerprint, c.state) for c in changes] == [
        ("meter_silent@dc/it", "resolved"),
        ("site_offline@dc", "resolved"),
    ]
    offline = next(c for c in changes if c.fingerprint == "site_offline@dc")
    assert offline.labels == {
        "alertname": "site_offline",
        "site": "dc",
        "severity": "critical",
        "site_kind": "data_centre",
    }
    assert offline.summary == "site dc reports again"


def test_per_is_for_staleness_rules_only() -> None:
    with pytest.raises(ConfigError, match=r"per \(meter or site\) belongs to staleness rules"):
        Registry.from_text("sites: []\nrules:\n  - {name: r, kpi: pue, op: '>', threshold: 1.5, per: site}\n")
    with pytest.raises(ConfigError, match="rule r"):
        Registry.from_text("sites: []\nrules:\n  - {name: r, silent_for: 5m, per: hall}\n")


def test_reload_keeps_the_state_of_rules_that_stay_and_closes_the_alerts_of_rules_that_go() -> None:
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre}
rules:
  - {name: pue_high, kpi: pue, op: ">", threshold: 1.5, for: 2m}
  - {name: pue_low, kpi: pue, op: "<", threshold: 1.2}
"""
    )
    engine = RuleEngine(registry)
    assert run(engine, [1.6, 1.6]) == [(0, "pending"), (1, "firing")]
    high = next(r for r in registry.rules if r.name == "pue_high")
    stricter = msgspec.structs.replace(high, threshold=1.55)
    engine.reload([stricter])  # pue_high changed, pue_low removed (it had no open alert)
    assert engine.state("pue_high", "dc").state.value == "firing"  # no new for, no second "firing"
    assert run(engine, [1.57], first=2) == []
    engine.reload([])  # pue_high removed while firing: closed at the next step
    [closed] = engine.evaluate_staleness(W0 + 10 * MIN, lambda s, m: None)
    assert (closed.fingerprint, closed.state) == ("pue_high@dc", "resolved")
    assert closed.summary.endswith("(closed: its rule, site or meter is no longer configured)")
    assert closed.labels["alertname"] == "pue_high"
    assert engine.evaluate(window(4, 1.9)) == []


def test_a_rule_removed_between_staleness_scans_still_closes_its_alert() -> None:
    """Steps come faster than the once-a-second staleness scan: the orphans must not wait for it."""
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre, meters: [{id: it, carrier: electricity, role: it_load, unit: kWh}]}
rules:
  - {name: pue_high, kpi: pue, op: ">", threshold: 1.5}
  - {name: meter_silent, silent_for: 5m}
"""
    )
    engine = RuleEngine(registry)
    assert engine.evaluate_staleness(W0, lambda s, m: W0) == []  # the scan ran at W0
    assert run(engine, [1.6]) == [(0, "firing")]
    engine.reload(registry.staleness_rules)  # pue_high removed
    [closed] = engine.evaluate_staleness(W0 + 500, lambda s, m: W0)  # within the same second
    assert (closed.fingerprint, closed.state) == ("pue_high@dc", "resolved")


def test_a_rule_that_now_compares_another_kpi_starts_afresh() -> None:
    """Its old state (and a rate rule's history) says nothing about the new comparison: the open alert
    closes and the rule judges from scratch."""
    registry = Registry.from_text(
        """
sites:
  - {id: dc, name: DC, kind: data_centre}
rules:
  - {name: r, kpi: pue, op: ">", threshold: 1.5}
"""
    )
    engine = RuleEngine(registry)
    assert run(engine, [1.6]) == [(0, "firing")]
    [rule] = registry.rules
    engine.reload([msgspec.structs.replace(rule, kpi="completeness", threshold=2.0)])
    [closed] = engine.evaluate_staleness(W0 + 5 * MIN, lambda s, m: None)
    assert (closed.fingerprint, closed.state) == ("r@dc", "resolved")
    assert engine.state("r", "dc").state.value == "inactive"
