"""Fuzzing the whole numeric path, the long run of issue 15: generated reading sequences through the
processor's meter tracker -> windows -> KPIs -> rollups (pure code, no database, no broker).

Each sequence is one site's readings (a data centre: a facility register with ``register_max``, an IT
register with ``rated_kw``, an interval-register cooling meter, a power-only UPS meter and a water
register), with values of every float64 magnitude (0, -0.0, subnormals, the smallest normal, random
walks, 1e15 and just above, 1e308, the largest float, the issue's 1e308/1.79e308/1.0/1.79e308, now and
then NaN or infinity) at times that repeat, go back, and jump by minutes or days, fed in random
batches. Invariants (``check``): no exception; every amount and every stored baseline finite;
every value out of range dead-lettered as ``out_of_range`` and nothing else; each meter's net amount
per window never negative; fed in time order, the live amounts equal ``derive_intervals`` bit for bit,
and the derivation does not depend on the order or repetition of its input; every window split adds
up exactly to its amount; every closed minute and its 15-minute rollup finite, never
``not_computable``.

    .venv/bin/python -m bench.fuzz_pipeline --sequences 1000000 --seed 1

CI runs a few thousand (tests/unit/test_numeric_path_properties.py); docs/operations.md has the
long-run command and its last figure.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Iterator

from peakwatch.config import Registry
from peakwatch.domain.components import encode_components
from peakwatch.domain.derivation import derive_intervals
from peakwatch.domain.kpis import NOT_COMPUTABLE, rollup_window
from peakwatch.domain.models import KpiWindow, Reading, ReadingBatch, Register
from peakwatch.domain.periods import Period
from peakwatch.domain.reasons import Reason
from peakwatch.domain.spreading import split_interval
from peakwatch.domain.units import VALUE_CEILING, in_range
from processor.meters import MeterTracker, StepOutput
from processor.windows import SiteWindows, site_inputs

MIN = 60_000
T0 = 1_767_225_600_000
SITE = "dc"
REGISTRY = Registry.from_text(
    """
sites:
  - id: dc
    name: Fuzz DC
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh, register_max: 999999.99}
      - {id: it, carrier: electricity, role: it_load, unit: kWh, rated_kw: 500}
      - {id: cooling, carrier: electricity, role: cooling, unit: kWh, register: interval}
      - {id: ups, carrier: electricity, role: ups_losses, unit: kW, register: power}
      - {id: water, carrier: water, role: water_supply, unit: m3}
""",
    source="fuzz registry",
)
METERS = {m.id: m for m in REGISTRY.site_meters(SITE)}
FIELD = {"facility": "energy_kwh", "it": "energy_kwh", "cooling": "energy_kwh", "ups": "power_kw"}
FIELD["water"] = "volume_m3"
SITE_WINDOWS_ARGS = {"window_ms": MIN, "allowed_lateness_ms": 5_000, "idle_close_ms": 10_000}
INPUTS = site_inputs(REGISTRY, REGISTRY.factors, REGISTRY.sites[SITE])
QUARTER = site_inputs(REGISTRY, REGISTRY.factors, REGISTRY.sites[SITE], Period.QUARTER_HOUR)
MAX = sys.float_info.max
EXTREMES = (
    0.0,
    -0.0,
    5e-324,
    2.2250738585072014e-308,
    1e-300,
    1.0,
    VALUE_CEILING,
    math.nextafter(VALUE_CEILING, math.inf),
    1e308,
    1.79e308,
    MAX,
    -MAX,
)
POISON = (1e308, 1.79e308, 1.0, 1.79e308)
"""The four readings of issue 15 that once stopped a site for good."""


def _value(rnd: random.Random, previous: float) -> float:
    kind = rnd.random()
    if kind < 0.45:  # a register going up by any magnitude
        step = rnd.random() * 10.0 ** rnd.randint(-12, 7)
        return previous + step if math.isfinite(previous + step) else previous
    if kind < 0.7:
        return rnd.choice(EXTREMES)
    if kind < 0.95:  # any magnitude, either sign
        return min(rnd.random() * 10.0 ** rnd.randint(-323, 308), MAX) * rnd.choice((1.0, 1.0, 1.0, -1.0))
    return rnd.choice((math.nan, math.inf, -math.inf))


def _gap(rnd: random.Random) -> int:
    kind = rnd.random()
    if kind < 0.1:
        return 0  # a duplicate time
    if kind < 0.2:
        return -rnd.randint(1, 3 * MIN)  # out of order
    if kind < 0.95:
        return rnd.randint(1, 3 * MIN)
    return rnd.choice((15 * MIN, 16 * MIN, 86_400_000 + rnd.randint(1, 3 * MIN)))  # power gap, long gap


def sequence(rnd: random.Random) -> list[Reading]:
    """One site's readings in arrival order."""
    out: list[Reading] = []
    clock = {m: T0 + rnd.randint(0, MIN) for m in METERS}
    value = dict.fromkeys(METERS, 0.0)
    poisoned = rnd.choice(list(METERS)) if rnd.random() < 0.05 else None
    for _ in range(rnd.randint(1, 30)):
        meter = rnd.choice(list(METERS))
        clock[meter] += _gap(rnd)
        if meter == poisoned:
            for v in POISON:
                clock[meter] += rnd.randint(1, 10_000)
                out.append(Reading(site_id=SITE, meter_id=meter, ts_ms=clock[meter], **{FIELD[meter]: v}))
            poisoned = None
            continue
        v = _value(rnd, value[meter])
        if math.isfinite(v):
            value[meter] = v
        out.append(Reading(site_id=SITE, meter_id=meter, ts_ms=clock[meter], **{FIELD[meter]: v}))
    return out


def _batches(rnd: random.Random, readings: list[Reading], most: int) -> Iterator[list[Reading]]:
    i = 0
    while i < len(readings):
        n = rnd.randint(1, most) if most else len(readings)  # 0: all in one step
        yield readings[i : i + n]
        i += n


def _finite_window(w: KpiWindow) -> None:
    assert NOT_COMPUTABLE not in w.flags, w
    for name in w.__struct_fields__:
        v = getattr(w, name)
        assert not isinstance(v, float) or math.isfinite(v), (name, w)
    assert all(math.isfinite(v) for v in encode_components(w.components).values()), w
    assert w.electricity_kwh >= 0.0, w


def live(
    rnd: random.Random, readings: list[Reading], most: int = 8
) -> tuple[dict[tuple[str, int], float], int]:
    """Readings through tracker -> windows -> KPIs in random batches of at most ``most`` (0: one batch):
    (each meter's window amounts, summed in step order, as the ledger sees them; the number of
    out_of_range dead letters)."""
    tracker = MeterTracker(REGISTRY, MIN)
    windows = SiteWindows(REGISTRY.sites[SITE], METERS.values(), INPUTS, **SITE_WINDOWS_ARGS)
    amounts: dict[tuple[str, int], float] = {}
    closed: list[KpiWindow] = []
    out_of_range = 0
    now = 0
    for batch in _batches(rnd, readings, most):
        now += rnd.randint(0, 20_000)
        out = StepOutput(now)
        tracker.apply_batch(ReadingBatch(SITE, batch), out)
        for letter in out.dead_letters:
            assert letter.reason in (Reason.OUT_OF_RANGE, Reason.NEGATIVE_INTERVAL_AMOUNT), letter
            out_of_range += letter.reason == Reason.OUT_OF_RANGE
        intervals, states = tracker.drain(out, now)
        for st in states:
            assert st.last_value is None or in_range(st.last_value), st
        for iv in intervals:
            assert math.isfinite(iv.amount), iv
            key = (iv.meter_id, iv.window_start_ms)
            amounts[key] = amounts.get(key, 0.0) + iv.amount
            windows.add(iv.meter_id, iv.window_start_ms, iv.amount, iv.estimated)
        if SITE in out.site_max_ts:
            windows.observe(out.site_max_ts[SITE], now)
        windows.tick(now)
        closed.extend(windows.close_ready())
    windows.tick(now + 10**12)
    closed.extend(windows.close_ready())
    for w in closed:
        _finite_window(w)
    quarters: dict[int, list[KpiWindow]] = {}
    for w in closed:
        quarters.setdefault(w.start_ms - w.start_ms % (15 * MIN), []).append(w)
    for start, children in quarters.items():
        _finite_window(rollup_window(SITE, start, start + 15 * MIN, children, QUARTER, len(METERS)))
    return amounts, out_of_range


def _derived(readings: list[Reading]) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for meter_id, meter in METERS.items():
        mine = [r for r in readings if r.meter_id == meter_id]
        for w, a in derive_intervals(meter, mine, [], MIN, from_ms=0, to_ms=1 << 62).amounts.items():
            out[(meter_id, w)] = a
    return out


def _in_time_order(readings: list[Reading]) -> list[Reading]:
    """The first countable reading per (meter, time), oldest first: the live path without out-of-order
    readings (a refused reading leaves the state as it was, so the next one at its time counts)."""
    first: dict[tuple[str, int], Reading] = {}
    for r in readings:
        value = _main_value(r)
        interval = METERS[r.meter_id].register is Register.INTERVAL
        if in_range(value) and not (interval and value < 0):
            first.setdefault((r.meter_id, r.ts_ms), r)
    return sorted(first.values(), key=lambda r: r.ts_ms)


def _main_value(r: Reading) -> float:
    value = getattr(r, FIELD[r.meter_id])
    assert isinstance(value, float)
    return value


def check(rnd: random.Random) -> None:
    """One generated sequence and every invariant (an AssertionError names what broke)."""
    check_readings(rnd, sequence(rnd))
    check_split(
        rnd.randint(T0, T0 + MIN), rnd.choice((1, MIN, 7 * MIN + 1, 86_400_001)), rnd.choice(EXTREMES)
    )
    amount = _value(rnd, 0.0)
    if math.isfinite(amount):
        check_split(rnd.randint(T0, T0 + MIN), rnd.randint(1, 20 * MIN), amount)


def check_split(t0: int, span: int, amount: float) -> None:
    """``split_interval``: finite shares of the amount's sign that add up, in order, exactly to it."""
    shares = split_interval(t0, t0 + span, amount, MIN)
    total = 0.0
    for _, share in shares:
        assert math.isfinite(share), (amount, shares)
        assert share * amount >= 0.0, (amount, shares)
        total += share
    assert total == amount, (amount, shares)


def check_readings(rnd: random.Random, readings: list[Reading]) -> None:
    """The invariants for one site's readings in arrival order (batches drawn from ``rnd``)."""
    amounts, letters = live(rnd, readings)
    assert letters == sum(not in_range(_main_value(r)) for r in readings), readings
    for (meter_id, w), a in amounts.items():
        assert a >= 0.0, (meter_id, w, a, readings)
    ordered = _in_time_order(readings)
    derived = _derived(readings)
    # one value per (meter, time), the first given, wins: any order of those, any repetition after them
    shuffled = rnd.sample(ordered, len(ordered))
    repeats = (
        rnd.choices(readings, k=len(readings) // 2) if readings else []
    )  # hypothesis at its floor cannot draw from []
    assert _derived(shuffled + repeats) == derived
    # one step: the same additions in the same order (across steps a retraction's negative shares meet
    # the ledger's sum in another order, equal to a few ulps only)
    ordered_amounts, _ = live(rnd, ordered, most=0)
    assert ordered_amounts == derived, (ordered, ordered_amounts, derived)
    for (meter_id, w), a in derived.items():
        assert math.isfinite(a), (meter_id, w, a)
        assert a >= 0.0, (meter_id, w, a)


def run(sequences: int, seed: int, report_every: int = 0) -> int:
    """Check ``sequences`` generated sequences from ``seed``; the number of readings they held."""
    rnd = random.Random(seed)
    started = time.monotonic()
    for i in range(1, sequences + 1):
        state = rnd.getstate()
        try:
            check(rnd)
        except Exception:
            print(
                f"sequence {i} (seed {seed}) failed; its readings:",
                file=sys.stderr,
            )
            rnd.setstate(state)
            print(sequence(rnd), file=sys.stderr)
            raise
        if report_every and i % report_every == 0:
            print(f"{i} sequences, {time.monotonic() - started:.0f} s", flush=True)
    return sequences


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    run(args.sequences, args.seed, report_every=max(args.sequences // 20, 1))
    print(f"OK: {args.sequences} sequences (seed {args.seed}) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
