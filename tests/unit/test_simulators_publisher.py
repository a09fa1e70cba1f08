"""The network-free parts of the publisher: URL parsing and the step source it publishes."""

from __future__ import annotations

import msgspec
import pytest

from peakwatch.errors import SimulationError
from simulators.faults import FaultConfig
from simulators.options import SimulationOptions
from simulators.publisher import StepSource, parse_mqtt_url

T0 = 1_713_000_000_000


@pytest.mark.parametrize("url", ["http://broker", "broker:1999", "mqtt://", "mqtt://h:notaport"])
def test_parse_mqtt_url_refuses(url: str) -> None:
    with pytest.raises(SimulationError):
        parse_mqtt_url(url)


def test_step_source_without_faults_sends_one_message_per_reading() -> None:
    source = StepSource(SimulationOptions(sites=2))
    messages = [m for k in range(3) for m in source.step(T0 + k * 10_000)]
    assert source.readings == len(messages) == source.produced == 3 * (9 + 5)
    topics = {m.topic for m in messages}
    assert "telemetry/park-changsha/boiler-gas" in topics
    assert "telemetry/dc-xiangjiang/facility" in topics
    assert all(isinstance(msgspec.json.decode(m.payload)["ts"], int) for m in messages)
    assert source.finish() == []


def test_step_source_batches_and_filters_sites() -> None:
    options = SimulationOptions(sites=4, site_ids=("dc-2",), batch_size=3, topic_prefix="x")
    source = StepSource(options)
    assert [m.info.id for m in source.fleet] == ["dc-2"]
    first = [m for k in range(4) for m in source.step(T0 + k * 10_000)]
    assert [m.readings for m in first] == [3] * 5
    assert {m.topic.split("/")[1] for m in first} == {"dc-2"}
    rest = source.finish()
    assert [m.readings for m in rest] == [1] * 5
    assert source.readings == 20 == sum(m.readings for m in first + rest)


def test_step_source_counts_every_fault() -> None:
    options = SimulationOptions(
        sites=2, seed=3, faults=FaultConfig(drop=0.1, duplicate=0.1, reorder=0.1, malformed=0.1, reset=0.01)
    )
    source = StepSource(options)
    sent = [m for k in range(200) for m in source.step(T0 + k * 10_000)]
    sent += source.finish()
    c = source.counts
    assert source.produced == source.readings == 200 * 14
    assert len(sent) == source.produced + c.duplicated - c.dropped
    assert min(c.dropped, c.duplicated, c.reordered, c.malformed, c.resets) > 0


@pytest.mark.parametrize(
    "kwargs", [{"qos": 3}, {"batch_size": 0}, {"sites": 0}, {"step_ms": 0}, {"max_inflight": 0}]
)
def test_invalid_options(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"."):
        SimulationOptions(**kwargs)  # type: ignore[arg-type]
