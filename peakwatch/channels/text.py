"""What a notification says to people: the title, plain text and markdown every channel shows, in
Chinese or English.

No I/O: each channel's ``message.py`` decides which form it sends and how many bytes its service
takes. The text is built from one small phrase table per language, so a new line in the message is
written once and exists in both languages (the two tables are parallel declarations, not a repeat).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from peakwatch.domain.instants import to_datetime
from peakwatch.domain.notifications import AlertView, Language, Notification
from peakwatch.domain.rules import RESTATED

__all__ = ["Message", "alert_url", "format_value", "local_time", "render", "truncate_utf8"]

ELLIPSIS: Final = "…"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    """One line: a mail subject, a chat card's title."""
    text: str
    """Plain text starting with the title (mail, Feishu, Slack, apprise show nothing else)."""
    markdown: str
    """The same in the markdown subset WeCom and DingTalk robots render (headings, bold, lists, links)."""


class _Phrases(msgspec.Struct, frozen=True, kw_only=True):
    firing_title: str
    resolved_title: str
    marks: str
    """How the reminder/escalation marks follow the title; ``{}``: the marks joined by ``mark_sep``."""
    mark_sep: str
    reminder: str
    escalated: str
    firing_section: str
    resolved_section: str
    colon: str
    severity: str
    site: str
    value: str
    fired: str
    resolved: str
    acknowledged: str
    acknowledged_at: str
    link: str
    details: str
    severities: dict[str, str]
    reason: str
    reasons: dict[str, str]
    """Why an alert resolved (``AlertView.resolved_reason``), worded for the reader."""


_PHRASES: Final[dict[Language, _Phrases]] = {
    "en": _Phrases(
        firing_title="[FIRING:{count}] ",
        resolved_title="[RESOLVED] ",
        marks=" ({})",
        mark_sep="; ",
        reminder="reminder",
        escalated="escalated, level {level}, not acknowledged",
        firing_section="Firing ({count})",
        resolved_section="Resolved ({count})",
        colon=": ",
        severity="Severity",
        site="Site",
        value="Value",
        fired="Fired",
        resolved="Resolved",
        acknowledged="Acknowledged by",
        acknowledged_at="{who} ({when})",
        link="Link",
        details="Details",
        severities={},
        reason="Reason",
        reasons={
            RESTATED: "restated: the recomputed windows (late or corrected data) no longer breach the rule"
        },
    ),
    "zh-CN": _Phrases(
        firing_title="【告警·{count}】",
        resolved_title="【已恢复】",
        marks=" · {}",
        mark_sep=" · ",
        reminder="重复提醒",
        escalated="升级（第{level}级）：未确认",
        firing_section="告警中（{count}）",
        resolved_section="已恢复（{count}）",
        colon="：",
        severity="级别",
        site="站点",
        value="数值",
        fired="触发时间",
        resolved="恢复时间",
        acknowledged="确认人",
        acknowledged_at="{who}（{when}）",
        link="链接",
        details="详情",
        severities={"critical": "严重", "warning": "警告", "info": "提示"},
        reason="原因",
        reasons={RESTATED: "数据重算：补到或更正的数据重新计算后，窗口不再触发该规则"},
    ),
}


def render(
    n: Notification, language: Language, *, timezone: str = "Asia/Shanghai", public_url: str = ""
) -> Message:
    """The human message for ``n``: its firing alerts, then its resolved ones, times in ``timezone``
    (on-call staff read local time; the machine payload carries UTC)."""
    words = _PHRASES[language]
    zone = ZoneInfo(timezone)
    title = _title(n, words)
    text_lines = [title]
    md_lines = [f"### {title}"]
    sections = (
        (words.firing_section, n.firing),
        (words.resolved_section, n.resolved),
    )
    for heading, alerts in sections:
        if not alerts:
            continue
        section = heading.format(count=len(alerts))
        text_lines += ["", section]
        md_lines += ["", f"**{section}**"]
        for number, alert in enumerate(alerts, start=1):
            fields = _fields(alert, words, zone)
            url = alert_url(public_url, alert.id)
            text_lines.append(f"{number}. {_headline(alert)}")
            text_lines += [f"   {label}{words.colon}{value}" for label, value in fields]
            md_lines += ["", f"**{number}. {_headline(alert)}**"]
            md_lines += [f"- {label}{words.colon}{value}" for label, value in fields]
            if url:
                text_lines.append(f"   {words.link}{words.colon}{url}")
                md_lines.append(f"- [{words.details}]({url})")
    return Message(title=title, text="\n".join(text_lines), markdown="\n".join(md_lines))


def _title(n: Notification, words: _Phrases) -> str:
    # Alertmanager's default title: status, firing count, the group label values with alertname first.
    status = words.firing_title.format(count=len(n.firing)) if n.firing else words.resolved_title
    names = " ".join(_alertname_first(n.group_labels)) or n.receiver
    marks = []
    if n.repeat:
        marks.append(words.reminder)
    if n.escalation > 0:
        marks.append(words.escalated.format(level=n.escalation))
    suffix = words.marks.format(words.mark_sep.join(marks)) if marks else ""
    return f"{status}{names}{suffix}"


def _alertname_first(labels: Mapping[str, str]) -> list[str]:
    keys = sorted(labels, key=lambda k: (k != "alertname", k))
    return [labels[k] for k in keys]


def _headline(alert: AlertView) -> str:
    return alert.summary or alert.labels.get("alertname", "") or alert.fingerprint


def _fields(alert: AlertView, words: _Phrases, zone: ZoneInfo) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    severity = alert.labels.get("severity")
    if severity:
        fields.append((words.severity, words.severities.get(severity, severity)))
    site = alert.labels.get("site")
    if site:
        fields.append((words.site, site))
    if alert.value is not None:
        fields.append((words.value, format_value(alert.value)))
    fields.append((words.fired, local_time(alert.fired_ms, zone)))
    if alert.resolved_ms is not None:
        fields.append((words.resolved, local_time(alert.resolved_ms, zone)))
    if alert.resolved_reason:
        fields.append((words.reason, words.reasons.get(alert.resolved_reason, alert.resolved_reason)))
    if alert.acknowledged_by:
        who = alert.acknowledged_by
        if alert.acknowledged_ms is not None:
            who = words.acknowledged_at.format(who=who, when=local_time(alert.acknowledged_ms, zone))
        fields.append((words.acknowledged, who))
    return fields


def format_value(value: float) -> str:
    """At most four decimals and no trailing zeros: ``1.6234`` for a PUE, ``12345.6`` for kWh; a
    float's full repr is noise in a chat message (the JSON payload keeps it)."""
    text = f"{value:.4f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def local_time(ms: int, zone: ZoneInfo) -> str:
    """``2026-11-24 10:05 CST``; zones whose abbreviation is only an offset (``-03``) get ``-03:00``."""
    moment = to_datetime(ms // 1000 * 1000, zone)
    name = moment.tzname() or ""
    if not name or name[0] in "+-":
        offset = moment.strftime("%z")
        name = f"{offset[:3]}:{offset[3:]}"
    return f"{moment:%Y-%m-%d %H:%M} {name}"


def alert_url(public_url: str, alert_id: int) -> str:
    """The alert in peakwatch's API (``""`` without a public address: no dead links in messages)."""
    return f"{public_url.rstrip('/')}/api/v1/alerts/{alert_id}" if public_url else ""


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` of UTF-8, cut at a character boundary and ending in ``…`` when
    cut. Robot APIs count bytes, not characters, and refuse (not shorten) a message that is too long."""
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(ELLIPSIS.encode("utf-8"))
    if room < 0:
        return data[:max_bytes].decode("utf-8", errors="ignore")
    # A cut inside a multi-byte character leaves an incomplete tail, which "ignore" drops.
    return data[:room].decode("utf-8", errors="ignore") + ELLIPSIS
