"""The on-disk spool bus, on real files: order and values, poll limits, redelivery after a restart or a
crash (also a real SIGKILL), segment rolling and deletion, torn tails and damaged segments,
back-pressure, closing, the memory/disk switch, a state machine over random publish/poll/commit/crash
sequences, and ``open_bus`` URLs."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from peakwatch.bus import MemoryBus, Polled, SpoolBus, open_bus
from peakwatch.config import Settings
from peakwatch.domain.models import DeadLetter, ProcessedBatch, Reading, ReadingBatch
from peakwatch.errors import BusError, ConfigError, StoreError
from processor.service import Processor
from tests.unit.fakes import FakeStore, make_registry

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def batch(site: str, n: int, start: int = 0) -> ReadingBatch:
    return ReadingBatch(
        site,
        [
            Reading(
                site_id=site,
                meter_id=f"m{i % 7}",
                ts_ms=1_714_521_600_000 + start + i,
                energy_kwh=1234.5 + i,
                power_kw=None if i % 2 else 17.25,
            )
            for i in range(n)
        ],
    )


def letter(i: int) -> DeadLetter:
    return DeadLetter(
        received_ms=i,
        source=f"telemetry/s/m{i}",
        reason="malformed_json",
        detail="bad",
        payload=b"{\x00\xff" + bytes([i % 256]),
        site_id="s",
        meter_id=None,
    )


def seg_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def first_ts(polled: Polled) -> list[int]:
    return [b.readings[0].ts_ms - 1_714_521_600_000 for b in polled.batches]


async def record_size(tmp: Path, item: ReadingBatch) -> int:
    """Bytes one record of ``item`` takes in a spool (measured on a scratch spool)."""
    bus = SpoolBus(tmp / "measure")
    await bus.publish(item)
    size = bus.depth_bytes
    await bus.close()
    return size


# ---------------------------------------------------------------------------------------- basics


@pytest.mark.parametrize("memory_items", [10_000, 0], ids=["memory", "disk"])
async def test_round_trip_keeps_values_and_order(tmp_path: Path, memory_items: int) -> None:
    bus = SpoolBus(tmp_path, memory_items=memory_items)
    sent = [batch("a", 3), batch("b", 5, 100), ReadingBatch("c", []), batch("a", 2, 200)]
    letters = [letter(1), letter(2)]
    await bus.publish(sent[0])
    await bus.publish_dead_letters(letters[:1])
    await bus.publish(sent[1])
    await bus.publish(sent[2])
    await bus.publish_dead_letters(letters[1:])
    await bus.publish(sent[3])
    assert bus.lag == 6
    assert bus.depth_items == 6
    polled = await bus.poll()
    assert polled.batches == sent
    assert polled.dead_letters == letters
    assert polled.reading_count == 10
    assert bus.lag == 0
    assert bus.depth_items == 6  # polled, not committed
    await bus.commit(polled)
    assert bus.depth_items == 0
    assert bus.depth_bytes == 0
    await bus.close()


@pytest.mark.parametrize("memory_items", [10_000, 0], ids=["memory", "disk"])
async def test_poll_stops_once_max_readings_is_reached(tmp_path: Path, memory_items: int) -> None:
    bus = SpoolBus(tmp_path, memory_items=memory_items)
    for i in range(3):
        await bus.publish(batch("a", 10, start=i * 10))
    first = await bus.poll(max_readings=15)
    assert first.reading_count == 20  # whole batches: stops after the one that crossed the limit
    assert first_ts(first) == [0, 10]
    assert bus.lag == 1
    second = await bus.poll(max_readings=15)
    assert first_ts(second) == [20]
    await bus.close()


async def test_empty_poll_waits_at_most_the_timeout_and_a_publish_wakes_it(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path)
    started = time.monotonic()
    assert not await bus.poll(timeout_s=0.05)
    assert time.monotonic() - started < 1.0
    waiting = asyncio.create_task(bus.poll(timeout_s=30))
    await asyncio.sleep(0)  # let the poll start waiting
    await bus.publish(batch("a", 1))
    polled = await asyncio.wait_for(waiting, 5)
    assert polled.reading_count == 1
    await bus.close()


async def test_empty_dead_letter_list_is_not_written_and_empty_commit_is_a_no_op(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path)
    await bus.publish_dead_letters([])
    assert bus.lag == 0
    assert bus.depth_bytes == 0
    await bus.commit(Polled())
    assert not (tmp_path / "committed").exists()
    await bus.close()


async def test_a_token_from_another_spool_is_refused(tmp_path: Path) -> None:
    one = SpoolBus(tmp_path / "one")
    other = SpoolBus(tmp_path / "two")
    await one.publish(batch("a", 1))
    polled = await one.poll()
    with pytest.raises(BusError, match="did not return"):
        await other.commit(polled)
    with pytest.raises(BusError):
        await other.commit(Polled(token=object()))
    await one.close()
    await other.close()


# ------------------------------------------------------------------------------ restart and crash


@pytest.mark.parametrize("how", ["close", "crash"])
@pytest.mark.parametrize("fsync", [False, True], ids=["page-cache", "fsync"])
async def test_uncommitted_items_are_delivered_again_after_reopening(
    tmp_path: Path, how: str, fsync: bool
) -> None:
    bus = SpoolBus(tmp_path, fsync=fsync)
    for i in range(5):
        await bus.publish(batch("a", 2, start=i * 10))
    await bus.publish_dead_letters([letter(9)])
    committed = await bus.poll(max_readings=4)  # items 0, 1
    await bus.commit(committed)
    uncommitted = await bus.poll(max_readings=4)  # items 2, 3: polled, never committed
    assert first_ts(uncommitted) == [20, 30]
    if how == "close":
        await bus.close()
    del bus  # "crash": dropped without close; nothing more reaches the files than before

    again = SpoolBus(tmp_path, fsync=fsync)
    assert again.lag == 4
    assert again.depth_items == 4
    polled = await again.poll()
    assert first_ts(polled) == [20, 30, 40]
    assert polled.dead_letters == [letter(9)]
    await again.commit(polled)
    await again.close()

    last = SpoolBus(tmp_path)
    assert last.lag == 0
    assert not await last.poll(timeout_s=0)
    await last.close()


async def test_a_process_killed_by_sigkill_after_publish_returned_loses_nothing(tmp_path: Path) -> None:
    child = """
import asyncio, os, signal, sys
from pathlib import Path
from peakwatch.bus.spool import SpoolBus
from peakwatch.domain.models import Reading, ReadingBatch

async def main() -> None:
    bus = SpoolBus(Path(sys.argv[1]), segment_bytes=8192)
    for i in range(int(sys.argv[2])):
        readings = [Reading(site_id="s", meter_id=f"m{j}", ts_ms=i, energy_kwh=j + 0.5) for j in range(10)]
        await bus.publish(ReadingBatch("s", readings))
    await bus.commit(await bus.poll(max_readings=int(sys.argv[3])))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", child, str(tmp_path), "300", "500", cwd=ROOT
    )
    assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
    assert len(seg_files(tmp_path)) > 1

    bus = SpoolBus(tmp_path)
    assert bus.lag == 250  # 300 published, the first 50 batches (500 readings) committed
    polled = await bus.poll(max_readings=10**9)
    assert [b.readings[0].ts_ms for b in polled.batches] == list(range(50, 300))
    assert all(len(b.readings) == 10 for b in polled.batches)
    await bus.close()


async def test_a_second_process_cannot_open_a_spool_in_use(tmp_path: Path) -> None:
    child = """
import sys
from pathlib import Path
from peakwatch.bus.spool import SpoolBus

bus = SpoolBus(Path(sys.argv[1]))
print("open", flush=True)
sys.stdin.readline()
"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child,
        str(tmp_path),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"open\n"
    with pytest.raises(BusError, match="in use"):
        SpoolBus(tmp_path)
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    bus = SpoolBus(tmp_path)  # the lock went with the process
    await bus.close()


async def test_segments_roll_and_committed_ones_are_deleted(tmp_path: Path) -> None:
    size = await record_size(tmp_path, batch("a", 5))
    spool = tmp_path / "spool"
    bus = SpoolBus(spool, segment_bytes=2 * size)
    for i in range(7):
        await bus.publish(batch("a", 5, start=i * 10))
    files = seg_files(spool)
    assert [int(p.stem) for p in files] == [0, 2 * size, 4 * size, 6 * size]  # named by first position
    assert [p.stat().st_size for p in files] == [2 * size, 2 * size, 2 * size, size]
    polled = await bus.poll(max_readings=15)  # 3 records: the first segment and half the second
    await bus.commit(polled)
    assert [int(p.stem) for p in seg_files(spool)] == [2 * size, 4 * size, 6 * size]
    assert bus.depth_bytes == 4 * size
    await bus.commit(await bus.poll())
    assert [int(p.stem) for p in seg_files(spool)] == [6 * size]  # the one being written stays
    assert bus.depth_bytes == 0
    await bus.close()

    again = SpoolBus(spool, segment_bytes=2 * size)
    assert again.lag == 0
    await again.publish(batch("a", 5, start=70))
    assert first_ts(await again.poll()) == [70]
    await again.close()


# ------------------------------------------------------------------------------------- damage


@pytest.mark.parametrize("tail", ["half-record", "zeros", "garbage"])
async def test_a_torn_tail_of_the_last_segment_is_truncated(
    tmp_path: Path, tail: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = SpoolBus(tmp_path)
    for i in range(3):
        await bus.publish(batch("a", 4, start=i * 10))
    await bus.close()
    (segment,) = seg_files(tmp_path)
    good = segment.read_bytes()
    extra = {
        "half-record": good[: len(good) // 3 // 2],
        "zeros": bytes(64),
        "garbage": b"\xff\x00\x10\x00",
    }[tail]
    segment.write_bytes(good + extra)

    with caplog.at_level(logging.WARNING, logger="peakwatch.bus.spool"):
        again = SpoolBus(tmp_path)
    assert segment.stat().st_size == len(good)
    assert any("truncated" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    await again.publish(batch("a", 4, start=30))  # appends right after the last good record
    polled = await again.poll()
    assert first_ts(polled) == [0, 10, 20, 30]
    await again.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="peakwatch.bus.spool"):
        last = SpoolBus(tmp_path)
    assert not caplog.records
    assert first_ts(await last.poll()) == [0, 10, 20, 30]
    await last.close()


async def test_damage_inside_the_last_segment_keeps_a_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Records after a damaged one were acknowledged: they cannot be delivered (no way to resync past
    the damage) but are never thrown away unseen: the file is copied aside and the loss logged."""
    bus = SpoolBus(tmp_path)
    for i in range(5):
        await bus.publish(batch("a", 4, start=i * 10))
    await bus.close()
    (segment,) = seg_files(tmp_path)
    data = bytearray(segment.read_bytes())
    record = len(data) // 5
    data[record + record // 2] ^= 0xFF  # a flipped bit inside the second record
    segment.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="peakwatch.bus.spool"):
        again = SpoolBus(tmp_path)
    copies = list(tmp_path.glob("*.corrupt"))  # noqa: ASYNC240 (a test's own small directory)
    assert len(copies) == 1
    assert copies[0].read_bytes() == bytes(data)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "CRC mismatch" in errors[0]
    assert first_ts(await again.poll()) == [0]
    await again.close()


async def test_a_damaged_record_in_an_earlier_segment_sets_it_aside_and_reading_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = await record_size(tmp_path, batch("a", 5))
    spool = tmp_path / "spool"
    bus = SpoolBus(spool, segment_bytes=2 * size)
    for i in range(6):
        await bus.publish(batch("a", 5, start=i * 10))
    await bus.close()
    middle = seg_files(spool)[1]  # records 2 and 3
    data = bytearray(middle.read_bytes())
    data[size + size // 2] ^= 0x55  # inside the body of record 3
    middle.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="peakwatch.bus.spool"):
        again = SpoolBus(spool, segment_bytes=2 * size)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{3 * size}..{4 * size}" in errors[0]  # the byte range that cannot be delivered
    assert (spool / f"{middle.name}.corrupt").exists()
    assert not middle.exists()
    assert again.lag == 5
    polled = await again.poll()
    assert first_ts(polled) == [0, 10, 20, 40, 50]  # record 3 lost, loudly; the rest delivered
    await again.commit(polled)
    assert again.depth_bytes == 0
    assert (spool / f"{middle.name}.corrupt").exists()  # kept for inspection
    assert len(seg_files(spool)) == 1
    await again.close()


@pytest.mark.parametrize(
    ("committed", "delivered", "level"),
    [
        ("garbage\n", [0, 10, 20], logging.ERROR),  # unreadable: everything again, loudly
        ("{mid}\n", [10, 20], logging.WARNING),  # inside record 1: that record again
        ("{beyond}\n", [], logging.WARNING),  # past the log's end (a machine crash without fsync)
    ],
    ids=["unreadable", "inside-a-record", "beyond-the-end"],
)
async def test_an_odd_committed_position_errs_towards_delivering_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, committed: str, delivered: list[int], level: int
) -> None:
    size = await record_size(tmp_path, batch("a", 2))
    spool = tmp_path / "spool"
    bus = SpoolBus(spool)
    for i in range(3):
        await bus.publish(batch("a", 2, start=i * 10))
    await bus.close()
    (spool / "committed").write_text(committed.format(mid=size + 3, beyond=10 * size))

    with caplog.at_level(logging.WARNING, logger="peakwatch.bus.spool"):
        again = SpoolBus(spool)
    assert [r.levelno for r in caplog.records] == [level]
    assert first_ts(await again.poll(timeout_s=0)) == delivered
    await again.publish(batch("a", 2, start=30))  # new records come after whatever was committed
    polled = await again.poll(timeout_s=0)
    assert first_ts(polled) == [30]
    await again.commit(polled)
    await again.close()
    last = SpoolBus(spool)
    assert last.lag == 0
    await last.close()


# ------------------------------------------------------------------------------ back-pressure


async def test_a_full_spool_blocks_the_publisher_until_a_commit_frees_space(tmp_path: Path) -> None:
    size = await record_size(tmp_path, batch("a", 3))
    bus = SpoolBus(tmp_path / "spool", max_bytes=2 * size, segment_bytes=size)
    await bus.publish(batch("a", 3))
    await bus.publish(batch("a", 3, start=10))
    assert bus.depth_bytes == bus.capacity_bytes == 2 * size
    blocked = asyncio.create_task(bus.publish(batch("a", 3, start=20)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(blocked), 0.05)
    assert bus.full
    polled = await bus.poll(max_readings=1)  # polling alone frees nothing: the bytes are uncommitted
    assert first_ts(polled) == [0]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(blocked), 0.05)
    await bus.commit(polled)
    await asyncio.wait_for(blocked, 5)
    assert not bus.full
    assert bus.depth_items == 2
    assert first_ts(await bus.poll()) == [10, 20]
    await bus.close()


async def test_closing_fails_a_publisher_waiting_for_space(tmp_path: Path) -> None:
    size = await record_size(tmp_path, batch("a", 3))
    bus = SpoolBus(tmp_path / "spool", max_bytes=size)
    await bus.publish(batch("a", 3))
    blocked = asyncio.create_task(bus.publish(batch("a", 3, start=10)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(blocked), 0.05)
    await bus.close()
    with pytest.raises(BusError, match="closed"):
        await asyncio.wait_for(blocked, 5)
    assert bus.depth_items == 1


async def test_a_record_larger_than_the_spool_waits_for_an_empty_spool(tmp_path: Path) -> None:
    """Refusing it would keep the collector's messages unacknowledged for ever (a group grows under
    back-pressure): it goes in alone, once everything before it is committed."""
    bus = SpoolBus(tmp_path, max_bytes=1000)
    await bus.publish(batch("a", 1))
    big = asyncio.create_task(bus.publish(batch("a", 100, start=10)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(big), 0.05)
    assert bus.full
    await bus.commit(await bus.poll())
    await asyncio.wait_for(big, 5)
    assert bus.depth_bytes > 1000  # over the bound by this one record only
    polled = await bus.poll()
    assert len(polled.batches[0].readings) == 100
    await bus.commit(polled)
    assert bus.depth_bytes == 0
    await bus.close()


class OutageStore(FakeStore):
    """The fake store, refusing every write (retryably) while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def write(self, batch: ProcessedBatch) -> None:
        if self.down:
            self.attempts += 1
            raise StoreError("connection refused", retryable=True)
        await super().write(batch)


async def test_a_database_outage_fills_the_spool_then_blocks_the_publisher_and_replays_everything_once(
    tmp_path: Path,
) -> None:
    """Issue #7's scenario with the real processor: the store goes down, the processor stops polling,
    the spool fills to max_bytes and the publisher (the collector) waits instead of dropping; when the
    store returns everything is written once and the spool empties."""
    ticks = 60

    def tick(i: int) -> ReadingBatch:
        ts = 1_699_999_980_000 + i * 10_000
        return ReadingBatch(
            "dc",
            [
                Reading(site_id="dc", meter_id="facility", ts_ms=ts, energy_kwh=1000.0 + 1.6 * i),
                Reading(site_id="dc", meter_id="it", ts_ms=ts, energy_kwh=500.0 + 1.0 * i),
            ],
        )

    size = await record_size(tmp_path, tick(0))
    bus = SpoolBus(tmp_path / "spool", max_bytes=10 * size, segment_bytes=3 * size)
    store = OutageStore()
    store.down = True
    written = 0
    all_written = asyncio.Event()

    def on_written(batch: ProcessedBatch) -> None:
        nonlocal written
        written += len(batch.readings)
        if written >= 2 * ticks:
            all_written.set()

    settings = Settings(window_ms=60_000, allowed_lateness_ms=10_000, idle_close_ms=5_000)
    proc = Processor(
        bus,
        store,
        make_registry(),
        settings,
        poll_timeout_s=0.01,
        retry_initial_s=0.001,
        retry_max_s=0.005,
        on_written=on_written,
    )
    running = asyncio.create_task(proc.run())

    async def publish_all() -> None:
        for i in range(ticks):
            await bus.publish(tick(i))

    publisher = asyncio.create_task(publish_all())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(publisher), 0.3)
    assert bus.full
    assert bus.depth_bytes + size > bus.capacity_bytes
    assert store.attempts > 1  # retrying, not polling
    assert not store.readings

    store.down = False
    await asyncio.wait_for(publisher, 10)
    await asyncio.wait_for(all_written.wait(), 10)
    proc.stop()
    await asyncio.wait_for(running, 10)
    assert len(store.readings) == 2 * ticks
    assert sum(len(w.readings) for w in store.writes) == 2 * ticks  # none written twice
    assert bus.depth_items == 0
    await bus.close()


# ------------------------------------------------------------------------------------ closing


async def test_closed_spool_refuses_publishes_but_hands_out_and_commits_what_it_holds(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path, memory_items=1)  # one item in memory, one on disk
    await bus.publish(batch("a", 1))
    await bus.publish(batch("a", 1, start=10))
    await bus.close()
    await bus.close()  # twice is fine
    with pytest.raises(BusError, match="closed"):
        await bus.publish(batch("b", 1))
    with pytest.raises(BusError, match="closed"):
        await bus.publish_dead_letters([letter(1)])
    polled = await bus.poll()
    assert first_ts(polled) == [0, 10]
    assert bus.lag == 0
    started = time.monotonic()
    assert not await bus.poll(timeout_s=5)  # closed and drained: at once
    assert time.monotonic() - started < 1.0
    await bus.commit(polled)  # the processor's last commits come after the bus closed

    again = SpoolBus(tmp_path)
    assert again.lag == 0
    await again.close()


async def test_a_pending_poll_returns_when_the_spool_closes(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path)
    waiting = asyncio.create_task(bus.poll(timeout_s=30))
    await asyncio.sleep(0)  # let the poll start waiting
    await bus.close()
    assert not await asyncio.wait_for(waiting, 5)


async def test_with_a_one_item_memory_queue_everything_is_read_back_from_disk(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path, memory_items=1, segment_bytes=4096)
    for i in range(60):
        if i % 10 == 9:
            await bus.publish_dead_letters([letter(i)])
        else:
            await bus.publish(batch("a", 3, start=i * 10))
    got: list[int] = []
    letters: list[DeadLetter] = []
    for extra in range(5):  # publishes between polls join the queue's tail, in order
        polled = await bus.poll(max_readings=20)
        got += first_ts(polled)
        letters += polled.dead_letters
        await bus.commit(polled)
        await bus.publish(batch("b", 1, start=10_000 + extra))
    while bus.lag:
        polled = await bus.poll(max_readings=20)
        got += first_ts(polled)
        letters += polled.dead_letters
        await bus.commit(polled)
    expected = [i * 10 for i in range(60) if i % 10 != 9]
    assert got == expected + [10_000 + extra for extra in range(5)]
    assert letters == [letter(i) for i in range(9, 60, 10)]
    assert bus.depth_items == 0
    await bus.close()


# ----------------------------------------------------------------------------- state machine


class SpoolMachine(RuleBasedStateMachine):
    """Random publish / poll / commit / crash / close sequences against a model: every published item
    is delivered, in order, exactly from the committed position after each reopen (so nothing
    committed comes again), and the counters agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-machine-"))
        self.loop = asyncio.new_event_loop()
        self.items: list[ReadingBatch | list[DeadLetter]] = []
        self.read = 0
        self.committed = 0
        self.outstanding: deque[tuple[Polled, int]] = deque()
        self.memory_items = 0
        self.segment_bytes = 0
        self.bus: SpoolBus | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def reopen(self) -> None:
        self.bus = SpoolBus(self.dir, memory_items=self.memory_items, segment_bytes=self.segment_bytes)
        self.read = self.committed
        self.outstanding.clear()

    @initialize(
        memory_items=st.integers(0, 3),
        segment_bytes=st.sampled_from([1, 200, 700, 64 * 1024]),
    )
    def open_spool(self, memory_items: int, segment_bytes: int) -> None:
        self.memory_items = memory_items
        self.segment_bytes = segment_bytes
        self.reopen()

    @rule(n=st.integers(0, 4))
    def publish(self, n: int) -> None:
        assert self.bus is not None
        item = batch("s", n, start=len(self.items) * 10)
        self.run(self.bus.publish(item))
        self.items.append(item)

    @rule(n=st.integers(0, 2))
    def publish_letters(self, n: int) -> None:
        assert self.bus is not None
        letters = [letter(len(self.items) * 10 + i) for i in range(n)]
        self.run(self.bus.publish_dead_letters(letters))
        if letters:
            self.items.append(letters)

    @rule(max_readings=st.integers(1, 9))
    def poll(self, max_readings: int) -> None:
        assert self.bus is not None
        polled: Polled = self.run(self.bus.poll(max_readings, timeout_s=0))
        taken, readings = 0, 0
        for item in self.items[self.read :]:
            taken += 1
            readings += len(item.readings) if isinstance(item, ReadingBatch) else 0
            if readings >= max_readings:
                break
        expected = self.items[self.read : self.read + taken]
        assert polled.batches == [i for i in expected if isinstance(i, ReadingBatch)]
        assert polled.dead_letters == [x for i in expected if isinstance(i, list) for x in i]
        self.read += taken
        if taken:
            self.outstanding.append((polled, self.read))
        else:
            assert not polled

    @precondition(lambda self: bool(self.outstanding))
    @rule(count=st.integers(1, 3))
    def commit(self, count: int) -> None:
        assert self.bus is not None
        for _ in range(min(count, len(self.outstanding))):
            polled, end = self.outstanding.popleft()
            self.run(self.bus.commit(polled))
            self.committed = end

    @rule(torn=st.binary(max_size=24))
    def crash(self, torn: bytes) -> None:
        """Drop the spool as a SIGKILL would (nothing more is written), maybe with half a write."""
        self.bus = None
        if torn:
            with seg_files(self.dir)[-1].open("ab") as f:
                f.write(torn)
        self.reopen()

    @rule()
    def close_and_reopen(self) -> None:
        assert self.bus is not None
        self.run(self.bus.close())
        self.bus = None
        self.reopen()

    @invariant()
    def counters_agree(self) -> None:
        if self.bus is None:
            return
        assert self.bus.lag == len(self.items) - self.read
        assert self.bus.depth_items == len(self.items) - self.committed
        assert not list(self.dir.glob("*.corrupt"))

    def teardown(self) -> None:
        if self.bus is not None:
            self.run(self.bus.close())
            self.bus = None
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("PEAKWATCH_TEST_FUZZ_EXAMPLES", "200")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpoolStateMachine = SpoolMachine.TestCase


# ---------------------------------------------------------------------------------- open_bus


async def test_open_bus_memory_url_is_unchanged() -> None:
    assert isinstance(open_bus("memory://"), MemoryBus)


async def test_open_bus_spool_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_bus(f"spool://{tmp_path}/abs?max_bytes=2GiB&segment_bytes=512KiB&fsync=1")
    assert isinstance(absolute, SpoolBus)
    assert absolute.directory == tmp_path / "abs"
    assert absolute.capacity_bytes == 2 << 30
    assert absolute.segment_bytes == 512 << 10
    assert absolute.fsync is True
    assert (tmp_path / "abs").stat().st_mode & 0o777 == 0o700
    await absolute.close()

    monkeypatch.chdir(tmp_path)
    relative = open_bus("spool://rel/dir?max_bytes=4096&fsync=off&memory_items=0")
    assert isinstance(relative, SpoolBus)
    assert relative.directory == tmp_path / "rel" / "dir"
    assert relative.capacity_bytes == 4096
    assert relative.fsync is False
    await relative.close()

    default = open_bus("spool://", default_dir=tmp_path / "data" / "spool")
    assert isinstance(default, SpoolBus)
    assert default.directory == tmp_path / "data" / "spool"
    await default.close()

    with_options = open_bus("spool://?max_bytes=3MiB", default_dir=tmp_path / "data" / "spool")
    assert isinstance(with_options, SpoolBus)
    assert with_options.capacity_bytes == 3 << 20
    await with_options.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("spool://", "names no directory"),
        ("spool://{tmp}/x?max_bytes=lots", "max_bytes"),
        ("spool://{tmp}/x?max_bytes=2GB", "max_bytes"),
        ("spool://{tmp}/x?segment_bytes=0", "segment_bytes"),
        ("spool://{tmp}/x?fsync=maybe", "fsync"),
        ("spool://{tmp}/x?memory_items=-1", "memory_items"),
        ("spool://{tmp}/x?compress=1", "compress"),
        ("spool://{tmp}/x?fsync=1&fsync=0", "fsync"),
        ("nats://localhost:4222", "unsupported bus"),
        ("kafka://", "names no broker"),
        ("kafka://localhost", "not host:port"),
        ("kafka://k:9092/topic", "names brokers only"),
        ("kafka://k:9092?partitions=0", "partitions"),
        ("kafka://k:9092?prefix=a/b", "prefix"),
        ("kafka://k:9092?acks=1", "unknown option"),
        ("kafka://k:9092?partitions=3&partitions=4", "given twice"),
    ],
)
def test_open_bus_refuses_bad_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_bus(url.format(tmp=tmp_path))
    assert not (tmp_path / "x").exists()


async def test_a_poll_cancelled_while_reading_back_from_disk_loses_nothing(tmp_path: Path) -> None:
    """The first records come from the memory queue, the rest from disk; cancelled during the disk
    read, the poll delivered nothing, so the next one must deliver everything."""
    bus = SpoolBus(tmp_path / "spool", memory_items=2)
    for i in range(5):
        await bus.publish(batch("a", 1, start=i * 10))
    poll = asyncio.create_task(bus.poll(max_readings=100))
    await asyncio.sleep(0)  # memory entries taken; now waiting for the read-back of the others
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    polled = await bus.poll(max_readings=100)
    assert first_ts(polled) == [0, 10, 20, 30, 40]
    await bus.commit(polled)
    await bus.publish(batch("a", 1, start=50))  # the memory queue works again once caught up
    assert first_ts(await bus.poll()) == [50]
    await bus.close()
