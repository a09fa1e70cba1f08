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
from typing import Any, Final

import msgspec

from peakwatch.channels import CHANNELS, Channel, channel_problem, channel_tag
from peakwatch.config_problems import Problems, convert, items, named
from peakwatch.domain.notifications import Language
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


class Receiver(msgspec.Struct, frozen=True, kw_only=True):
    """A name the routing tree sends to (``oncall-dc``) and the channels it is made of (a webhook, an
    e-mail list, a WeCom bot ...)."""

    name: str
    channels: tuple[Channel, ...]
    language: Language = "zh-CN"
    """Language of the message text (the webhook JSON carries both the labels and this text)."""

    def channel_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.name}/{i}:{channel_tag(c)}" for i, c in enumerate(self.channels))


class _ReceiverDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    channels: list[Any] = []
    """None: a receiver that drops what is routed to it (route the alerts nobody should hear of here).
    Never decoded here (``parse_notifications`` skips it): each entry is checked on its own by
    ``_channel``, so one wrong channel is named and the others still are checked."""
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

    def secrets(self) -> list[str]:
        """Every channel's credentials (tokens, passwords, robot keys, hook addresses): what
        ``peakwatch.redaction.remember_secret`` must mask wherever they might be shown."""
        channels = [channel for receiver in self.receivers.values() for channel in receiver.channels]
        return [secret for channel in channels for secret in channel.secrets()]


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})\Z")


def parse_notifications(raw: Mapping[str, Any]) -> Notifications | None:
    """``None`` when the section configures no route (alerts are then only shown, never sent). Every
    problem of the section is reported at once: one ``ConfigError`` whose ``problems`` name the receiver,
    route or maintenance window each is in."""
    problems = Problems("")
    expanded = _expand_env(raw, problems)
    doc = convert(expanded, _NotificationsDoc, "", problems, skip=_LISTS)
    receivers: dict[str, Receiver] = {}
    for i, raw_receiver in items(expanded, "receivers", "", problems):
        where = named("receiver", raw_receiver, "name", i, quote=True)
        r = convert(raw_receiver, _ReceiverDoc, where, problems, skip=_CHANNELS)
        if r is None:
            continue
        if r.name in receivers:
            problems.add(where, "defined twice")
        channels = [
            channel
            for n, raw_channel in items(raw_receiver, "channels", where, problems)
            if (channel := _channel(raw_channel, f"{where} channel {n}", problems)) is not None
        ]
        language = r.language or (doc.language if doc is not None else "zh-CN")
        # a receiver with a wrong channel still exists: the route naming it is not wrong too
        receivers[r.name] = Receiver(name=r.name, channels=tuple(channels), language=language)
    inhibit_rules = [
        _inhibit_rule(doc_i, f"inhibit rule #{i + 1}", problems)
        for i, raw_i in items(expanded, "inhibit_rules", "", problems)
        if (doc_i := convert(raw_i, _InhibitDoc, f"inhibit rule #{i + 1}", problems)) is not None
    ]
    maintenance: list[MaintenanceWindow] = []
    for i, raw_m in items(expanded, "maintenance", "", problems):
        where = named("maintenance", raw_m, "name", i, quote=True)
        if (doc_m := convert(raw_m, _MaintenanceDoc, where, problems)) is not None:
            with problems.at(where):
                maintenance.append(_maintenance(doc_m))
    if doc is None:
        problems.raise_any()
        return None
    try:
        zoneinfo.ZoneInfo(doc.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.add("", f"unknown timezone {doc.timezone!r}")
    if doc.route is None:
        if receivers:
            problems.add("", "receivers without a route: add route: {receiver: <name>}")
        problems.raise_any()
        return None
    route: Route | None = None
    with problems.at(""):
        route = _route(doc.route, "route")
        for problem in route.validate(receivers):
            problems.add("route", problem)
    problems.raise_any()
    assert route is not None
    routing = RoutingConfig(
        route=route,
        receivers={name: r.channel_ids() for name, r in receivers.items()},
        inhibit_rules=tuple(rule for rule in inhibit_rules if rule is not None),
        maintenance=tuple(maintenance),
    )
    return Notifications(receivers=receivers, routing=routing, timezone=doc.timezone)


_LISTS = frozenset({"receivers", "inhibit_rules", "maintenance"})
_CHANNELS = frozenset({"channels"})
_CHANNEL_TYPES: Final = {str(row.config.__struct_config__.tag): row.config for row in CHANNELS}
"""Each channel's struct by the `type:` it is written with (`webhook`), in the table's order."""


def _channel(raw: Any, where: str, problems: Problems) -> Channel | None:
    """One ``channels:`` entry as its channel's struct, each wrong field named (a typo such as
    ``sceret:`` is an error, not a silently unsigned robot), then the channel's own check."""
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    config = _CHANNEL_TYPES.get(kind) if isinstance(kind, str) else None
    if config is None:
        known = ", ".join(_CHANNEL_TYPES)
        what = "type is missing" if kind is None else f"unknown type {kind!r}"
        problems.add(where, f"{what}; one of: {known}")
        return None
    channel: Channel | None = convert({k: v for k, v in raw.items() if k != "type"}, config, where, problems)
    if channel is not None and (problem := channel_problem(channel)) is not None:
        problems.add(where, problem)
    return channel


def _inhibit_rule(doc: _InhibitDoc, where: str, problems: Problems) -> InhibitRule | None:
    with problems.at(where):
        return InhibitRule(
            source_matchers=_matchers(doc.source_matchers, "source_matchers"),
            target_matchers=_matchers(doc.target_matchers, "target_matchers"),
            equal=tuple(doc.equal),
        )
    return None


def _expand_env(value: Any, problems: Problems) -> Any:
    """``${NAME}`` replaced by the environment's value; each name that is not set is a problem."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.add("", f"${{{name}}} is not set in the environment")
                return ""
            return os.environ[name]

        return _ENV.sub(lookup, value)
    if isinstance(value, Mapping):
        return {k: _expand_env(v, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, problems) for v in value]
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


def _maintenance(doc: _MaintenanceDoc) -> MaintenanceWindow:
    weekdays: list[int] = []
    for day in doc.weekdays:
        number = _WEEKDAYS.get(day.strip().lower()[:3]) if isinstance(day, str) else day
        if number is None or not 0 <= number <= 6:
            raise ConfigError(f"weekday {day!r} is not mon..sun (or 0..6, 0 = Monday)")
        weekdays.append(number)
    window = MaintenanceWindow(
        name=doc.name,
        matchers=_matchers(doc.matchers, "matchers"),
        weekdays=tuple(weekdays),
        start_minute=_minute(doc.start, "start"),
        end_minute=_minute(doc.end, "end"),
        timezone=doc.timezone,
        from_date=doc.from_date,
        until_date=doc.until_date,
    )
    if (problem := window.problem()) is not None:
        raise ConfigError(f"{problem}")
    return window
