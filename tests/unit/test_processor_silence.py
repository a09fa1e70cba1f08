"""The staleness scan's schedule (processor/silence.py): judging only the open alerts until a quiet meter
may have fallen silent gives the changes a full scan at every call gives, in the same order."""

from __future__ import annotations

import random

from peakwatch.config import Registry
from processor.alerts import RuleEngine
from processor.silence import SeenMs

MIN = 60_000
W0 = 1_699_999_980_000
REGISTRY = """
sites:
  - id: a
    name: A
    kind: data_centre
    meters:
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
      - {id: cooling, carrier: electricity, role: cooling, unit: kWh}
      - {id: ups, carrier: electricity, role: ups_losses, unit: kWh}
  - id: b
    name: B
    kind: data_centre
    meters:
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
      - {id: cooling, carrier: electricity, role: cooling, unit: kWh}
rules:
  - {name: meter_silent, silent_for: 2m}
  - {name: site_silent, silent_for: 3m, per: site}
"""


def _lookup(seen: dict[tuple[str, str], int | None]) -> SeenMs:
    return lambda site, meter: seen[(site, meter)]


class FullScans(RuleEngine):
    """The reference: every scan judges every entry (what the engine did before the schedule)."""

    def evaluate_staleness(self, now_ms, seen_ms, *, backlog=False):  # type: ignore[no-untyped-def]
        self._silence.invalidate()
        return super().evaluate_staleness(now_ms, seen_ms, backlog=backlog)


def test_the_schedule_changes_nothing_a_full_scan_would_see() -> None:
    registry = Registry.from_text(REGISTRY)
    meters = list(registry.meters)
    rng = random.Random(21)
    for _ in range(20):
        scheduled, full = RuleEngine(registry), FullScans(registry)
        seen: dict[tuple[str, str], int | None] = dict.fromkeys(meters)
        now = W0
        fired = 0
        for step in range(400):
            now += rng.choice((300, 1000, 2500, 15_000))
            if step == 200:
                now -= 10 * MIN  # the clock goes back: the schedule must not trust its bound
            quiet = set(rng.sample(meters, rng.randint(0, len(meters))))
            for key in meters:
                if key not in quiet and rng.random() < 0.3:
                    seen[key] = now
            backlog = rng.random() < 0.05
            seen_ms = _lookup(seen)
            got = scheduled.evaluate_staleness(now, seen_ms, backlog=backlog)
            want = full.evaluate_staleness(now, seen_ms, backlog=backlog)
            assert got == want, f"step {step}"
            fired += sum(c.state == "firing" for c in want)
        assert fired > 0  # the walk did exercise silences


def test_between_silences_a_scan_looks_at_the_open_alerts_only() -> None:
    registry = Registry.from_text(REGISTRY)
    engine = RuleEngine(registry)
    looked: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], int | None] = dict.fromkeys(registry.meters, W0)
    seen[("a", "ups")] = None  # never reports: fires 2 minutes after watching began

    def seen_ms(site: str, meter: str) -> int | None:
        looked.append((site, meter))
        return seen[(site, meter)]

    assert engine.evaluate_staleness(W0, seen_ms) == []
    assert len(looked) == 5 + 5  # the first scan is a full one: every meter, then every site's meters
    looked.clear()
    for now in range(W0 + 1000, W0 + 2 * MIN, 1000):
        if now == W0 + 90_000:  # the others report: they stay quiet
            seen.update({key: now for key in registry.meters if key != ("a", "ups")})
        assert engine.evaluate_staleness(now, seen_ms) == []
    assert looked == []  # nothing can fall silent before W0 + 2 minutes
    [change] = engine.evaluate_staleness(W0 + 2 * MIN, seen_ms)
    assert (change.fingerprint, change.state) == ("meter_silent@a/ups", "firing")
    looked.clear()
    engine.evaluate_staleness(W0 + 2 * MIN + 1000, seen_ms)
    assert looked == [("a", "ups")]  # the open alert, judged at every scan to resolve on a report
