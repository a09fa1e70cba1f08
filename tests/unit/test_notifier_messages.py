"""Notification messages (peakwatch.channels.text, peakwatch.channels.webhook.message): the zh-CN
and en text, Alertmanager's webhook JSON and byte-bounded truncation. Every expected value below is
written out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from peakwatch.channels.text import Message, format_value, local_time, render, truncate_utf8
from peakwatch.channels.webhook.message import alertmanager_payload
from peakwatch.domain.instants import rfc3339
from peakwatch.domain.notifications import AlertView, Notification

MIN = 60_000
T0 = int(datetime(2026, 11, 24, 2, 5, tzinfo=UTC).timestamp()) * 1000  # 10:05 in Shanghai
URL = "https://peakwatch.example.com/"

PUE_A = AlertView(
    id=17,
    fingerprint="a1b2c3d4e5f60718",
    state="firing",
    labels={"alertname": "pue_retrofit_line", "site": "dc-1", "severity": "critical", "kpi": "pue"},
    summary="PUE 1.62 at dc-1",
    value=1.6234567,
    fired_ms=T0,
    acknowledged_by="alice",
    acknowledged_ms=T0 + 2 * MIN,
)
PUE_B = AlertView(
    id=18,
    fingerprint="b1b2c3d4e5f60718",
    state="firing",
    labels={
        "alertname": "pue_retrofit_line",
        "site": "dc-1",
        "severity": "critical",
        "kpi": "pue",
        "hall": "B",
    },
    summary="PUE 1.71 at dc-1 hall B",
    value=1.71,
    fired_ms=T0 + 90_250,
)
PUE_C = AlertView(
    id=12,
    fingerprint="c1b2c3d4e5f60718",
    state="resolved",
    labels={
        "alertname": "pue_retrofit_line",
        "site": "dc-1",
        "severity": "warning",
        "kpi": "pue",
        "hall": "C",
    },
    summary="PUE 1.55 at dc-1 hall C",
    value=1.48,
    fired_ms=T0 - 60 * MIN,
    resolved_ms=T0 - 5 * MIN,
)
GROUP = {"site": "dc-1", "alertname": "pue_retrofit_line"}


def notification(
    firing: tuple[AlertView, ...] = (PUE_A, PUE_B),
    resolved: tuple[AlertView, ...] = (PUE_C,),
    *,
    repeat: bool = False,
    escalation: int = 0,
    group_labels: dict[str, str] | None = None,
) -> Notification:
    return Notification(
        receiver="oncall-dc",
        channel="oncall-dc/0:webhook",
        group_key='{}:{alertname="pue_retrofit_line", site="dc-1"}',
        group_labels=GROUP if group_labels is None else group_labels,
        firing=firing,
        resolved=resolved,
        repeat=repeat,
        escalation=escalation,
    )


EN_TEXT = """\
[FIRING:2] pue_retrofit_line dc-1

Firing (2)
1. PUE 1.62 at dc-1
   Severity: critical
   Site: dc-1
   Value: 1.6235
   Fired: 2026-11-24 10:05 CST
   Acknowledged by: alice (2026-11-24 10:07 CST)
   Link: https://peakwatch.example.com/api/v1/alerts/17
2. PUE 1.71 at dc-1 hall B
   Severity: critical
   Site: dc-1
   Value: 1.71
   Fired: 2026-11-24 10:06 CST
   Link: https://peakwatch.example.com/api/v1/alerts/18

Resolved (1)
1. PUE 1.55 at dc-1 hall C
   Severity: warning
   Site: dc-1
   Value: 1.48
   Fired: 2026-11-24 09:05 CST
   Resolved: 2026-11-24 10:00 CST
   Link: https://peakwatch.example.com/api/v1/alerts/12"""

EN_MARKDOWN = """\
### [FIRING:2] pue_retrofit_line dc-1

**Firing (2)**

**1. PUE 1.62 at dc-1**
- Severity: critical
- Site: dc-1
- Value: 1.6235
- Fired: 2026-11-24 10:05 CST
- Acknowledged by: alice (2026-11-24 10:07 CST)
- [Details](https://peakwatch.example.com/api/v1/alerts/17)

**2. PUE 1.71 at dc-1 hall B**
- Severity: critical
- Site: dc-1
- Value: 1.71
- Fired: 2026-11-24 10:06 CST
- [Details](https://peakwatch.example.com/api/v1/alerts/18)

**Resolved (1)**

**1. PUE 1.55 at dc-1 hall C**
- Severity: warning
- Site: dc-1
- Value: 1.48
- Fired: 2026-11-24 09:05 CST
- Resolved: 2026-11-24 10:00 CST
- [Details](https://peakwatch.example.com/api/v1/alerts/12)"""

ZH_TEXT = """\
【告警·2】pue_retrofit_line dc-1 · 重复提醒 · 升级（第1级）：未确认

告警中（2）
1. PUE 1.62 at dc-1
   级别：严重
   站点：dc-1
   数值：1.6235
   触发时间：2026-11-24 10:05 CST
   确认人：alice（2026-11-24 10:07 CST）
2. PUE 1.71 at dc-1 hall B
   级别：严重
   站点：dc-1
   数值：1.71
   触发时间：2026-11-24 10:06 CST

已恢复（1）
1. PUE 1.55 at dc-1 hall C
   级别：警告
   站点：dc-1
   数值：1.48
   触发时间：2026-11-24 09:05 CST
   恢复时间：2026-11-24 10:00 CST"""

ZH_MARKDOWN = """\
### 【告警·2】pue_retrofit_line dc-1 · 重复提醒 · 升级（第1级）：未确认

**告警中（2）**

**1. PUE 1.62 at dc-1**
- 级别：严重
- 站点：dc-1
- 数值：1.6235
- 触发时间：2026-11-24 10:05 CST
- 确认人：alice（2026-11-24 10:07 CST）

**2. PUE 1.71 at dc-1 hall B**
- 级别：严重
- 站点：dc-1
- 数值：1.71
- 触发时间：2026-11-24 10:06 CST

**已恢复（1）**

**1. PUE 1.55 at dc-1 hall C**
- 级别：警告
- 站点：dc-1
- 数值：1.48
- 触发时间：2026-11-24 09:05 CST
- 恢复时间：2026-11-24 10:00 CST"""


# -------------------------------------------------------------------------------------- rendering


def test_english_firing_message_with_links() -> None:
    message = render(notification(), "en", public_url=URL)
    assert message == Message(title="[FIRING:2] pue_retrofit_line dc-1", text=EN_TEXT, markdown=EN_MARKDOWN)


def test_chinese_reminder_of_an_escalation_without_public_url() -> None:
    message = render(notification(repeat=True, escalation=1), "zh-CN")
    assert message.title == "【告警·2】pue_retrofit_line dc-1 · 重复提醒 · 升级（第1级）：未确认"
    assert message.text == ZH_TEXT
    assert message.markdown == ZH_MARKDOWN


@pytest.mark.parametrize(
    ("language", "repeat", "escalation", "title"),
    [
        pytest.param("en", False, 0, "[RESOLVED] pue_retrofit_line dc-1", id="en"),
        pytest.param("zh-CN", False, 0, "【已恢复】pue_retrofit_line dc-1", id="zh"),
        pytest.param("en", True, 0, "[RESOLVED] pue_retrofit_line dc-1 (reminder)", id="en-repeat"),
        pytest.param(
            "en",
            True,
            2,
            "[RESOLVED] pue_retrofit_line dc-1 (reminder; escalated, level 2, not acknowledged)",
            id="en-repeat-escalated",
        ),
        pytest.param(
            "zh-CN", False, 3, "【已恢复】pue_retrofit_line dc-1 · 升级（第3级）：未确认", id="zh-escalated"
        ),
    ],
)
def test_resolved_titles(language: str, repeat: bool, escalation: int, title: str) -> None:
    n = notification(firing=(), repeat=repeat, escalation=escalation)
    assert n.status == "resolved"
    message = render(n, "en" if language == "en" else "zh-CN")
    assert message.title == title
    assert message.text.splitlines()[0] == title


def test_resolved_only_message_in_chinese() -> None:
    message = render(notification(firing=()), "zh-CN", timezone="UTC")
    assert message.text == (
        "【已恢复】pue_retrofit_line dc-1\n"
        "\n"
        "已恢复（1）\n"
        "1. PUE 1.55 at dc-1 hall C\n"
        "   级别：警告\n"
        "   站点：dc-1\n"
        "   数值：1.48\n"
        "   触发时间：2026-11-24 01:05 UTC\n"
        "   恢复时间：2026-11-24 02:00 UTC"
    )


@pytest.mark.parametrize(
    ("language", "line"),
    [
        (
            "en",
            "   Reason: restated: the recomputed windows (late or corrected data) no longer breach the rule",
        ),
        ("zh-CN", "   原因：数据重算：补到或更正的数据重新计算后，窗口不再触发该规则"),
    ],
)
def test_an_alert_resolved_by_a_restatement_says_why(language: str, line: str) -> None:
    restated = msgspec.structs.replace(PUE_C, resolved_reason="restated")
    message = render(notification(firing=(), resolved=(restated,)), language, timezone="UTC")  # type: ignore[arg-type]
    assert message.text.endswith("\n" + line)
    assert line.strip() in message.markdown
    payload = alertmanager_payload(notification(firing=(), resolved=(restated,)))
    assert payload["alerts"][0]["annotations"]["resolved_reason"] == "restated"  # type: ignore[index]


def test_unknown_severity_and_missing_fields_are_kept_as_they_are() -> None:
    bare = AlertView(
        id=5,
        fingerprint="ffff",
        state="firing",
        labels={"alertname": "meter_stale", "severity": "page"},
        summary="",
        fired_ms=T0,
    )
    message = render(notification(firing=(bare,), resolved=(), group_labels={}), "zh-CN")
    # No group labels: the receiver names the message; no summary: the rule name heads the alert.
    assert message.text == (
        "【告警·1】oncall-dc\n\n告警中（1）\n1. meter_stale\n   级别：page\n   触发时间：2026-11-24 10:05 CST"
    )


def test_title_puts_alertname_first_then_sorted_labels() -> None:
    labels = {"site": "dc-1", "hall": "B", "alertname": "pue"}
    assert render(notification(group_labels=labels), "en").title == "[FIRING:2] pue B dc-1"


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        pytest.param("Asia/Shanghai", "2026-11-24 10:05 CST", id="shanghai"),
        pytest.param("UTC", "2026-11-24 02:05 UTC", id="utc"),
        # Brazil has had no summer time since 2019; its zone abbreviation is only the offset.
        pytest.param("America/Sao_Paulo", "2026-11-23 23:05 -03:00", id="offset-only-abbreviation"),
        pytest.param("Asia/Kolkata", "2026-11-24 07:35 IST", id="half-hour"),
    ],
)
def test_local_time(timezone: str, expected: str) -> None:
    assert local_time(T0 + 59_999, ZoneInfo(timezone)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.6234567, "1.6235"),
        (1.5, "1.5"),
        (12345.0, "12345"),
        (0.58123, "0.5812"),
        (-0.00001, "0"),
        (0.0, "0"),
        (-2.25, "-2.25"),
        (float("inf"), "inf"),
    ],
)
def test_format_value(value: float, expected: str) -> None:
    assert format_value(value) == expected


# ------------------------------------------------------------------------------------- truncation


@pytest.mark.parametrize(
    ("text", "max_bytes", "expected"),
    [
        pytest.param("abc", 3, "abc", id="fits-exactly"),
        pytest.param("abcdef", 5, "ab…", id="ascii-cut"),
        # 告 and 警 are 3 bytes each: 5 bytes of room hold one of them and a partial one, which goes.
        pytest.param("告警告警", 8, "告…", id="cjk-partial-dropped"),
        pytest.param("告警告警", 9, "告警…", id="cjk-on-boundary"),
        pytest.param("告警告警", 12, "告警告警", id="cjk-fits"),
        pytest.param("🔥🔥", 7, "🔥…", id="four-byte-char"),
        pytest.param("abcdef", 2, "ab", id="no-room-for-ellipsis"),
        pytest.param("", 0, "", id="empty"),
    ],
)
def test_truncate_utf8(text: str, max_bytes: int, expected: str) -> None:
    assert truncate_utf8(text, max_bytes) == expected


def test_truncate_utf8_never_exceeds_the_limit_and_keeps_a_prefix() -> None:
    text = "PUE 告警 ✓ 🔥 dc-1 " * 5
    size = len(text.encode("utf-8"))
    for max_bytes in range(size + 2):
        cut = truncate_utf8(text, max_bytes)
        assert len(cut.encode("utf-8")) <= max_bytes
        assert text.startswith(cut.removesuffix("…"))
        assert (cut == text) == (max_bytes >= size)


def test_truncate_utf8_refuses_a_negative_limit() -> None:
    with pytest.raises(ValueError, match="negative"):
        truncate_utf8("x", -1)


# ------------------------------------------------------------------------------------ Alertmanager


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (T0, "2026-11-24T02:05:00Z"),
        (T0 + 90_250, "2026-11-24T02:06:30.250Z"),
    ],
)
def test_rfc3339(ms: int, expected: str) -> None:
    assert rfc3339(ms) == expected


def test_alertmanager_payload() -> None:
    payload = alertmanager_payload(notification(escalation=1), public_url=URL, text="the text")
    assert payload == {
        "version": "4",
        "groupKey": '{}:{alertname="pue_retrofit_line", site="dc-1"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall-dc",
        "groupLabels": {"site": "dc-1", "alertname": "pue_retrofit_line"},
        # severity differs (critical/warning) and hall is missing from one alert: not common
        "commonLabels": {"alertname": "pue_retrofit_line", "site": "dc-1", "kpi": "pue"},
        "commonAnnotations": {"escalation": "1"},
        "externalURL": "https://peakwatch.example.com",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "pue_retrofit_line",
                    "site": "dc-1",
                    "severity": "critical",
                    "kpi": "pue",
                },
                "annotations": {
                    "summary": "PUE 1.62 at dc-1",
                    "value": "1.6234567",
                    "acknowledged_by": "alice",
                    "escalation": "1",
                },
                "startsAt": "2026-11-24T02:05:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://peakwatch.example.com/api/v1/alerts/17",
                "fingerprint": "a1b2c3d4e5f60718",
            },
            {
                "status": "firing",
                "labels": {
                    "alertname": "pue_retrofit_line",
                    "site": "dc-1",
                    "severity": "critical",
                    "kpi": "pue",
                    "hall": "B",
                },
                "annotations": {"summary": "PUE 1.71 at dc-1 hall B", "value": "1.71", "escalation": "1"},
                "startsAt": "2026-11-24T02:06:30.250Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://peakwatch.example.com/api/v1/alerts/18",
                "fingerprint": "b1b2c3d4e5f60718",
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "pue_retrofit_line",
                    "site": "dc-1",
                    "severity": "warning",
                    "kpi": "pue",
                    "hall": "C",
                },
                "annotations": {"summary": "PUE 1.55 at dc-1 hall C", "value": "1.48", "escalation": "1"},
                "startsAt": "2026-11-24T01:05:00Z",
                "endsAt": "2026-11-24T02:00:00Z",
                "generatorURL": "https://peakwatch.example.com/api/v1/alerts/12",
                "fingerprint": "c1b2c3d4e5f60718",
            },
        ],
        "peakwatch": {"repeat": False, "escalation": 1, "text": "the text"},
    }


def test_alertmanager_payload_has_exactly_the_documented_fields() -> None:
    # https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
    payload = json.loads(json.dumps(alertmanager_payload(notification())))
    assert set(payload) - {"peakwatch"} == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    for alert in payload["alerts"]:
        assert set(alert) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
    assert payload["version"] == "4"
    assert isinstance(payload["truncatedAlerts"], int)


def test_alertmanager_payload_truncates_and_recomputes_common_labels() -> None:
    payload = alertmanager_payload(notification(), max_alerts=2)
    assert payload["truncatedAlerts"] == 1
    alerts = payload["alerts"]
    assert isinstance(alerts, list)
    assert [a["fingerprint"] for a in alerts] == ["a1b2c3d4e5f60718", "b1b2c3d4e5f60718"]
    # Only the two critical firing alerts are sent: severity is now common, hall still is not.
    assert payload["commonLabels"] == {
        "alertname": "pue_retrofit_line",
        "site": "dc-1",
        "severity": "critical",
        "kpi": "pue",
    }
    # No public address: no links anywhere.
    assert payload["externalURL"] == ""
    assert [a["generatorURL"] for a in alerts] == ["", ""]


def test_alertmanager_payload_of_a_resolved_reminder() -> None:
    payload = alertmanager_payload(notification(firing=(), repeat=True), max_alerts=5)
    assert payload["status"] == "resolved"
    assert payload["truncatedAlerts"] == 0
    assert payload["commonLabels"] == {
        "alertname": "pue_retrofit_line",
        "site": "dc-1",
        "severity": "warning",
        "kpi": "pue",
        "hall": "C",
    }
    assert payload["commonAnnotations"] == {"summary": "PUE 1.55 at dc-1 hall C", "value": "1.48"}
    assert payload["peakwatch"] == {"repeat": True, "escalation": 0, "text": ""}


def test_alertmanager_payload_without_alerts_has_no_common_labels() -> None:
    payload = alertmanager_payload(notification(firing=(), resolved=()))
    assert payload["alerts"] == []
    assert payload["commonLabels"] == {}
    assert payload["commonAnnotations"] == {}
