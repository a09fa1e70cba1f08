"""``GroupedAcks`` without a broker: QoS 0 and QoS 1 messages share the hand-over groups; only QoS 1
packet ids are acknowledged; a refused group's QoS 0 messages are counted lost (nobody sends them
again) without re-opening the connection; too many messages waiting pause the socket's reading."""

from __future__ import annotations

import asyncio
from typing import Any

from collector.mqtt.grouped_acks import GroupedAcks


class Groups:
    """A ``Batching`` stand-in: every submit joins the open group until ``close`` starts a new one."""

    def __init__(self) -> None:
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.taken: list[tuple[str, bytes]] = []

    def submit(self, topic: str, payload: bytes, received_ms: int) -> asyncio.Future[None]:
        self.taken.append((topic, payload))
        return self.open

    def close(self) -> asyncio.Future[None]:
        done, self.open = self.open, asyncio.get_running_loop().create_future()
        return done


class FakeClient:
    def __init__(self) -> None:
        self.current_connection = object()
        self.pubacks: list[list[int]] = []
        self.holds: list[tuple[object, bool]] = []

    def send_pubacks(self, connection: Any, packet_ids: list[int]) -> bool:
        self.pubacks.append(list(packet_ids))
        return True

    def hold_reading(self, connection: Any, hold: bool) -> None:
        self.holds.append((connection, hold))


class Told:
    def __init__(self) -> None:
        self.failed: list[bool] = []
        self.acknowledged = 0
        self.lost: list[int] = []

    def acks(self, groups: Groups, max_outstanding: int = 100) -> GroupedAcks:
        return GroupedAcks(
            groups,
            failed=self.failed.append,
            acknowledged=self.acknowledge,
            lost=self.lost.append,
            max_outstanding=max_outstanding,
        )

    def acknowledge(self) -> None:
        self.acknowledged += 1


async def test_qos0_messages_join_the_group_and_only_qos1_packet_ids_are_acknowledged() -> None:
    groups, told, client = Groups(), Told(), FakeClient()
    acks = told.acks(groups)
    acks.take(client, None, "t/a/m0", b"0")  # type: ignore[arg-type]
    acks.take(client, 7, b"t/a/m1", b"1")  # type: ignore[arg-type]
    acks.take(client, None, "t/a/m2", b"2")  # type: ignore[arg-type]
    groups.close().set_result(None)
    await asyncio.sleep(0)
    assert groups.taken == [("t/a/m0", b"0"), ("t/a/m1", b"1"), ("t/a/m2", b"2")]
    assert client.pubacks == [[7]]
    assert (told.acknowledged, told.failed, told.lost) == (1, [], [])


async def test_a_refused_group_of_qos0_messages_is_counted_lost_without_a_redelivery() -> None:
    groups, told, client = Groups(), Told(), FakeClient()
    acks = told.acks(groups)
    for i in range(3):
        acks.take(client, None, f"t/a/m{i}", b"x")  # type: ignore[arg-type]
    groups.close().set_exception(RuntimeError("bus refused"))
    await asyncio.sleep(0)
    assert told.lost == [3]
    assert told.failed == []  # re-opening the connection would only lose the QoS 0 messages in flight
    assert client.pubacks == []


async def test_a_refused_mixed_group_loses_its_qos0_messages_and_redelivers_its_qos1_ones() -> None:
    groups, told, client = Groups(), Told(), FakeClient()
    acks = told.acks(groups)
    acks.take(client, None, "t/a/m0", b"x")  # type: ignore[arg-type]
    acks.take(client, 5, "t/a/m1", b"x")  # type: ignore[arg-type]
    groups.close().set_exception(RuntimeError("bus refused"))
    await asyncio.sleep(0)
    assert (told.lost, told.failed, client.pubacks) == ([1], [False], [])


async def test_while_stopping_a_qos0_message_is_still_taken_and_a_qos1_one_is_left_to_the_broker() -> None:
    groups, told = Groups(), Told()
    acks = told.acks(groups)
    acks.take(None, None, "t/a/m0", b"0")
    acks.take(None, 9, "t/a/m1", b"1")
    assert groups.taken == [("t/a/m0", b"0")]
    groups.close().set_result(None)
    await asyncio.sleep(0)
    assert acks.pending == set()


async def test_too_many_waiting_messages_pause_reading_until_half_are_on_the_bus() -> None:
    groups, told, client = Groups(), Told(), FakeClient()
    acks = told.acks(groups, max_outstanding=4)
    connection = client.current_connection
    for i in range(3):
        acks.take(client, None, f"t/a/m{i}", b"x")  # type: ignore[arg-type]
    first = groups.close()
    assert client.holds == []  # 3 waiting, the limit is 4
    acks.take(client, None, "t/a/m3", b"x")  # type: ignore[arg-type]
    assert client.holds == [(connection, True)]  # 4 waiting
    acks.take(client, None, "t/a/m4", b"x")  # type: ignore[arg-type]
    assert client.holds == [(connection, True)]  # held once, not again
    first.set_result(None)
    await asyncio.sleep(0)
    assert client.holds == [(connection, True), (connection, False)]  # 2 waiting = half the limit


async def test_a_group_taken_while_stopping_still_resumes_the_held_connection() -> None:
    """The resume goes to the client that held the connection, not to the finishing group's client
    (``None`` for a QoS 0 message taken while the source was stopping)."""
    groups, told, client = Groups(), Told(), FakeClient()
    acks = told.acks(groups, max_outstanding=2)
    acks.take(None, None, "t/a/m0", b"x")  # taken while stopping: no client
    stopping_group = groups.close()
    acks.take(client, None, "t/a/m1", b"x")  # type: ignore[arg-type]
    connection = client.current_connection
    assert client.holds == [(connection, True)]  # 2 waiting
    stopping_group.set_result(None)
    await asyncio.sleep(0)
    assert client.holds == [(connection, True), (connection, False)]  # 1 waiting = half the limit
