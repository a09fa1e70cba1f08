"""Who hears about which alert, when: Alertmanager's routing, grouping, silencing, inhibition and
notification-log logic as one pure function, ``plan``, made of the stages numbered below.

The notifier loads the firing alerts, the alerts listed in some log's ``firing`` or ``muted`` (their
resolutions may be owed), the silences and the persisted per-group logs, calls ``plan(now_ms, ...)``,
sends what it returns and persists the returned logs. All state lives in those logs, so a restart
neither repeats nor forgets a message, and every decision can be tested with hand-made vectors (no clock
is read: ``now_ms`` is a parameter; times are epoch ms).

How ``plan`` decides:

1. Only alerts in state ``firing`` or ``resolved`` count; ``firing_all`` are the firing ones.
2. A firing alert is *muted* (listed in ``Plan.muted`` with the reason, not notified) when an active
   silence mutes it, a maintenance window mutes it, or another firing alert inhibits it (sources inhibit
   even when they are silenced themselves). Resolved alerts are never muted: a resolution is reported
   exactly when the group's log says the alert was notified as firing. A log keeps the alerts it
   reported as firing that are muted since in its ``muted`` (they are not in the message's firing list
   and count for neither repeats nor escalation): their resolutions are still owed, and one that comes
   back unmuted while firing is news again, notified at the group's next tick like a new alert.
3. Every unmuted firing alert is routed (``routes_for``); each route match gives a group key
   ``k = group_key(match, labels)``. Level 0 of the group goes to the route's receiver; level ``i``
   (``escalate[i-1]``) goes to that escalation's receiver, and holds the alert once it has been firing
   unacknowledged for ``after_ms``, or while the level's log already lists it in ``firing`` or ``muted``
   (it stays until resolved).
   Each channel of the receiver has its own group ``(k, channel, level)`` and its own log
   (``log_id``), so a dead mail server does not hold back the WeCom message. Escalation levels have no
   group_wait: the point is to reach someone now.
4. A group's firing alerts ``F`` are the unmuted ones routed to it; its resolved alerts ``R`` the
   resolved alerts listed in its log's ``firing`` or ``muted``, its muted alerts ``M`` the muted firing
   alerts listed there. A message reports as resolved the alerts of ``R`` (with ``send_resolved``)
   except those whose fingerprint is among ``F``'s: an alert that fired again (a new id) before the
   message must not be closed, for a consumer keyed on fingerprints, by its old instance's resolution.
   The old id leaves the log all the same.
5. A log whose channel is no longer in the config (its receiver renamed or removed, the channel removed
   or moved to another index) is dropped: nothing can be sent to it. When a group of the same id exists,
   a new log replaces it.
6. Per group with firing alerts ``F``, resolved ``R``, muted ``M`` and log ``L``:

   * nothing in ``F``, ``R`` and ``M``: the log is dropped;
   * no log yet: a new log is created; it is sent at ``created_ms + group_wait`` (so at once when
     group_wait is 0) and persisted as ``touched`` while it waits;
   * a failed delivery (``retry_ms`` in the future) holds every send back until ``retry_ms``;
   * sent before: a firing alert not in ``L.firing`` (new, or back from ``muted``), or a resolution to
     report, is a change, sent at ``max(now, flushed_ms + group_interval)``; without a change, a
     reminder (``repeat=True``) goes out ``repeat_interval`` after the last message while some firing
     alert is unacknowledged. Without a message due, the log takes in what happened silently
     (``touched``): resolutions not reported leave it, alerts muted since move from ``firing`` to
     ``muted``; if nothing is left in either, it is dropped.

   A send's log says what the channel now knows (``sent_ms = flushed_ms = now``, ``firing`` = ``F``'s
   ids, ``muted`` = ``M``'s). When the log comes back ``finished`` (nothing firing or muted: the message
   reported the last resolutions) the notifier deletes it after a successful send instead of persisting
   it; when the send fails it persists ``after_failure(plan.before[log.id], now_ms)`` instead, so the
   same message is tried again after a backoff.
7. ``Plan.wake_ms`` is the earliest future instant at which ``plan`` can decide something new with the
   same inputs: a group_wait or group_interval end, a repeat, an escalation, a retry, the start or end
   of a silence, or a maintenance window opening or closing (for the ones that concern a firing alert).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from peakwatch.domain.notifications import AlertView, Notification
from peakwatch.domain.routing.group_log import GroupLog, log_id
from peakwatch.domain.routing.mutes import (
    Inhibitions,
    InhibitRule,
    MaintenanceWindow,
    Silence,
    mute_changes,
    mute_reason,
)
from peakwatch.domain.routing.routes import Route, RouteMatch, group_key, group_labels, route_at, routes_for


class RoutingConfig(msgspec.Struct, frozen=True, kw_only=True):
    route: Route
    receivers: dict[str, tuple[str, ...]]
    """Receiver name -> its channel ids (``Receiver.channel_ids()``)."""
    inhibit_rules: tuple[InhibitRule, ...] = ()
    maintenance: tuple[MaintenanceWindow, ...] = ()

    def problems(self) -> list[str]:
        """Everything wrong with the routing part of a config, for a load-time report."""
        problems = self.route.validate(self.receivers)
        problems.extend(p for w in self.maintenance if (p := w.problem()) is not None)
        return problems


class Muted(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: int
    reason: str


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    sends: list[tuple[Notification, GroupLog]]
    """Send each; on success persist its log (the log after the send; delete it instead if finished)."""
    touched: list[GroupLog]
    """Persist without sending (a new group waiting for group_wait, unreported resolutions removed)."""
    dropped: list[str]
    """Log ids to delete: nothing firing in the group and nothing left to resolve, or the log's channel
    is no longer in the config (nothing can be sent to it)."""
    muted: list[Muted]
    wake_ms: int | None
    """The earliest future instant at which plan() could return something new with the same inputs,
    the sends having succeeded (after a failure, plan again: the retry is then part of it)."""
    before: dict[str, GroupLog] = msgspec.field(default_factory=dict)
    """Per log id of each send: the log as it was before it, to give ``after_failure`` if it fails."""


def plan(
    now_ms: int,
    alerts: Sequence[AlertView],
    config: RoutingConfig,
    silences: Sequence[Silence],
    logs: Mapping[str, GroupLog],
) -> Plan:
    """What to send now, what to persist and when to look again (this module's docstring has the
    rules; the numbers below are its steps)."""
    draft = _Draft(now_ms)
    firing = sorted((a for a in alerts if a.state == "firing"), key=lambda a: a.id)  # 1
    live = {lid: log for lid, log in logs.items() if not _channel_gone(log, config)}  # 5
    groups = _assemble(firing, config, silences, live, draft)  # 2, 3
    resolved = {a.id: a for a in alerts if a.state == "resolved"}
    for lid in sorted(groups.keys() | logs.keys()):  # 4, 6
        view = _view(lid, groups.get(lid), live.get(lid), resolved, config.route, draft)
        if view is not None:
            _decide(view, draft)
    draft.wakes.extend(mute_changes(now_ms, firing, silences, config.maintenance))  # 7
    return draft.plan()


# ----------------------------------------------------------------------------------------- the stages


class _Draft:
    """The plan being written: each stage adds to it."""

    __slots__ = ("before", "dropped", "muted", "muted_ids", "now_ms", "sends", "touched", "wakes")

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.sends: list[tuple[Notification, GroupLog]] = []
        self.touched: list[GroupLog] = []
        self.dropped: list[str] = []
        self.muted: list[Muted] = []
        self.muted_ids: set[int] = set()
        self.before: dict[str, GroupLog] = {}
        self.wakes: list[int] = []

    def mute(self, alert: AlertView, reason: str) -> None:
        self.muted.append(Muted(alert_id=alert.id, reason=reason))
        self.muted_ids.add(alert.id)

    def plan(self) -> Plan:
        future = [w for w in self.wakes if w > self.now_ms]
        return Plan(
            sends=self.sends,
            touched=self.touched,
            dropped=self.dropped,
            muted=self.muted,
            wake_ms=min(future) if future else None,
            before=self.before,
        )


@dataclass(slots=True)
class _Group:
    """A (group key, channel, level) being assembled by ``plan``."""

    key: str
    channel: str
    level: int
    receiver: str
    labels: dict[str, str]
    match: RouteMatch
    firing: dict[int, AlertView] = field(default_factory=dict)


def _channel_gone(log: GroupLog, config: RoutingConfig) -> bool:
    """A receiver renamed or removed, or its channels edited: the log's channel can no longer be sent to,
    and keeping the log would have the notifier retry it forever."""
    return log.channel not in config.receivers.get(log.receiver, ())


def _acknowledged(alert: AlertView) -> bool:
    return alert.acknowledged_by is not None or alert.acknowledged_ms is not None


def _assemble(
    firing: Sequence[AlertView],
    config: RoutingConfig,
    silences: Sequence[Silence],
    logs: Mapping[str, GroupLog],
    draft: _Draft,
) -> dict[str, _Group]:
    """Steps 2 and 3: mute, route and escalate the firing alerts into groups (by log id); the muted
    alerts and the instants escalations become due go into the draft."""
    groups: dict[str, _Group] = {}
    inhibitions = Inhibitions(firing, config.inhibit_rules)
    for alert in firing:
        reason = mute_reason(alert, draft.now_ms, inhibitions, config.maintenance, silences)
        if reason is not None:
            draft.mute(alert, reason)
            continue
        for match in routes_for(config.route, alert.labels):
            _join(alert, match, config, logs, groups, draft)
    return groups


def _join(
    alert: AlertView,
    match: RouteMatch,
    config: RoutingConfig,
    logs: Mapping[str, GroupLog],
    groups: dict[str, _Group],
    draft: _Draft,
) -> None:
    """``alert`` joins its group on every channel of every level it has reached under ``match``."""
    key = group_key(match, alert.labels)
    labels = group_labels(match, alert.labels)
    receivers = [match.receiver, *(step.receiver for step in match.escalate)]
    for level, receiver in enumerate(receivers):
        for channel in config.receivers.get(receiver, ()):
            lid = log_id(key, channel, level)
            if level > 0 and not _escalated(alert, match.escalate[level - 1].after_ms, logs.get(lid), draft):
                continue
            group = groups.get(lid)
            if group is None:
                group = groups[lid] = _Group(key, channel, level, receiver, labels, match)
            group.firing[alert.id] = alert


def _escalated(alert: AlertView, after_ms: int, log: GroupLog | None, draft: _Draft) -> bool:
    """Whether an escalation level holds ``alert``: firing unacknowledged for the step's ``after_ms``, or
    already listed in the level's log (it stays until resolved). Not yet: wake when it will be."""
    eligible_ms = alert.fired_ms + after_ms
    listed = log is not None and alert.id in log.owed
    if not listed and (_acknowledged(alert) or draft.now_ms < eligible_ms):
        if not _acknowledged(alert):
            draft.wakes.append(eligible_ms)
        return False
    return True


class _View(msgspec.Struct, frozen=True, kw_only=True):
    """One group log id as step 6 sees it: the log (a new one when the group has none yet), the group's
    firing alerts, the owed resolutions and the owed alerts muted since, and the route's timings."""

    lid: str
    log: GroupLog
    is_new: bool
    firing: tuple[AlertView, ...]
    resolved: tuple[AlertView, ...]
    still_muted: tuple[int, ...]
    match: RouteMatch


def _view(
    lid: str,
    group: _Group | None,
    log: GroupLog | None,
    resolved_by_id: Mapping[int, AlertView],
    root: Route,
    draft: _Draft,
) -> _View | None:
    """Step 4 (and 5's drops): ``None`` when the log id has nothing left to decide."""
    if group is None and log is None:
        draft.dropped.append(lid)  # its channel is gone (a group's log under the same id replaces it)
        return None
    firing = tuple(sorted(group.firing.values(), key=lambda a: a.id)) if group is not None else ()
    owed = log.owed if log is not None else frozenset()
    resolved = tuple(resolved_by_id[i] for i in sorted(owed) if i in resolved_by_id)
    still_muted = tuple(sorted(owed & draft.muted_ids))
    is_new = log is None
    if log is None:
        if group is None or not firing:
            return None
        log = GroupLog(
            key=group.key,
            channel=group.channel,
            receiver=group.receiver,
            escalation=group.level,
            group_labels=group.labels,
            created_ms=draft.now_ms,
        )
    elif not firing and not resolved and not still_muted:
        draft.dropped.append(lid)
        return None
    match = group.match if group is not None else route_at(root, log.key.split(":", 1)[0])
    return _View(
        lid=lid,
        log=log,
        is_new=is_new,
        firing=firing,
        resolved=resolved,
        still_muted=still_muted,
        match=match,
    )


def _decide(view: _View, draft: _Draft) -> None:
    """Step 6 for one group: send now, wait (and wake), persist what changed silently, or drop."""
    log, match, now_ms = view.log, view.match, draft.now_ms
    firing_ids = tuple(a.id for a in view.firing)
    unacked = any(not _acknowledged(a) for a in view.firing)
    # An alert that fired again under the same fingerprint is in ``firing``: reporting the old
    # instance as resolved would close, for consumers keyed on fingerprints, what is firing.
    fingerprints = {a.fingerprint for a in view.firing}
    reported = (
        tuple(a for a in view.resolved if a.fingerprint not in fingerprints) if match.send_resolved else ()
    )

    due_ms: int | None = None  # when the pending message may go out (None: nothing to send)
    repeat = False
    update: GroupLog | None = None  # a change to persist without a message
    if log.sent_ms is None:
        if not view.firing:
            draft.dropped.append(view.lid)  # never told anyone, nothing firing any more
            return
        due_ms = log.created_ms + (match.group_wait_ms if log.escalation == 0 else 0)
    elif set(firing_ids) - set(log.firing) or reported:
        flushed = log.flushed_ms if log.flushed_ms is not None else log.sent_ms
        due_ms = max(now_ms, flushed + match.group_interval_ms)
    elif unacked and now_ms >= log.sent_ms + match.repeat_interval_ms:
        due_ms, repeat = now_ms, True
    else:
        if unacked:
            draft.wakes.append(log.sent_ms + match.repeat_interval_ms)
        # Nothing to say: the log takes in what happened silently. Unreported resolutions leave it;
        # alerts muted since the last message move to ``muted``, so that they are news again when
        # they come back unmuted.
        settled = msgspec.structs.replace(log, firing=firing_ids, muted=view.still_muted)
        if settled.finished:
            draft.dropped.append(view.lid)
            return
        if settled != log:
            update = settled

    if due_ms is not None and log.retry_ms is not None and log.retry_ms > due_ms:
        due_ms = log.retry_ms
    if due_ms is not None and due_ms <= now_ms:
        _send(view, reported, repeat, unacked, draft)
        return
    if due_ms is not None:
        draft.wakes.append(due_ms)
    if update is not None:
        draft.touched.append(update)
    elif view.is_new:
        draft.touched.append(log)


def _send(view: _View, reported: tuple[AlertView, ...], repeat: bool, unacked: bool, draft: _Draft) -> None:
    """The message going out now, and the log as it will be once it went through."""
    log, now_ms = view.log, draft.now_ms
    note = Notification(
        receiver=log.receiver,
        channel=log.channel,
        group_key=log.key,
        group_labels=dict(log.group_labels),
        firing=view.firing,
        resolved=reported,
        escalation=log.escalation,
        repeat=repeat,
    )
    sent = msgspec.structs.replace(
        log,
        sent_ms=now_ms,
        flushed_ms=now_ms,
        firing=tuple(a.id for a in view.firing),
        muted=view.still_muted,
        failures=0,
        retry_ms=None,
    )
    draft.sends.append((note, sent))
    draft.before[view.lid] = log
    if unacked:  # the reminder after this message (if it goes through; a failure sets retry_ms)
        draft.wakes.append(now_ms + view.match.repeat_interval_ms)
