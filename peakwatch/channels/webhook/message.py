"""The webhook's message: Alertmanager's webhook JSON (version 4), field for field, so the receivers
people already run behind Alertmanager take peakwatch's messages unchanged; what Alertmanager does not
have (repeat, escalation, the rendered text) goes under one ``peakwatch`` key that such receivers
ignore."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from peakwatch.channels.text import alert_url
from peakwatch.domain.instants import rfc3339
from peakwatch.domain.notifications import AlertView, Notification

ALERTMANAGER_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time``: Alertmanager's ``endsAt`` of an alert that has not ended."""


def alertmanager_payload(
    n: Notification, *, public_url: str = "", max_alerts: int = 0, text: str = ""
) -> dict[str, object]:
    """Alertmanager's webhook body (version 4) for ``n``: firing alerts first, then resolved, at most
    ``max_alerts`` of them (0: all) with ``truncatedAlerts`` counting the rest. ``commonLabels`` and
    ``commonAnnotations`` are computed over the alerts sent, as Alertmanager does after truncating."""
    listed = [("firing", a) for a in n.firing] + [("resolved", a) for a in n.resolved]
    truncated = 0
    if max_alerts > 0 and len(listed) > max_alerts:
        truncated = len(listed) - max_alerts
        listed = listed[:max_alerts]
    alerts = [_am_alert(status, a, n.escalation, public_url) for status, a in listed]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": _common(dict(a.labels) for _, a in listed),
        "commonAnnotations": _common(_annotations(a, n.escalation) for _, a in listed),
        "externalURL": public_url.rstrip("/"),
        "alerts": alerts,
        "peakwatch": {"repeat": n.repeat, "escalation": n.escalation, "text": text},
    }


def _annotations(alert: AlertView, escalation: int) -> dict[str, str]:
    # Annotations are strings in Alertmanager (map[string]string); the value keeps full precision.
    annotations = {"summary": alert.summary}
    if alert.value is not None:
        annotations["value"] = repr(alert.value)
    if alert.acknowledged_by:
        annotations["acknowledged_by"] = alert.acknowledged_by
    if escalation > 0:
        annotations["escalation"] = str(escalation)
    if alert.resolved_reason:
        annotations["resolved_reason"] = alert.resolved_reason
    return annotations


def _am_alert(status: str, alert: AlertView, escalation: int, public_url: str) -> dict[str, object]:
    ends = ALERTMANAGER_ZERO_TIME
    if status == "resolved" and alert.resolved_ms is not None:
        ends = rfc3339(alert.resolved_ms)
    return {
        "status": status,
        "labels": dict(alert.labels),
        "annotations": _annotations(alert, escalation),
        "startsAt": rfc3339(alert.fired_ms),
        "endsAt": ends,
        "generatorURL": alert_url(public_url, alert.id),
        "fingerprint": alert.fingerprint,
    }


def _common(maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has with the same value (empty for no maps)."""
    items: Sequence[Mapping[str, str]] = list(maps)
    if not items:
        return {}
    first, rest = items[0], items[1:]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
