"""The notifier against a real PostgreSQL, a real HTTP receiver and a real SMTP server (aiosmtpd).

Time is a test clock and rounds are driven one by one (``Notifier.round``), so repeat intervals of hours
are checked at their exact instants without waiting; everything else (the store, the deliveries, the
receivers) is real. The live loop (``run``: NOTIFY wake-ups, leadership) is covered at the end and by
tests/e2e/test_notifications.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from notifier.service import Notifier
from peakwatch.config import Registry
from peakwatch.domain.models import AlertChange, ProcessedBatch
from peakwatch.domain.routing import Matcher
from peakwatch.notify_config import Notifications
from peakwatch.store import Store
from tests.fixtures.receivers import HttpReceiver, Reply, SmtpReceiver

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S = 1_000
MIN = 60_000
HOUR = 3_600_000


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def notifications(yaml_section: str) -> Notifications:
    registry = Registry.from_text(f"sites: []\nnotifications:\n{yaml_section}", source="test")
    assert registry.notifications is not None
    return registry.notifications


def change(
    rule: str, site: str, state: str, at_ms: int, *, meter: str | None = None, value: float | None = 1.6
) -> AlertChange:
    labels = {"alertname": rule, "site": site, "severity": "critical"}
    if meter is not None:
        labels["meter"] = meter
    fp = f"{rule}@{site}" + (f"/{meter}" if meter else "")
    return AlertChange(
        fingerprint=fp,
        rule=rule,
        site_id=site,
        state=state,
        severity="critical",
        summary=f"{rule} {state} at {site}",
        value=value,
        started_ms=T0,
        at_ms=at_ms,
        labels=labels,
    )


async def alert(store: Store, *changes: AlertChange) -> list[int]:
    await store.write(ProcessedBatch(alerts=list(changes)))
    ids = []
    for c in changes:
        [record] = [a for a in await store.list_alerts() if a.fingerprint == c.fingerprint][:1]
        ids.append(record.id)
    return ids


async def round_at(notifier: Notifier, clock: Clock, ms: int) -> int | None:
    clock.ms = ms
    wake = await notifier.round()
    await notifier.delivered()
    return wake


@pytest.fixture
def mailbox() -> str:
    return f"oncall-{uuid.uuid4().hex[:8]}@example.com"


def oncall(
    receiver: HttpReceiver, path: str, smtp: SmtpReceiver, mailbox: str, **route: Any
) -> Notifications:
    timing = "\n".join(f"    {k}: {v}" for k, v in route.items())
    return notifications(
        f"""
  language: en
  receivers:
    - name: oncall
      channels:
        - {{type: webhook, url: "{receiver.url_for(path)}"}}
        - {{type: email, to: ["{mailbox}"], sender: peakwatch@example.com, host: {smtp.host},
           port: {smtp.port}, security: none}}
  route:
    receiver: oncall
{timing}
"""
    )


async def test_a_breach_notifies_once_repeats_and_acknowledgement_stops_the_repeats(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, smtp_server: SmtpReceiver, mailbox: str
) -> None:
    clock = Clock(T0)
    config = oncall(
        http_receiver,
        receiver_path,
        smtp_server,
        mailbox,
        group_wait="30s",
        group_interval="5m",
        repeat_interval="1h",
    )
    notifier = Notifier(store, config, clock=clock, public_url="https://pw.example")
    [alert_id] = await alert(store, change("pue_retrofit_line", "dc-1", "firing", T0))

    assert await round_at(notifier, clock, T0) == T0 + 30 * S  # group_wait
    assert http_receiver.requests(receiver_path) == []
    await round_at(notifier, clock, T0 + 30 * S)
    hook = (await http_receiver.next(receiver_path)).json()
    assert hook["version"] == "4"
    assert hook["status"] == "firing"
    assert hook["receiver"] == "oncall"
    assert hook["groupLabels"] == {"alertname": "pue_retrofit_line", "site": "dc-1"}
    assert [a["labels"]["alertname"] for a in hook["alerts"]] == ["pue_retrofit_line"]
    assert hook["alerts"][0]["generatorURL"] == f"https://pw.example/api/v1/alerts/{alert_id}"
    assert hook["peakwatch"]["repeat"] is False
    mail = await smtp_server.next(mailbox)
    assert "pue_retrofit_line" in str(mail.message["Subject"])

    # nothing new: no second message, however often the notifier looks
    for ms in (T0 + 31 * S, T0 + 10 * MIN, T0 + 30 * S + HOUR - 1):
        await round_at(notifier, clock, ms)
    assert len(http_receiver.requests(receiver_path)) == 1
    assert len(smtp_server.mails(mailbox)) == 1

    await round_at(notifier, clock, T0 + 30 * S + HOUR)  # repeat_interval
    repeat = (await http_receiver.next(receiver_path)).json()
    assert repeat["peakwatch"]["repeat"] is True
    await smtp_server.next(mailbox)

    assert await store.acknowledge_alert(alert_id, "alice", T0 + 90 * MIN) is not None
    for ms in (T0 + 30 * S + 2 * HOUR, T0 + 30 * S + 5 * HOUR):
        await round_at(notifier, clock, ms)
    assert len(http_receiver.requests(receiver_path)) == 2  # acknowledged: no more reminders

    await alert(store, change("pue_retrofit_line", "dc-1", "resolved", T0 + 6 * HOUR))
    await round_at(notifier, clock, T0 + 6 * HOUR)
    resolved = (await http_receiver.next(receiver_path)).json()
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["annotations"]["acknowledged_by"] == "alice"
    await smtp_server.next(mailbox)
    assert await store.notify.logs() == {}  # nothing left to report: the group's memory is gone

    log = await store.notify.deliveries(alert_id=alert_id)
    assert sorted((d.channel, d.status, d.outcome, d.repeat) for d in log) == [
        ("oncall/0:webhook", "firing", "sent", False),
        ("oncall/0:webhook", "firing", "sent", True),
        ("oncall/0:webhook", "resolved", "sent", False),
        ("oncall/1:email", "firing", "sent", False),
        ("oncall/1:email", "firing", "sent", True),
        ("oncall/1:email", "resolved", "sent", False),
    ]


async def test_a_silence_stops_the_repeats_and_its_end_brings_the_alert_back(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, smtp_server: SmtpReceiver, mailbox: str
) -> None:
    clock = Clock(T0)
    config = oncall(
        http_receiver,
        receiver_path,
        smtp_server,
        mailbox,
        group_wait="0s",
        group_interval="1m",
        repeat_interval="10m",
    )
    notifier = Notifier(store, config, clock=clock)
    await alert(store, change("pue_retrofit_line", "dc-1", "firing", T0))
    await round_at(notifier, clock, T0)
    await http_receiver.next(receiver_path)

    await store.notify.add_silence(
        [Matcher.parse('site="dc-1"')], T0 + MIN, T0 + HOUR, "bob", "cooling maintenance", T0 + MIN
    )
    for ms in (T0 + 10 * MIN, T0 + 20 * MIN, T0 + 59 * MIN):
        assert await round_at(notifier, clock, ms) == T0 + HOUR  # the silence's end is the next event
    assert len(http_receiver.requests(receiver_path)) == 1

    await round_at(notifier, clock, T0 + HOUR)  # still firing when the silence ends: notified again
    again = (await http_receiver.next(receiver_path)).json()
    assert again["status"] == "firing"
    assert again["peakwatch"]["repeat"] is False


async def test_restarting_the_notifier_neither_repeats_nor_forgets(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, smtp_server: SmtpReceiver, mailbox: str
) -> None:
    clock = Clock(T0)
    config = oncall(
        http_receiver,
        receiver_path,
        smtp_server,
        mailbox,
        group_wait="30s",
        group_interval="5m",
        repeat_interval="1h",
    )
    await alert(store, change("pue_retrofit_line", "dc-1", "firing", T0))
    await round_at(Notifier(store, config, clock=clock), clock, T0)  # waits for group_wait, then "crashes"

    second = Notifier(store, config, clock=clock)
    await second.take_over()  # as run() does when it starts leading
    await round_at(second, clock, T0 + 29 * S)
    assert http_receiver.requests(receiver_path) == []  # the group_wait timer survived, still running
    await round_at(second, clock, T0 + 30 * S)
    await http_receiver.next(receiver_path)

    third = Notifier(store, config, clock=clock)
    await third.take_over()
    await round_at(third, clock, T0 + 31 * S)
    await round_at(third, clock, T0 + 30 * S + HOUR - 1)
    assert len(http_receiver.requests(receiver_path)) == 1  # no duplicate after the restart
    await round_at(third, clock, T0 + 30 * S + HOUR)
    assert (await http_receiver.next(receiver_path)).json()["peakwatch"]["repeat"] is True


async def test_an_offline_site_inhibits_its_meter_and_kpi_alerts_only(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    clock = Clock(T0)
    config = notifications(
        f"""
  receivers:
    - name: oncall
      channels: [{{type: webhook, url: "{http_receiver.url_for(receiver_path)}"}}]
  route: {{receiver: oncall, group_by: ["..."], group_wait: 0s}}
  inhibit_rules:
    - source_matchers: ['alertname="site_offline"']
      target_matchers: ['alertname!="site_offline"']
      equal: [site]
"""
    )
    notifier = Notifier(store, config, clock=clock)
    await alert(
        store,
        change("site_offline", "dc-1", "firing", T0),
        change("meter_silent", "dc-1", "firing", T0, meter="it"),
        change("pue_retrofit_line", "dc-1", "firing", T0),
        change("pue_retrofit_line", "dc-2", "firing", T0),
    )
    await round_at(notifier, clock, T0)
    sent = sorted(
        (a["labels"]["alertname"], a["labels"]["site"])
        for r in http_receiver.requests(receiver_path)
        for a in r.json()["alerts"]
    )
    assert sent == [("pue_retrofit_line", "dc-2"), ("site_offline", "dc-1")]


async def test_an_unacknowledged_alert_escalates_once_and_an_acknowledged_one_never(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, smtp_server: SmtpReceiver
) -> None:
    clock = Clock(T0)
    manager = f"manager-{uuid.uuid4().hex[:8]}@example.com"
    config = notifications(
        f"""
  receivers:
    - name: oncall
      channels: [{{type: webhook, url: "{http_receiver.url_for(receiver_path)}"}}]
    - name: duty-manager
      language: zh-CN
      channels:
        - {{type: email, to: ["{manager}"], sender: peakwatch@example.com, host: {smtp_server.host},
           port: {smtp_server.port}, security: none}}
  route:
    receiver: oncall
    group_by: ["..."]
    group_wait: 0s
    escalate:
      - {{after: 15m, receiver: duty-manager}}
"""
    )
    notifier = Notifier(store, config, clock=clock)
    left_alone, taken_on = await alert(
        store,
        change("pue_retrofit_line", "dc-1", "firing", T0),
        change("pue_retrofit_line", "dc-2", "firing", T0),
    )
    await round_at(notifier, clock, T0)
    assert len(http_receiver.requests(receiver_path)) == 2
    await store.acknowledge_alert(taken_on, "alice", T0 + 5 * MIN)
    assert await round_at(notifier, clock, T0 + 5 * MIN) == T0 + 15 * MIN  # the escalation is the next event
    await round_at(notifier, clock, T0 + 15 * MIN)
    mail = await smtp_server.next(manager)
    assert "dc-1" in mail.message.get_content()
    assert "升级" in str(mail.message["Subject"]) + mail.message.get_content()
    for ms in (T0 + 16 * MIN, T0 + 30 * MIN):
        await round_at(notifier, clock, ms)
    assert [m.message.get_content().count("dc-2") for m in smtp_server.mails(manager)] == [0]
    log = await store.notify.deliveries(alert_id=left_alone)
    assert sorted(d.escalation for d in log) == [0, 1]


async def test_a_failed_delivery_is_logged_and_retried_after_a_backoff(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    clock = Clock(T0)
    config = notifications(
        f"""
  receivers:
    - name: oncall
      channels: [{{type: webhook, url: "{http_receiver.url_for(receiver_path)}"}}]
  route: {{receiver: oncall, group_wait: 0s}}
"""
    )
    notifier = Notifier(store, config, clock=clock)
    http_receiver.reply(receiver_path, Reply(status=503))
    [alert_id] = await alert(store, change("pue_retrofit_line", "dc-1", "firing", T0))
    await round_at(notifier, clock, T0)
    await http_receiver.next(receiver_path)
    [failed] = await store.notify.deliveries(alert_id=alert_id)
    assert (failed.outcome, failed.attempt) == ("failed", 1)
    assert "503" in failed.detail
    assert await round_at(notifier, clock, T0 + 500) == T0 + S  # backoff 1 s
    assert len(http_receiver.requests(receiver_path)) == 1
    await round_at(notifier, clock, T0 + S)
    await http_receiver.next(receiver_path)
    sent, _ = await store.notify.deliveries(alert_id=alert_id)
    assert (sent.outcome, sent.attempt) == ("sent", 2)


async def test_the_running_notifier_wakes_on_the_commit_and_only_one_leads(
    store: Store, http_receiver: HttpReceiver, receiver_path: str
) -> None:
    config = notifications(
        f"""
  receivers:
    - name: oncall
      channels: [{{type: webhook, url: "{http_receiver.url_for(receiver_path)}"}}]
  route: {{receiver: oncall, group_wait: 0s}}
"""
    )
    first = Notifier(store, config, poll_ms=60_000, standby_retry_s=0.05)
    second = Notifier(store, config, poll_ms=60_000, standby_retry_s=0.05)
    tasks = [asyncio.create_task(n.run()) for n in (first, second)]
    try:
        async with asyncio.timeout(10):
            await asyncio.wait(
                [asyncio.create_task(n.ready.wait()) for n in (first, second)],
                return_when=asyncio.FIRST_COMPLETED,
            )
        leader, standby = (first, second) if first.leading else (second, first)
        assert not standby.leading
        # the poll is a minute away: only the NOTIFY of the commit can bring this message quickly
        await alert(store, change("pue_retrofit_line", "dc-9", "firing", 0))
        request = await http_receiver.next(receiver_path, timeout=5)
        assert request.json()["alerts"][0]["labels"]["site"] == "dc-9"

        leader.stop()  # the standby takes over
        async with asyncio.timeout(10):
            await standby.ready.wait()
    finally:
        for n in (first, second):
            n.stop()
        await asyncio.gather(*tasks)
    assert len(http_receiver.requests(receiver_path)) == 1
