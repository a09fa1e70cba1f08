"""Fault injection: each fault's effect, the counters, and determinism per seed."""

from __future__ import annotations

import itertools
import json
import math
import random

import msgspec
import pytest

from simulators.encoding import Message
from simulators.faults import (
    FaultConfig,
    FaultCounts,
    MessageFaults,
    ReadingFaults,
    Reorderer,
    corrupt_payload,
    inject,
)
from simulators.meters import MeterSample
from simulators.randomness import derived_rng


def stream(n: int, topics: int = 5) -> list[Message]:
    return [
        Message(f"t/s/m{i % topics}", json.dumps({"ts": i, "energy_kwh": float(i)}).encode(), 1)
        for i in range(n)
    ]


def seeded_hits(seed: int, label: str, probability: float, n: int) -> list[int]:
    """Which of ``n`` draws a fault with its own generator hits: the expectation the injector must meet."""
    rng = derived_rng(seed, "faults", label)
    return [i for i in range(n) if rng.random() < probability]


def test_drop_matches_the_seeded_expectation_and_accounting() -> None:
    counts = FaultCounts()
    messages = stream(5000)
    out = list(inject(messages, FaultConfig(drop=0.1), seed=42, counts=counts))
    dropped = seeded_hits(42, "drop", 0.1, 5000)
    assert counts.dropped == counts.dropped_readings == len(dropped)
    assert 400 < counts.dropped < 600
    assert out == [m for i, m in enumerate(messages) if i not in set(dropped)]


def test_duplicate_then_drop_accounting() -> None:
    counts = FaultCounts()
    messages = stream(5000)
    out = list(inject(messages, FaultConfig(drop=0.05, duplicate=0.05), seed=1, counts=counts))
    assert len(out) == len(messages) - counts.dropped + counts.duplicated
    # each fault has its own generator: duplication does not change which messages are dropped
    assert counts.dropped == len(seeded_hits(1, "drop", 0.05, 5000))
    alone = FaultCounts()
    list(inject(messages, FaultConfig(drop=0.05), seed=1, counts=alone))
    assert alone.dropped == counts.dropped


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    config = FaultConfig(drop=0.02, duplicate=0.02, reorder=0.02, malformed=0.02)
    a = list(inject(stream(3000), config, seed=7))
    b = list(inject(stream(3000), config, seed=7))
    c = list(inject(stream(3000), config, seed=8))
    assert a == b
    assert a != c


class Scripted(random.Random):
    """A generator whose ``random()`` returns scripted values (hold when below the probability)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values, 1.0)


def test_reorder_holds_a_message_for_the_next_depth_messages_of_its_topic() -> None:
    counts = FaultCounts()
    reorderer = Reorderer(0.5, 2, Scripted([1.0, 0.0]), counts)  # hold the second message only
    a = [Message("t/a", str(i).encode(), 1) for i in range(6)]
    b = Message("t/b", b"other", 1)
    out: list[Message] = []
    for msg in [a[0], a[1], b, a[2], a[3], a[4], a[5]]:
        out.extend(reorderer.push(msg))
    assert [m.payload for m in out] == [b"0", b"other", b"2", b"3", b"1", b"4", b"5"]
    assert counts.reordered == 1
    assert reorderer.flush() == []


def test_reordered_messages_are_all_delivered_and_some_arrive_late() -> None:
    counts = FaultCounts()
    messages = stream(2000, topics=3)
    out = list(inject(messages, FaultConfig(reorder=0.1, reorder_depth=3), seed=3, counts=counts))
    assert sorted(out, key=lambda m: m.payload) == sorted(messages, key=lambda m: m.payload)
    assert counts.reordered == len(seeded_hits(3, "reorder", 0.1, 2000))
    late = 0
    for topic in {m.topic for m in messages}:
        ts = [json.loads(m.payload)["ts"] for m in out if m.topic == topic]
        late += sum(1 for x, y in itertools.pairwise(ts) if y < x)
    assert late > 0.7 * counts.reordered


PAYLOAD = b'{"ts":1000,"energy_kwh":12.5,"power_kw":3.0}'


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("invalid_json", b'{"ts":1000,"energy_kwh\x00}'),  # truncated to half
        ("wrong_type", b'{"ts":1000,"energy_kwh":"12.5 kwh","power_kw":3.0}'),
        ("nan", b'{"ts":1000,"energy_kwh":NaN,"power_kw":3.0}'),
        ("missing_ts", b'{"energy_kwh":12.5,"power_kw":3.0}'),
    ],
)
def test_corrupt_payload(kind: str, expected: bytes) -> None:
    assert corrupt_payload(PAYLOAD, kind) == expected
    if kind != "missing_ts":
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(expected, type=dict[str, float])


def test_corrupt_array_changes_the_first_reading() -> None:
    payload = b'[{"ts":1,"volume_m3":2.0},{"ts":2,"volume_m3":3.0}]'
    assert json.loads(corrupt_payload(payload, "missing_ts")) == [
        {"volume_m3": 2.0},
        {"ts": 2, "volume_m3": 3.0},
    ]
    assert math.isnan(json.loads(corrupt_payload(payload, "nan"))[0]["volume_m3"])


def test_malformed_counts_by_kind() -> None:
    faults = MessageFaults(FaultConfig(malformed=0.2, malformed_kinds=("nan", "missing_ts")), seed=5)
    out = [m for msg in stream(1000) for m in faults.feed(msg)]
    counts = faults.counts
    assert len(out) == 1000
    assert counts.malformed == len(seeded_hits(5, "malformed", 0.2, 1000))
    assert sum(counts.malformed_by_kind.values()) == counts.malformed
    assert set(counts.malformed_by_kind) == {"nan", "missing_ts"}
    broken = [m for m in out if b"NaN" in m.payload or b'"ts"' not in m.payload]
    assert len(broken) == counts.malformed
    assert counts.as_dict()["malformed_nan"] == counts.malformed_by_kind["nan"]


def readings(meter: str, n: int, step_kwh: float = 1.5) -> list[MeterSample]:
    return [
        MeterSample("s", meter, 1000 * k, {"energy_kwh": 100.0 + k * step_kwh, "power_kw": 90.0})
        for k in range(n)
    ]


def test_reset_at_restarts_the_register_at_zero_then_keeps_counting() -> None:
    faults = ReadingFaults(FaultConfig(reset_at_ms=3000, reset_meters=frozenset({"s/a"})), seed=0)
    out = [faults.apply([a, b]) for a, b in zip(readings("a", 6), readings("b", 6), strict=True)]
    a_values = [step[0].fields["energy_kwh"] for step in out]
    b_values = [step[1].fields["energy_kwh"] for step in out]
    assert a_values == pytest.approx([100.0, 101.5, 103.0, 0.0, 1.5, 3.0])
    assert b_values == pytest.approx([100.0 + 1.5 * k for k in range(6)])
    assert [step[0].fields["power_kw"] for step in out] == [90.0] * 6
    assert faults.counts.resets == 1


def test_random_resets_hit_the_seeded_readings_and_counting_goes_on() -> None:
    faults = ReadingFaults(FaultConfig(reset=0.05), seed=11)
    values = [faults.apply([r])[0].fields["energy_kwh"] for r in readings("a", 1000)]
    hits = set(seeded_hits(11, "reset", 0.05, 1000))
    assert faults.counts.resets == len(hits) > 0
    for i, value in enumerate(values):
        if i in hits:
            assert value == 0.0
        elif i > 0:
            assert value - values[i - 1] == pytest.approx(1.5)


def test_clock_skew_is_constant_per_meter_and_bounded() -> None:
    faults = ReadingFaults(FaultConfig(clock_skew_ms=30_000, clock_skew_share=0.5), seed=2)
    meters = [f"m{i}" for i in range(40)]
    offsets: dict[str, set[int]] = {m: set() for m in meters}
    for k in range(5):
        for s in faults.apply(
            [MeterSample("s", m, 1_000_000 + k * 10_000, {"energy_kwh": 1.0}) for m in meters]
        ):
            offsets[s.meter_id].add(s.ts_ms - (1_000_000 + k * 10_000))
    assert all(len(v) == 1 for v in offsets.values())
    skewed = [next(iter(v)) for v in offsets.values() if next(iter(v)) != 0]
    assert 10 <= len(skewed) <= 30
    assert all(0 < abs(o) <= 30_000 for o in skewed)
    assert faults.counts.skewed_readings == 5 * len(skewed)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drop": 1.5},
        {"duplicate": -0.1},
        {"reorder_depth": 0},
        {"clock_skew_ms": -1},
        {"malformed_kinds": ("bogus",)},
        {"malformed_kinds": ()},
    ],
)
def test_invalid_fault_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_no_faults_is_the_identity() -> None:
    messages = stream(100)
    assert list(inject(messages, FaultConfig(), seed=0)) == messages
    samples = readings("a", 10)
    assert ReadingFaults(FaultConfig(), seed=0).apply(samples) == samples
