"""What keeps a firing alert quiet: silences (an operator's "not now"), maintenance windows (planned
work, recurring in local time) and inhibition (a site offline makes its KPI alerts consequences, not
news). A muted alert is listed in the plan with its reason and notified to no one."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from peakwatch.domain.instants import from_datetime, to_datetime
from peakwatch.domain.notifications import AlertView
from peakwatch.domain.routing.matchers import Matcher, matches_all

_DAY: Final = timedelta(days=1)
_MINUTES_PER_DAY: Final = 1440
_SCAN_DAYS: Final = 16
"""How many days ``next_change_ms`` looks at: a window that is not open all the time is open for at most
6 days in a row, so the state flips within this span of its first examined day."""


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str = ""
    comment: str = ""

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> bool:
        """A silence without matchers mutes nothing: an empty list must not silence the whole plant."""
        return bool(self.matchers) and self.active(now_ms) and matches_all(self.matchers, labels)


@functools.lru_cache(maxsize=256)
def _parse_date(text: str) -> date:
    return date.fromisoformat(text)


class MaintenanceWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A recurring mute in local time (planned work on the same evenings every week). A window that
    crosses midnight (``end_minute < start_minute``, e.g. 22:00-02:00) belongs to the day it starts: the
    weekday and date checks use that day, so "Monday 22:00-02:00" also mutes early Tuesday."""

    name: str
    matchers: tuple[Matcher, ...] = ()
    """Empty: every alert (a whole-plant shutdown)."""
    weekdays: tuple[int, ...] = ()
    """0 = Monday; empty: every day."""
    start_minute: int = 0
    end_minute: int = _MINUTES_PER_DAY
    timezone: str = "Asia/Shanghai"
    from_date: str | None = None
    """First local day (ISO, inclusive) a window may start on."""
    until_date: str | None = None
    """Last local day (ISO, inclusive) a window may start on."""

    def problem(self) -> str | None:
        """Why the window cannot be used as written (``None``: it can)."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"maintenance window {self.name!r}: unknown timezone {self.timezone!r}"
        if not 0 <= self.start_minute < _MINUTES_PER_DAY:
            return f"maintenance window {self.name!r}: start_minute must be in 0..1439"
        if not 0 <= self.end_minute <= _MINUTES_PER_DAY:
            return f"maintenance window {self.name!r}: end_minute must be in 0..1440"
        if self.start_minute == self.end_minute:
            return f"maintenance window {self.name!r}: start and end are equal (use 0..1440 for whole days)"
        if any(not 0 <= day <= 6 for day in self.weekdays):
            return f"maintenance window {self.name!r}: weekdays must be 0 (Monday) to 6 (Sunday)"
        for field, text in (("from_date", self.from_date), ("until_date", self.until_date)):
            if text is not None:
                try:
                    _parse_date(text)
                except ValueError:
                    return f"maintenance window {self.name!r}: {field} {text!r} is not an ISO date"
        first, last = self._from(), self._until()
        if first is not None and last is not None and first > last:
            return f"maintenance window {self.name!r}: from_date is after until_date"
        return None

    def contains(self, now_ms: int) -> bool:
        today = self._local_date(now_ms)
        return any(
            start <= now_ms < end
            for start, end in self._occurrences(today - _DAY, today + _DAY)  # yesterday's may cross midnight
        )

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> bool:
        return self.contains(now_ms) and matches_all(self.matchers, labels)

    def next_change_ms(self, now_ms: int) -> int | None:
        """The next instant after ``now_ms`` at which ``contains`` flips, from the local occurrences
        (no minute-by-minute search), or ``None`` if it never will."""
        today = self._local_date(now_ms)
        first = today - _DAY
        start_day = self._from()
        if start_day is not None and first < start_day:
            first = start_day
        if self._every_whole_day():
            # Open all day on every eligible day: only the date range can end or start it.
            if self.contains(now_ms):
                last = self._until()
                return None if last is None else self._instant(last + _DAY, 0)
            return self._instant(first, 0) if first > today and self._eligible(first) else None
        merged: list[tuple[int, int]] = []
        for start, end in self._occurrences(first, first + timedelta(days=_SCAN_DAYS)):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))  # 00:00-24:00 on consecutive days
            else:
                merged.append((start, end))
        for start, end in merged:
            if start > now_ms:
                return start
            if end > now_ms:
                return end
        return None

    def _every_whole_day(self) -> bool:
        return (
            self.start_minute == 0
            and self.end_minute == _MINUTES_PER_DAY
            and (not self.weekdays or set(range(7)) <= set(self.weekdays))
        )

    def _from(self) -> date | None:
        return None if self.from_date is None else _parse_date(self.from_date)

    def _until(self) -> date | None:
        return None if self.until_date is None else _parse_date(self.until_date)

    def _eligible(self, day: date) -> bool:
        first, last = self._from(), self._until()
        return (
            (not self.weekdays or day.weekday() in self.weekdays)
            and (first is None or day >= first)
            and (last is None or day <= last)
        )

    def _local_date(self, now_ms: int) -> date:
        return to_datetime(now_ms, ZoneInfo(self.timezone)).date()

    def _instant(self, day: date, minute: int) -> int:
        """Epoch ms of a local wall-clock time; minute 1440 is the next day's midnight."""
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(self.timezone))
        return from_datetime(local + timedelta(minutes=minute))

    def _occurrences(self, first: date, last: date) -> Iterator[tuple[int, int]]:
        """The window's [start, end) intervals for the days it starts on from ``first`` to ``last``."""
        day = first
        while day <= last:
            if self._eligible(day):
                end_day = day if self.end_minute > self.start_minute else day + _DAY
                yield self._instant(day, self.start_minute), self._instant(end_day, self.end_minute)
            day += _DAY


# ---------------------------------------------------------------------------------------- inhibition


class InhibitRule(msgspec.Struct, frozen=True, kw_only=True):
    """While a source alert fires, alerts matching the target side with the same ``equal`` labels are
    not notified: when a site is offline, its KPI alerts are consequences, not news."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


def inhibited_by(
    alert: AlertView, firing: Sequence[AlertView], rules: Sequence[InhibitRule]
) -> AlertView | None:
    """The first firing alert that inhibits ``alert``, or ``None``. Missing labels in ``equal`` compare
    equal (missing == missing), as in Alertmanager. As in Alertmanager too, an alert matching both sides
    of a rule is not inhibited through that rule by another alert that matches both sides, else two such
    alerts would silence each other and nobody would hear of either."""
    return Inhibitions(firing, rules).source_for(alert)


class Inhibitions:
    """Per inhibit rule, the firing alerts on its source side, indexed by their ``equal`` labels. Built
    once per plan, so judging every firing alert costs O(alerts x rules), not O(alerts^2): a fleet-wide
    outage with thousands of alerts firing must not stall the loop the notifier shares."""

    def __init__(self, firing: Sequence[AlertView], rules: Sequence[InhibitRule]) -> None:
        self._rules: list[tuple[InhibitRule, dict[tuple[str, ...], list[AlertView]]]] = []
        for rule in rules:
            index: dict[tuple[str, ...], list[AlertView]] = {}
            for source in firing:
                if source.state == "firing" and matches_all(rule.source_matchers, source.labels):
                    key = tuple(source.labels.get(name, "") for name in rule.equal)
                    index.setdefault(key, []).append(source)
            self._rules.append((rule, index))

    def source_for(self, alert: AlertView) -> AlertView | None:
        for rule, index in self._rules:
            if not matches_all(rule.target_matchers, alert.labels):
                continue
            both_sides = matches_all(rule.source_matchers, alert.labels)
            for source in index.get(tuple(alert.labels.get(name, "") for name in rule.equal), ()):
                if source.id == alert.id:
                    continue
                if both_sides and matches_all(rule.target_matchers, source.labels):
                    continue
                return source
        return None


def mute_reason(
    alert: AlertView,
    now_ms: int,
    inhibitions: Inhibitions,
    maintenance: Sequence[MaintenanceWindow],
    silences: Sequence[Silence],
) -> str | None:
    """Why ``alert`` is muted now (``None``: it is not); a silence is named first, as the most
    deliberate of the three."""
    for silence in silences:
        if silence.mutes(alert.labels, now_ms):
            return f"silenced by silence {silence.id}" + (f" ({silence.comment})" if silence.comment else "")
    for window in maintenance:
        if window.mutes(alert.labels, now_ms):
            return f"maintenance window {window.name}"
    source = inhibitions.source_for(alert)
    if source is not None:
        return f"inhibited by {_describe(source)}"
    return None


def _describe(alert: AlertView) -> str:
    name, site = alert.labels.get("alertname"), alert.labels.get("site")
    return f"{name}@{site}" if name and site else alert.fingerprint


def mute_changes(
    now_ms: int,
    firing: Sequence[AlertView],
    silences: Sequence[Silence],
    maintenance: Sequence[MaintenanceWindow],
) -> Iterator[int]:
    """The future instants at which what is muted may change, for the firing alerts: a silence that
    starts or ends later, a maintenance window opening or closing."""
    for silence in silences:
        if not silence.matchers or silence.ends_ms <= now_ms:
            continue
        if any(matches_all(silence.matchers, a.labels) for a in firing):
            yield silence.starts_ms if silence.starts_ms > now_ms else silence.ends_ms
    for window in maintenance:
        if any(matches_all(window.matchers, a.labels) for a in firing):
            change = window.next_change_ms(now_ms)
            if change is not None:
                yield change
