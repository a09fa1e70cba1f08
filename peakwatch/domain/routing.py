"""Who hears about which alert, when: Alertmanager's routing, grouping, silencing, inhibition and
notification-log logic as ONE pure function, ``plan``.

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

import enum
import functools
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import re2  # type: ignore[import-untyped]

from peakwatch.domain.instants import from_datetime, to_datetime
from peakwatch.domain.notifications import AlertView, Notification

DEFAULT_GROUP_BY: Final[tuple[str, ...]] = ("alertname", "site")
DEFAULT_GROUP_WAIT_MS: Final = 30_000
DEFAULT_GROUP_INTERVAL_MS: Final = 300_000
DEFAULT_REPEAT_INTERVAL_MS: Final = 14_400_000
ALL_LABELS: Final = "..."
"""``group_by: ["..."]``: group by every label, i.e. one group per alert (as in Alertmanager)."""

_T = TypeVar("_T")
_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER_TEXT: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", re.DOTALL)
_DAY: Final = timedelta(days=1)
_MINUTES_PER_DAY: Final = 1440
_SCAN_DAYS: Final = 16
"""How many days ``next_change_ms`` looks at: a window that is not open all the time is open for at most
6 days in a row, so the state flips within this span of its first examined day."""

# ------------------------------------------------------------------------------------------- matchers


class MatchOp(enum.StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_EQUALITY: Final = frozenset({MatchOp.EQ, MatchOp.NE})


MAX_REGEX_LENGTH: Final = 256
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported as a ValueError, not on stderr


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """RE2, as Alertmanager uses: matching takes time linear in the label's length whatever the
    pattern, so a silence written by an operator (``severity=~"(.|.)*!"``) cannot stall the notifier
    (Python's backtracking ``re`` would, for minutes). Matchers are frozen Structs, so the compiled
    regex is cached here rather than on the matcher."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _unquote(raw: str, text: str) -> str:
    """Alertmanager's quoting: ``\\"``, ``\\\\`` and ``\\n`` are escapes; any other backslash stays, so
    ``site=~"dc-\\d+"`` means the regex ``dc-\\d+`` without doubling every backslash."""
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            following = raw[i + 1]
            out.append({'"': '"', "\\": "\\", "n": "\n"}.get(following, "\\" + following))
            i += 2
            continue
        if char == '"':
            if i != len(raw) - 1:
                raise ValueError(f"invalid matcher {text!r}: text after the closing quote")
            return "".join(out)
        out.append(char)
        i += 1
    raise ValueError(f"invalid matcher {text!r}: the value's quote is not closed")


class Matcher(msgspec.Struct, frozen=True, kw_only=True):
    """One label condition, as in Alertmanager: a missing label is the empty string, and regexes are
    anchored at both ends (``site=~dc`` does not match ``dc-1``), so a matcher never matches by accident
    on a substring."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        # Checked on construction (and so on decoding a config) so that matches() can never raise.
        if not _LABEL_NAME.fullmatch(self.name):
            raise ValueError(f"invalid label name {self.name!r} (expected [A-Za-z_][A-Za-z0-9_]*)")
        if self.op in (MatchOp.RE, MatchOp.NRE):
            if len(self.value) > MAX_REGEX_LENGTH:
                raise ValueError(f"regular expression longer than {MAX_REGEX_LENGTH} characters")
            try:
                _compiled(self.value)
            except re2.error as error:
                reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
                raise ValueError(f"invalid regular expression {self.value!r}: {reason}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        found = _compiled(self.value).fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``; the value may be in double
        quotes (needed for leading or trailing spaces)."""
        parsed = _MATCHER_TEXT.fullmatch(text)
        if parsed is None:
            raise ValueError(
                f"invalid matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex "
                "with a label name like [A-Za-z_][A-Za-z0-9_]*"
            )
        name, op, raw = parsed.groups()
        value = _unquote(raw, text) if raw.startswith('"') else raw
        try:
            return cls(name=name, op=MatchOp(op), value=value)
        except ValueError as error:
            raise ValueError(f"invalid matcher {text!r}: {error}") from None

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{_quote(self.value)}"


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Equality first: a silence's ``site="..."`` rules out other sites before any regex runs."""
    return all(m.matches(labels) for m in matchers if m.op in _EQUALITY) and all(
        m.matches(labels) for m in matchers if m.op not in _EQUALITY
    )


# --------------------------------------------------------------------------------------------- routes


class Escalation(msgspec.Struct, frozen=True, kw_only=True):
    """Unacknowledged alerts also go to ``receiver`` once they have been firing for ``after_ms``: a
    page nobody reacts to reaches the next person without anyone having to watch the first one."""

    after_ms: int
    receiver: str


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """A node of the routing tree. ``None`` fields inherit the parent's value (the root's defaults:
    group by alertname and site, 30 s group_wait, 5 min group_interval, 4 h repeat, resolutions sent,
    no escalation), so a subtree only states what differs."""

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None
    group_wait_ms: int | None = None
    group_interval_ms: int | None = None
    repeat_interval_ms: int | None = None
    send_resolved: bool | None = None
    escalate: tuple[Escalation, ...] | None = None
    continue_: bool = False
    """After this route matched, also try its later siblings (one alert may then reach several routes)."""
    routes: tuple[Route, ...] = ()

    def validate(self, receivers: Collection[str]) -> list[str]:
        """Every problem of the tree at once (empty: fine), so a config error report lists them all."""
        problems: list[str] = []
        if self.receiver is None:
            problems.append("route 0: the root route needs a receiver")
        if self.matchers:
            problems.append("route 0: the root route matches every alert; it must not have matchers")
        self._check("0", receivers, problems)
        return problems

    def _check(self, path: str, receivers: Collection[str], problems: list[str]) -> None:
        where = f"route {path}"
        if self.receiver is not None and self.receiver not in receivers:
            problems.append(f"{where}: unknown receiver {self.receiver!r}")
        if self.group_by is not None and ALL_LABELS in self.group_by and len(self.group_by) > 1:
            problems.append(f"{where}: group_by {ALL_LABELS!r} (every label) cannot be combined with labels")
        if self.group_wait_ms is not None and self.group_wait_ms < 0:
            problems.append(f"{where}: group_wait must not be negative")
        if self.group_interval_ms is not None and self.group_interval_ms <= 0:
            problems.append(f"{where}: group_interval must be positive")
        if self.repeat_interval_ms is not None and self.repeat_interval_ms <= 0:
            problems.append(f"{where}: repeat_interval must be positive")
        previous: int | None = None
        for i, step in enumerate(self.escalate or ()):
            if step.receiver not in receivers:
                problems.append(f"{where}: escalation {i + 1}: unknown receiver {step.receiver!r}")
            if step.after_ms < 0:
                problems.append(f"{where}: escalation {i + 1}: after must not be negative")
            if previous is not None and step.after_ms <= previous:
                problems.append(
                    f"{where}: escalation {i + 1}: after ({step.after_ms} ms) must be later than "
                    f"the previous step's ({previous} ms)"
                )
            previous = step.after_ms
        for i, child in enumerate(self.routes):
            child._check(f"{path}.{i}", receivers, problems)


class RouteMatch(msgspec.Struct, frozen=True, kw_only=True):
    """A route with everything inherited resolved: all ``plan`` needs to know about it."""

    path: str
    """``"0"`` for the root, ``"0.2.1"`` for the root's 3rd child's 2nd child."""
    receiver: str
    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    send_resolved: bool
    escalate: tuple[Escalation, ...]


def _pick(own: _T | None, inherited: _T) -> _T:
    return inherited if own is None else own


def _resolve(route: Route, parent: RouteMatch | None, path: str) -> RouteMatch:
    if parent is None:
        if route.receiver is None:
            raise ValueError("the root route needs a receiver")
        parent = RouteMatch(
            path=path,
            receiver=route.receiver,
            group_by=DEFAULT_GROUP_BY,
            group_wait_ms=DEFAULT_GROUP_WAIT_MS,
            group_interval_ms=DEFAULT_GROUP_INTERVAL_MS,
            repeat_interval_ms=DEFAULT_REPEAT_INTERVAL_MS,
            send_resolved=True,
            escalate=(),
        )

    return RouteMatch(
        path=path,
        receiver=_pick(route.receiver, parent.receiver),
        group_by=_pick(route.group_by, parent.group_by),
        group_wait_ms=_pick(route.group_wait_ms, parent.group_wait_ms),
        group_interval_ms=_pick(route.group_interval_ms, parent.group_interval_ms),
        repeat_interval_ms=_pick(route.repeat_interval_ms, parent.repeat_interval_ms),
        send_resolved=_pick(route.send_resolved, parent.send_resolved),
        escalate=_pick(route.escalate, parent.escalate),
    )


def routes_for(root: Route, labels: Mapping[str, str]) -> list[RouteMatch]:
    """Alertmanager's tree walk: the root takes every alert (its matchers are ignored); at a matching
    node the children are tried in order and each matching one descended, stopping after the first
    match unless that child says ``continue_``; a node none of whose children matched is a result."""
    return _descend(root, _resolve(root, None, "0"), labels)


def _descend(route: Route, resolved: RouteMatch, labels: Mapping[str, str]) -> list[RouteMatch]:
    found: list[RouteMatch] = []
    for i, child in enumerate(route.routes):
        if not matches_all(child.matchers, labels):
            continue
        found.extend(_descend(child, _resolve(child, resolved, f"{resolved.path}.{i}"), labels))
        if not child.continue_:
            break
    return found or [resolved]


def route_at(root: Route, path: str) -> RouteMatch:
    """The resolved route at ``path``, or its deepest ancestor still in the tree: a log written before
    the tree was edited still gets sensible timings for reporting its resolutions."""
    node = root
    resolved = _resolve(root, None, "0")
    for part in path.split(".")[1:]:
        if not part.isdigit() or int(part) >= len(node.routes):
            break
        node = node.routes[int(part)]
        resolved = _resolve(node, resolved, f"{resolved.path}.{part}")
    return resolved


def group_labels(match: RouteMatch, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that make the alert's group. An empty value counts as absent (as for matchers), so
    ``site=""`` and no ``site`` end up in the same group."""
    if ALL_LABELS in match.group_by:
        return {name: value for name, value in labels.items() if value}
    return {name: labels[name] for name in match.group_by if labels.get(name)}


def group_key(match: RouteMatch, labels: Mapping[str, str]) -> str:
    """Deterministic across processes and restarts (it names persisted logs): path, receiver and the
    sorted group labels as compact JSON."""
    pairs = sorted(group_labels(match, labels).items())
    return f"{match.path}:{match.receiver}:" + json.dumps(pairs, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------------ silences, windows


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


# ---------------------------------------------------------------------------------------------- config


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


# ------------------------------------------------------------------------------------------------ logs


def log_id(key: str, channel: str, escalation: int) -> str:
    return f"{key}|{channel}|{escalation}"


class GroupLog(msgspec.Struct, frozen=True, kw_only=True):
    """What one channel was told about one group at one escalation level: the notifier's only state."""

    key: str
    channel: str
    receiver: str
    escalation: int
    group_labels: dict[str, str]
    created_ms: int
    """When the group first had something to send (group_wait counts from here)."""
    sent_ms: int | None = None
    """Last successful message."""
    flushed_ms: int | None = None
    """Last group_interval tick at which a message went out (``sent_ms`` for now)."""
    firing: tuple[int, ...] = ()
    """Alert ids the last message reported as firing (sorted): their resolutions are owed."""
    muted: tuple[int, ...] = ()
    """Alert ids a message reported as firing that are muted since and still firing (sorted): their
    resolutions are owed too, and when they come back unmuted they are news again."""
    failures: int = 0
    retry_ms: int | None = None
    """After a failed delivery: no new attempt before this."""

    @property
    def id(self) -> str:
        return log_id(self.key, self.channel, self.escalation)

    @property
    def owed(self) -> frozenset[int]:
        """Alerts this channel was told are firing (muted since, or not): their resolution is owed, so
        the notifier must pass them to ``plan`` whatever their state."""
        return frozenset(self.firing) | frozenset(self.muted)

    @property
    def finished(self) -> bool:
        """Nothing left to resolve: after a successful send the notifier deletes the log."""
        return not self.owed


def after_failure(log: GroupLog, now_ms: int, base_ms: int = 1_000, cap_ms: int = 300_000) -> GroupLog:
    """The log to persist when a send failed: ``log`` must be the log as it was BEFORE the send
    (``Plan.before[id]``), so the next plan sends the same message again; exponential backoff (base,
    2x base, 4x base ... capped) keeps a dead endpoint from being hammered."""
    backoff = cap_ms if log.failures >= 62 else min(cap_ms, base_ms * 2**log.failures)
    return msgspec.structs.replace(log, failures=log.failures + 1, retry_ms=now_ms + backoff)


# ------------------------------------------------------------------------------------------------ plan


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


class _Group:
    """A (group key, channel, level) being assembled by ``plan``."""

    __slots__ = ("channel", "firing", "key", "labels", "level", "match", "receiver")

    def __init__(
        self, key: str, channel: str, level: int, receiver: str, labels: dict[str, str], match: RouteMatch
    ) -> None:
        self.key = key
        self.channel = channel
        self.level = level
        self.receiver = receiver
        self.labels = labels
        self.match = match
        self.firing: dict[int, AlertView] = {}


def _acknowledged(alert: AlertView) -> bool:
    return alert.acknowledged_by is not None or alert.acknowledged_ms is not None


def _describe(alert: AlertView) -> str:
    name, site = alert.labels.get("alertname"), alert.labels.get("site")
    return f"{name}@{site}" if name and site else alert.fingerprint


def _mute_reason(
    alert: AlertView,
    now_ms: int,
    inhibitions: Inhibitions,
    config: RoutingConfig,
    silences: Sequence[Silence],
) -> str | None:
    for silence in silences:
        if silence.mutes(alert.labels, now_ms):
            return f"silenced by silence {silence.id}" + (f" ({silence.comment})" if silence.comment else "")
    for window in config.maintenance:
        if window.mutes(alert.labels, now_ms):
            return f"maintenance window {window.name}"
    source = inhibitions.source_for(alert)
    if source is not None:
        return f"inhibited by {_describe(source)}"
    return None


def _assemble(
    now_ms: int,
    firing_all: Sequence[AlertView],
    config: RoutingConfig,
    silences: Sequence[Silence],
    logs: Mapping[str, GroupLog],
    muted: list[Muted],
    wakes: list[int],
) -> dict[str, _Group]:
    """Steps 2 and 3: mute, route and escalate the firing alerts into groups (by log id); the muted
    alerts and the instants escalations become due are added to ``muted`` and ``wakes``."""
    groups: dict[str, _Group] = {}
    inhibitions = Inhibitions(firing_all, config.inhibit_rules)
    for alert in firing_all:
        reason = _mute_reason(alert, now_ms, inhibitions, config, silences)
        if reason is not None:
            muted.append(Muted(alert_id=alert.id, reason=reason))
            continue
        for match in routes_for(config.route, alert.labels):
            key = group_key(match, alert.labels)
            labels = group_labels(match, alert.labels)
            receivers = [match.receiver, *(step.receiver for step in match.escalate)]
            for level, receiver in enumerate(receivers):
                for channel in config.receivers.get(receiver, ()):
                    lid = log_id(key, channel, level)
                    if level > 0:
                        eligible_ms = alert.fired_ms + match.escalate[level - 1].after_ms
                        log = logs.get(lid)
                        listed = log is not None and alert.id in log.owed
                        if not listed and (_acknowledged(alert) or now_ms < eligible_ms):
                            if not _acknowledged(alert):
                                wakes.append(eligible_ms)
                            continue
                    group = groups.get(lid)
                    if group is None:
                        group = groups[lid] = _Group(key, channel, level, receiver, labels, match)
                    group.firing[alert.id] = alert
    return groups


def _channel_gone(log: GroupLog, config: RoutingConfig) -> bool:
    """A receiver renamed or removed, or its channels edited: the log's channel can no longer be sent to,
    and keeping the log would have the notifier retry it forever."""
    return log.channel not in config.receivers.get(log.receiver, ())


def plan(
    now_ms: int,
    alerts: Sequence[AlertView],
    config: RoutingConfig,
    silences: Sequence[Silence],
    logs: Mapping[str, GroupLog],
) -> Plan:
    """What to send now, what to persist and when to look again (the module docstring has the rules)."""
    firing_all = sorted((a for a in alerts if a.state == "firing"), key=lambda a: a.id)
    resolved_by_id = {a.id: a for a in alerts if a.state == "resolved"}
    live = {lid: log for lid, log in logs.items() if not _channel_gone(log, config)}
    wakes: list[int] = []
    muted: list[Muted] = []
    groups = _assemble(now_ms, firing_all, config, silences, live, muted, wakes)
    muted_ids = {mu.alert_id for mu in muted}

    sends: list[tuple[Notification, GroupLog]] = []
    touched: list[GroupLog] = []
    dropped: list[str] = []
    before: dict[str, GroupLog] = {}
    for lid in sorted(groups.keys() | logs.keys()):
        group, log = groups.get(lid), live.get(lid)
        if group is None and log is None:
            dropped.append(lid)  # its channel is gone (a group's log under the same id replaces it)
            continue
        firing = sorted(group.firing.values(), key=lambda a: a.id) if group is not None else []
        owed = log.owed if log is not None else frozenset()
        resolved = [resolved_by_id[i] for i in sorted(owed) if i in resolved_by_id]
        still_muted = tuple(sorted(owed & muted_ids))
        if log is None:
            if group is None or not firing:
                continue
            log = GroupLog(
                key=group.key,
                channel=group.channel,
                receiver=group.receiver,
                escalation=group.level,
                group_labels=group.labels,
                created_ms=now_ms,
            )
            is_new = True
        else:
            is_new = False
            if not firing and not resolved and not still_muted:
                dropped.append(lid)
                continue
        match = group.match if group is not None else route_at(config.route, log.key.split(":", 1)[0])
        group_wait = match.group_wait_ms if log.escalation == 0 else 0
        firing_ids = tuple(a.id for a in firing)
        unacked = any(not _acknowledged(a) for a in firing)
        # An alert that fired again under the same fingerprint is in ``firing``: reporting the old
        # instance as resolved would close, for consumers keyed on fingerprints, what is firing.
        fingerprints = {a.fingerprint for a in firing}
        reported = [a for a in resolved if a.fingerprint not in fingerprints] if match.send_resolved else []

        due_ms: int | None = None  # when the pending message may go out (None: nothing to send)
        repeat = False
        update: GroupLog | None = None  # a change to persist without a message
        if log.sent_ms is None:
            if not firing:
                dropped.append(lid)  # never told anyone, nothing firing any more
                continue
            due_ms = log.created_ms + group_wait
        elif set(firing_ids) - set(log.firing) or reported:
            flushed = log.flushed_ms if log.flushed_ms is not None else log.sent_ms
            due_ms = max(now_ms, flushed + match.group_interval_ms)
        elif unacked and now_ms >= log.sent_ms + match.repeat_interval_ms:
            due_ms, repeat = now_ms, True
        else:
            if unacked:
                wakes.append(log.sent_ms + match.repeat_interval_ms)
            # Nothing to say: the log takes in what happened silently. Unreported resolutions leave it;
            # alerts muted since the last message move to ``muted``, so that they are news again when
            # they come back unmuted.
            settled = msgspec.structs.replace(log, firing=firing_ids, muted=still_muted)
            if settled.finished:
                dropped.append(lid)
                continue
            if settled != log:
                update = settled

        if due_ms is not None and log.retry_ms is not None and log.retry_ms > due_ms:
            due_ms = log.retry_ms
        if due_ms is not None and due_ms <= now_ms:
            note = Notification(
                receiver=log.receiver,
                channel=log.channel,
                group_key=log.key,
                group_labels=dict(log.group_labels),
                firing=tuple(firing),
                resolved=tuple(reported),
                escalation=log.escalation,
                repeat=repeat,
            )
            sent = msgspec.structs.replace(
                log,
                sent_ms=now_ms,
                flushed_ms=now_ms,
                firing=firing_ids,
                muted=still_muted,
                failures=0,
                retry_ms=None,
            )
            sends.append((note, sent))
            before[lid] = log
            if unacked:  # the reminder after this message (if it goes through; a failure sets retry_ms)
                wakes.append(now_ms + match.repeat_interval_ms)
            continue
        if due_ms is not None:
            wakes.append(due_ms)
        if update is not None:
            touched.append(update)
        elif is_new:
            touched.append(log)

    wakes.extend(_silence_wakes(now_ms, firing_all, silences))
    for window in config.maintenance:
        if any(matches_all(window.matchers, a.labels) for a in firing_all):
            change = window.next_change_ms(now_ms)
            if change is not None:
                wakes.append(change)
    future = [w for w in wakes if w > now_ms]
    return Plan(
        sends=sends,
        touched=touched,
        dropped=dropped,
        muted=muted,
        wake_ms=min(future) if future else None,
        before=before,
    )


def _silence_wakes(now_ms: int, firing: Sequence[AlertView], silences: Sequence[Silence]) -> Iterator[int]:
    """A silence that starts later or ends later changes what is muted, for the alerts it matches."""
    for silence in silences:
        if not silence.matchers or silence.ends_ms <= now_ms:
            continue
        if any(matches_all(silence.matchers, a.labels) for a in firing):
            yield silence.starts_ms if silence.starts_ms > now_ms else silence.ends_ms
