"""Readings -> MQTT messages: topics, payload shape, batching, and cumulative registers."""

from __future__ import annotations

import msgspec
import pytest

from simulators.encoding import Batcher, encode_payload, topic_for
from simulators.meters import CumulativeRegister, MeterBank, MeterSample, MeterSpec
from simulators.park import PARK_METERS


def sample(meter: str, ts: int, kwh: float) -> MeterSample:
    return MeterSample("s", meter, ts, {"energy_kwh": kwh, "power_kw": 1.234567})


def test_single_reading_payload_is_an_object_rounded_to_0_1_wh() -> None:
    payload = encode_payload([sample("m", 1000, 12.3456789)])
    assert payload == b'{"ts":1000,"energy_kwh":12.3457,"power_kw":1.2346}'
    assert topic_for("telemetry", "s", "m") == "telemetry/s/m"


def test_batches_are_arrays_per_meter_and_flush_sends_the_rest() -> None:
    batcher = Batcher("t", batch_size=2)
    assert batcher.add([sample("a", 1, 1.0), sample("b", 1, 5.0)]) == []
    out = batcher.add([sample("a", 2, 2.0), sample("b", 2, 6.0)])
    assert [(m.topic, m.readings) for m in out] == [("t/s/a", 2), ("t/s/b", 2)]
    assert [r["ts"] for r in msgspec.json.decode(out[0].payload)] == [1, 2]
    assert batcher.add([sample("a", 3, 3.0)]) == []
    rest = batcher.flush()
    assert [(m.topic, m.readings, msgspec.json.decode(m.payload)["ts"]) for m in rest] == [("t/s/a", 1, 3)]
    assert batcher.flush() == []


def test_register_rolls_over_and_refuses_to_run_backwards() -> None:
    register = CumulativeRegister(999_999.0, register_max=999_999.99)
    assert register.add(0.5) == pytest.approx(999_999.5)
    assert register.add(1.0) == pytest.approx(0.51)
    assert register.rollovers == 1
    with pytest.raises(ValueError, match="backwards"):
        register.add(-0.1)
    with pytest.raises(ValueError, match="outside"):
        CumulativeRegister(1_000_000.0, register_max=999_999.99)


def test_meter_bank_integrates_rate_times_step() -> None:
    meters = (
        PARK_METERS[0],
        MeterSpec(
            "gas",
            PARK_METERS[-1].carrier,
            PARK_METERS[-1].role,
            unit="m3",
            register_field="volume_m3",
            reports_power=False,
        ),
    )
    bank = MeterBank("s", meters, {"grid-in": 10.0})
    first = bank.record(0, {"grid-in": 120.0, "gas": 6.0})
    assert [s.fields for s in first] == [{"energy_kwh": 10.0, "power_kw": 120.0}, {"volume_m3": 0.0}]
    second = bank.record(30_000, {"grid-in": 120.0, "gas": 6.0})  # 30 s
    assert [s.fields for s in second] == [
        {"energy_kwh": pytest.approx(11.0), "power_kw": 120.0},
        {"volume_m3": pytest.approx(0.05)},
    ]
