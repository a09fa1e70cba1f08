"""The ``notifications:`` section of the registry YAML: receivers and their channels, the routing tree,
inhibition rules and maintenance windows (docs/alerting.md has the reference and examples).

Everything is checked when the registry loads, so a typo in a matcher or a receiver name stops
``peakwatch up`` with the reason instead of losing an alert at 3 a.m. Secrets (SMTP passwords, robot
keys) need not sit in the file: any string may be ``${NAME}``, read from the environment at load
time; a name that is not set is an error.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

import msgspec

from peakwatch.channel_checks import channel_problem
from peakwatch.domain.notifications import Channel, Language, Receiver
from peakwatch.domain.routing import (
    Escalation,
    InhibitRule,
    MaintenanceWindow,
    Matcher,
    Route,
    RoutingConfig,
)
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import ConfigError


class _ReceiverDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    channels: list[Channel] = []
    """None: a receiver that drops what is routed to it (route the alerts nobody should hear of here)."""
    language: Language | None = None


class _EscalationDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    after: str | int
    receiver: str


class _RouteDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, rename={"continue_": "continue"}):
    receiver: str | None = None
    matchers: list[str] = []
    group_by: list[str] | None = None
    group_wait: str | int | None = None
    group_interval: str | int | None = None
    repeat_interval: str | int | None = None
    send_resolved: bool | None = None
    escalate: list[_EscalationDoc] | None = None
    continue_: bool = False
    routes: list[_RouteDoc] = []


class _InhibitDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str] = []


class _MaintenanceDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    matchers: list[str] = []
    weekdays: list[str | int] = []
    start: str = "00:00"
    end: str = "24:00"
    timezone: str = "Asia/Shanghai"
    from_date: str | None = None
    until_date: str | None = None


class _NotificationsDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    language: Language = "zh-CN"
    timezone: str = "Asia/Shanghai"
    receivers: list[_ReceiverDoc] = []
    route: _RouteDoc | None = None
    inhibit_rules: list[_InhibitDoc] = []
    maintenance: list[_MaintenanceDoc] = []


class Notifications(msgspec.Struct, frozen=True, kw_only=True):
    """The notifier's configuration, validated."""

    receivers: dict[str, Receiver]
    routing: RoutingConfig
    timezone: str = "Asia/Shanghai"
    """Times in message text are local to this zone."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_notifications(raw: Mapping[str, Any], source: str) -> Notifications | None:
    """``None`` when the section configures no route (alerts are then only shown, never sent)."""
    where = f"{source}: notifications"
    try:
        doc = msgspec.convert(_expand_env(raw, where), _NotificationsDoc)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    receivers: dict[str, Receiver] = {}
    for r in doc.receivers:
        if r.name in receivers:
            raise ConfigError(f"{where}: duplicate receiver {r.name!r}")
        for i, channel in enumerate(r.channels):
            if (problem := channel_problem(channel)) is not None:
                raise ConfigError(f"{where}: receiver {r.name!r} channel {i}: {problem}")
        receivers[r.name] = Receiver(
            name=r.name, channels=tuple(r.channels), language=r.language or doc.language
        )
    if doc.route is None:
        if receivers:
            raise ConfigError(f"{where}: receivers without a route: add route: {{receiver: <name>}}")
        return None
    route = _route(doc.route, f"{where}.route")
    routing = RoutingConfig(
        route=route,
        receivers={name: r.channel_ids() for name, r in receivers.items()},
        inhibit_rules=tuple(
            InhibitRule(
                source_matchers=_matchers(i.source_matchers, f"{where}.inhibit_rules"),
                target_matchers=_matchers(i.target_matchers, f"{where}.inhibit_rules"),
                equal=tuple(i.equal),
            )
            for i in doc.inhibit_rules
        ),
        maintenance=tuple(_maintenance(m, f"{where}.maintenance") for m in doc.maintenance),
    )
    problems = route.validate(receivers)
    if problems:
        raise ConfigError(f"{where}.route: " + "; ".join(problems))
    try:
        zoneinfo.ZoneInfo(doc.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown timezone {doc.timezone!r}") from exc
    return Notifications(receivers=receivers, routing=routing, timezone=doc.timezone)


def _expand_env(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: ${{{name}}} is not set in the environment")
            return os.environ[name]

        return _ENV.sub(lookup, value)
    if isinstance(value, Mapping):
        return {k: _expand_env(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, where) for v in value]
    return value


def _matchers(texts: list[str], where: str) -> tuple[Matcher, ...]:
    try:
        return tuple(Matcher.parse(t) for t in texts)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _duration(value: str | int | None) -> int | None:
    return None if value is None else parse_duration_ms(value)


def _route(doc: _RouteDoc, where: str) -> Route:
    return Route(
        receiver=doc.receiver,
        matchers=_matchers(doc.matchers, where),
        group_by=None if doc.group_by is None else tuple(doc.group_by),
        group_wait_ms=_duration(doc.group_wait),
        group_interval_ms=_duration(doc.group_interval),
        repeat_interval_ms=_duration(doc.repeat_interval),
        send_resolved=doc.send_resolved,
        escalate=None
        if doc.escalate is None
        else tuple(
            Escalation(after_ms=parse_duration_ms(e.after), receiver=e.receiver) for e in doc.escalate
        ),
        continue_=doc.continue_,
        routes=tuple(_route(child, f"{where}.routes[{i}]") for i, child in enumerate(doc.routes)),
    )


def _minute(text: str, where: str) -> int:
    match = _CLOCK.match(text.strip())
    if not match or int(match.group(2)) >= 60 or int(match.group(1)) * 60 + int(match.group(2)) > 1440:
        raise ConfigError(f"{where}: {text!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return int(match.group(1)) * 60 + int(match.group(2))


def _maintenance(doc: _MaintenanceDoc, where: str) -> MaintenanceWindow:
    where = f"{where} {doc.name}"
    weekdays: list[int] = []
    for day in doc.weekdays:
        number = _WEEKDAYS.get(day.strip().lower()[:3]) if isinstance(day, str) else day
        if number is None or not 0 <= number <= 6:
            raise ConfigError(f"{where}: weekday {day!r} is not mon..sun (or 0..6, 0 = Monday)")
        weekdays.append(number)
    window = MaintenanceWindow(
        name=doc.name,
        matchers=_matchers(doc.matchers, where),
        weekdays=tuple(weekdays),
        start_minute=_minute(doc.start, where),
        end_minute=_minute(doc.end, where),
        timezone=doc.timezone,
        from_date=doc.from_date,
        until_date=doc.until_date,
    )
    if (problem := window.problem()) is not None:
        raise ConfigError(f"{where}: {problem}")
    return window
