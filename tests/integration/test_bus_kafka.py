"""The Kafka bus against a real Kafka-protocol broker (tansu): delivery, redelivery of what was not
committed, dead letters, undecodable records, and the split of sites between processors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from peakwatch.bus import Polled, open_bus
from peakwatch.bus.kafka import UNDECODABLE, KafkaBus, partition_of
from peakwatch.domain.models import DeadLetter, Reading, ReadingBatch
from tests.support import eventually

pytestmark = pytest.mark.integration


def _bus(bootstrap: str, prefix: str, partitions: int = 4) -> KafkaBus:
    bus = open_bus(f"kafka://{bootstrap}?prefix={prefix}&partitions={partitions}&session_timeout_ms=6000")
    assert isinstance(bus, KafkaBus)
    return bus


def _batch(site: str, n: int, first_ts: int = 1_767_225_600_000) -> ReadingBatch:
    return ReadingBatch(
        site,
        [
            Reading(site_id=site, meter_id="m", ts_ms=first_ts + i * 1000, energy_kwh=float(i))
            for i in range(n)
        ],
    )


class _Owner:
    """An ``Ownership`` that records what it is told."""

    def __init__(self) -> None:
        self.owns: Callable[[str], bool] = lambda _s: False
        self.events: list[str] = []
        self.assigned = asyncio.Event()

    async def released(self) -> None:
        self.events.append("released")
        self.owns = lambda _s: False

    async def acquired(self, owns: Callable[[str], bool]) -> None:
        self.events.append("acquired")
        self.owns = owns
        self.assigned.set()


async def _poll_until(bus: KafkaBus, readings: int, letters: int = 0) -> list[Polled]:
    got: list[Polled] = []

    async def enough() -> bool:
        got.append(await bus.poll(timeout_s=0.2))
        return (
            sum(p.reading_count for p in got) >= readings and sum(len(p.dead_letters) for p in got) >= letters
        )

    await eventually(enough, f"{readings} readings and {letters} dead letters polled", timeout_s=30)
    return got


async def test_published_batches_arrive_keyed_by_site_and_uncommitted_ones_come_again(
    kafka_bootstrap: str, kafka_prefix: str
) -> None:
    producer = _bus(kafka_bootstrap, kafka_prefix)
    await producer.start()
    letter = DeadLetter(
        received_ms=1, source="telemetry/a/x", reason="unknown_meter", detail="x", payload=b"{}", site_id="a"
    )
    await producer.publish_many([_batch("a", 5), _batch("b", 3), _batch("a", 2, 1_767_225_700_000)], [letter])

    first = _bus(kafka_bootstrap, kafka_prefix)
    await first.start()
    polled = await _poll_until(first, 10, 1)
    batches = [b for p in polled for b in p.batches]
    assert sorted((b.site_id, len(b.readings)) for b in batches) == [("a", 2), ("a", 5), ("b", 3)]
    assert [b.readings[0].ts_ms for b in batches if b.site_id == "a"] == [
        1_767_225_600_000,
        1_767_225_700_000,
    ]
    assert [d for p in polled for d in p.dead_letters] == [letter]
    await first.close()  # nothing committed: the next member of the group gets it all again

    second = _bus(kafka_bootstrap, kafka_prefix)
    await second.start()
    again = await _poll_until(second, 10, 1)
    assert sorted((b.site_id, len(b.readings)) for p in again for b in p.batches) == [
        ("a", 2),
        ("a", 5),
        ("b", 3),
    ]
    for p in again:
        await second.commit(p)
    assert second.lag == 0
    await second.close()

    third = _bus(kafka_bootstrap, kafka_prefix)
    owner = _Owner()
    third.watch_ownership(owner)
    await third.start()
    seen: list[Polled] = []

    async def joined() -> bool:
        seen.append(await third.poll(timeout_s=0.1))
        return owner.assigned.is_set()

    await eventually(joined, "a third member joined the group", timeout_s=30)
    seen.append(await third.poll(timeout_s=1.0))
    assert not any(seen)  # committed: nothing comes again
    await third.close()
    await producer.close()


async def test_a_record_that_does_not_decode_becomes_a_dead_letter(
    kafka_bootstrap: str, kafka_prefix: str
) -> None:
    bus = _bus(kafka_bootstrap, kafka_prefix)
    await bus.start()  # creates the topics
    raw = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await raw.start()
    try:
        await raw.send_and_wait(f"{kafka_prefix}.readings", b"\xc1 not msgpack", key=b"site-x")
    finally:
        await raw.stop()
    polled = await _poll_until(bus, 0, 1)
    [letter] = [d for p in polled for d in p.dead_letters]
    assert letter.reason == UNDECODABLE
    assert letter.site_id == "site-x"
    assert letter.payload == b"\xc1 not msgpack"
    assert letter.source.startswith(f"kafka:{kafka_prefix}.readings/")
    await bus.close()


async def test_two_processors_split_the_sites_and_one_leaving_hands_them_over(
    kafka_bootstrap: str, kafka_prefix: str
) -> None:
    sites = [f"site-{i}" for i in range(40)]
    assert {partition_of(s.encode(), 4) for s in sites} == {0, 1, 2, 3}
    a, b = _bus(kafka_bootstrap, kafka_prefix), _bus(kafka_bootstrap, kafka_prefix)
    owner_a, owner_b = _Owner(), _Owner()
    a.watch_ownership(owner_a)
    b.watch_ownership(owner_b)
    for bus in (a, b):
        await bus.start()

    async def both_own_some() -> bool:
        await asyncio.gather(a.poll(timeout_s=0.1), b.poll(timeout_s=0.1))
        mine_a = {s for s in sites if owner_a.owns(s)}
        mine_b = {s for s in sites if owner_b.owns(s)}
        return bool(mine_a) and bool(mine_b) and mine_a | mine_b == set(sites) and not mine_a & mine_b

    await eventually(both_own_some, "the sites split between the two processors", timeout_s=30)
    assert owner_a.events[-1] == owner_b.events[-1] == "acquired"
    assert all(a.owns(s) == owner_a.owns(s) for s in sites)

    await b.close()  # leaves the group: a is given every site

    async def a_owns_all() -> bool:
        await a.poll(timeout_s=0.1)
        return all(owner_a.owns(s) for s in sites)

    await eventually(a_owns_all, "the remaining processor owns every site", timeout_s=30)
    assert "released" in owner_a.events
    await a.close()
