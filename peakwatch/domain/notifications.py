"""The values the notifier works with: an alert as routing sees it, and one notification to one
channel.

Shared by the routing math (``peakwatch.domain.routing``), the channels' messages
(``peakwatch.channels``) and the notifier, so it holds data only. A notification goes to one channel
of one receiver (``peakwatch.notify_config.Receiver``): each channel is delivered, retried and logged
on its own, so a dead mail server does not hold back the WeCom message (Alertmanager keeps one
notification log per integration for the same reason).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Language = Literal["zh-CN", "en"]


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    """One alert instance (a row of ``alerts``) as routing needs it. Only ``firing`` and ``resolved``
    alerts are ever notified; a pending alert has not happened yet."""

    id: int
    fingerprint: str
    state: str
    """``firing`` or ``resolved`` (routing ignores any other state)."""
    labels: dict[str, str]
    """``alertname`` (the rule), ``site``, ``severity``, ``kpi`` or ``meter``, the rule's own labels and
    the site's registry labels: what matchers, ``group_by``, inhibition and silences look at."""
    summary: str
    value: float | None = None
    fired_ms: int
    resolved_ms: int | None = None
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    resolved_reason: str | None = None
    """Why it resolved when it is not simply recovery: ``restated`` (its windows were recomputed and no
    longer breach the rule)."""


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message for one channel of one receiver: a group's firing and newly resolved alerts."""

    receiver: str
    channel: str
    """The channel's id inside the receiver, ``"<receiver>/<index>:<type>"`` (``oncall/0:webhook``)."""
    group_key: str
    group_labels: dict[str, str]
    firing: tuple[AlertView, ...] = ()
    resolved: tuple[AlertView, ...] = ()
    escalation: int = 0
    """0: the route's own receiver; n: the n-th escalation step (unacknowledged for its ``after``)."""
    repeat: bool = False
    """Nothing changed since the last message: a reminder at ``repeat_interval``."""

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.firing else "resolved"
