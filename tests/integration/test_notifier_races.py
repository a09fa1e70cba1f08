"""The notifier when things happen at awkward moments: a delivery finishing while a round reads, the
database refusing writes, the leader losing its connection with a message on its way, a channel
removed from the configuration. Real PostgreSQL and HTTP receiver; the awkward moment is made
deterministic by holding a real delivery (or a real store call) until the test lets it go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from notifier.service import Notifier
from peakwatch.domain.routing import Matcher
from peakwatch.notify_config import Notifications
from peakwatch.store import Store
from tests.fixtures.receivers import HttpReceiver
from tests.integration.test_notifier import HOUR, MIN, T0, Clock, S, alert, change, notifications, round_at

pytestmark = pytest.mark.integration


def webhook(url: str, *, group_by: str = "[alertname, site]", extra: str = "") -> Notifications:
    return notifications(
        f"""
  receivers:
    - name: oncall
      channels:
        - {{type: webhook, url: "{url}"}}{extra}
  route: {{receiver: oncall, group_by: {group_by}, group_wait: 0s, group_interval: 1m}}
"""
    )


def held(notifier: Notifier) -> asyncio.Event:
    """Hold the notifier's deliveries (the real send) until the returned event is set."""
    gate = asyncio.Event()
    send = notifier._channels.send

    async def after_gate(*args: Any, **kwargs: Any) -> str:
        await gate.wait()
        return await send(*args, **kwargs)

    notifier._channels.send = after_gate  # type: ignore[method-assign]
    return gate


def once_before(obj: Any, name: str, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` the next time ``obj.name`` is called, just before the real call."""
    real = getattr(obj, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        setattr(obj, name, real)
        await hook()
        return await real(*args, **kwargs)

    setattr(obj, name, wrapper)


async def test_a_delivery_finishing_while_a_round_reads_does_not_lose_the_resolution(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    clock = Clock(T0)
    notifier = Notifier(store, webhook(http_receiver.url_for(receiver_path)), clock=clock)
    await alert(store, change("pue", "dc-1", "firing", T0))
    gate = held(notifier)
    await notifier.round()  # the firing message is on its way
    await alert(store, change("pue", "dc-1", "resolved", T0 + 10 * S))

    async def land() -> None:
        gate.set()
        await notifier.delivered()

    once_before(store.notify, "silences", land)  # it lands in the middle of the next round's reads
    await round_at(notifier, clock, T0 + 11 * S)
    for ms in (T0 + 2 * MIN, T0 + 10 * MIN):
        await round_at(notifier, clock, ms)
    assert [r.json()["status"] for r in http_receiver.requests(receiver_path)] == ["firing", "resolved"]


async def test_a_delivery_finishing_while_a_round_writes_is_not_sent_again(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    clock = Clock(T0)
    notifier = Notifier(store, webhook(http_receiver.url_for(receiver_path), group_by='["..."]'), clock=clock)
    await alert(store, change("a", "dc-1", "firing", T0))
    gate = held(notifier)
    await notifier.round()  # a's message is on its way
    await alert(store, change("b", "dc-1", "firing", T0))

    async def land() -> None:
        gate.set()
        await notifier.delivered()

    once_before(store.notify, "routing_alerts", land)
    await round_at(notifier, clock, T0 + S)
    names = sorted(r.json()["commonLabels"]["alertname"] for r in http_receiver.requests(receiver_path))
    assert names == ["a", "b"]


async def test_a_database_refusing_writes_does_not_make_the_notifier_repeat_itself(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    await alert(store, change("pue", "dc-1", "firing", T0))
    async with store._pool.acquire() as conn:  # writes to notify_logs fail (a full disk, a read-only node)
        await conn.execute(
            "CREATE FUNCTION pw_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'could not extend file'; END$$;"
            "CREATE TRIGGER pw_refuse BEFORE INSERT OR UPDATE OR DELETE ON notify_logs "
            "FOR EACH ROW EXECUTE FUNCTION pw_refuse();"
        )
    notifier = Notifier(
        store, webhook(http_receiver.url_for(receiver_path)), poll_ms=60_000, standby_retry_s=0.05
    )
    task = asyncio.create_task(notifier.run())
    try:
        await http_receiver.next(receiver_path)
        # the log cannot be saved: every round fails and the notifier retries its writes every 50 ms;
        # give it many of those (a second) to repeat the message if it were going to
        await asyncio.sleep(1.0)
        assert len(http_receiver.requests(receiver_path)) == 1
        async with store._pool.acquire() as conn:
            await conn.execute("DROP TRIGGER pw_refuse ON notify_logs")
        async with asyncio.timeout(10):
            while not await store.notify.logs():  # noqa: ASYNC110 - the retry period is the event
                await asyncio.sleep(0.05)
    finally:
        notifier.stop()
        await task
    assert len(http_receiver.requests(receiver_path)) == 1


async def test_a_leader_that_loses_its_connection_does_not_send_what_the_next_one_sends(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    config = webhook(http_receiver.url_for(receiver_path))
    first = Notifier(store, config, poll_ms=60_000, standby_retry_s=0.05)
    second = Notifier(store, config, poll_ms=60_000, standby_retry_s=0.05)
    gate = held(first)
    tasks = [asyncio.create_task(first.run())]
    try:
        await asyncio.wait_for(first.ready.wait(), 10)
        tasks.append(asyncio.create_task(second.run()))
        in_flight = asyncio.Event()
        once_before(first._channels, "send", lambda: _set(in_flight))
        await alert(store, change("pue", "dc-1", "firing", T0))
        await asyncio.wait_for(in_flight.wait(), 10)
        async with store._pool.acquire() as conn:  # the leader's connection drops (a failover, a blip)
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid <> pg_backend_pid()"
            )
        await asyncio.wait_for(second.ready.wait(), 10)
        await http_receiver.next(receiver_path)  # the new leader sends it
        gate.set()  # the old leader's delivery was stopped when its lock went: nothing more arrives
        await first.delivered()
    finally:
        for n in (first, second):
            n.stop()
        await asyncio.gather(*tasks)
    assert len(http_receiver.requests(receiver_path)) == 1


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_channel_removed_from_the_configuration_is_forgotten_not_retried_for_ever(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    kept, removed = (
        http_receiver.url_for(receiver_path + "/kept"),
        http_receiver.url_for(receiver_path + "/gone"),
    )
    clock = Clock(T0)
    before = webhook(kept, extra=f'\n        - {{type: webhook, url: "{removed}"}}')
    await alert(store, change("pue", "dc-1", "firing", T0))
    await round_at(Notifier(store, before, clock=clock), clock, T0)
    assert len(http_receiver.requests(receiver_path + "/gone")) == 1
    await alert(store, change("pue", "dc-1", "resolved", T0 + 2 * MIN))

    after = Notifier(store, webhook(kept), clock=clock)  # the operator removed the second channel
    await after.take_over()
    assert await round_at(after, clock, T0 + 2 * MIN) is None  # nothing left to do, nothing to wake for
    assert [r.json()["status"] for r in http_receiver.requests(receiver_path + "/kept")] == [
        "firing",
        "resolved",
    ]
    assert len(http_receiver.requests(receiver_path + "/gone")) == 1
    assert await store.notify.logs() == {}


async def test_an_alert_muted_after_its_message_still_gets_its_resolution(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    clock = Clock(T0)
    notifier = Notifier(store, webhook(http_receiver.url_for(receiver_path)), clock=clock)
    await alert(store, change("pue", "dc-1", "firing", T0))
    await round_at(notifier, clock, T0)
    await store.notify.add_silence([Matcher.parse('site="dc-1"')], T0 + S, T0 + HOUR, "bob", "", T0 + S)
    await round_at(notifier, clock, T0 + 2 * S)
    await alert(store, change("pue", "dc-1", "resolved", T0 + 10 * MIN))
    await round_at(notifier, clock, T0 + 10 * MIN)
    assert [r.json()["status"] for r in http_receiver.requests(receiver_path)] == ["firing", "resolved"]
