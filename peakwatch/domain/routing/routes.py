"""The routing tree: which route (and so which receiver, grouping and timings) an alert takes, and
the group it joins there. A subtree states only what differs from its parent; ``RouteMatch`` is a route
with everything inherited filled in."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Final, TypeVar

import msgspec

from peakwatch.domain.routing.matchers import Matcher, matches_all

DEFAULT_GROUP_BY: Final[tuple[str, ...]] = ("alertname", "site")
DEFAULT_GROUP_WAIT_MS: Final = 30_000
DEFAULT_GROUP_INTERVAL_MS: Final = 300_000
DEFAULT_REPEAT_INTERVAL_MS: Final = 14_400_000
ALL_LABELS: Final = "..."
"""``group_by: ["..."]``: group by every label, i.e. one group per alert (as in Alertmanager)."""

_T = TypeVar("_T")


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


_ROOT_DEFAULTS: Final = RouteMatch(
    path="0",
    receiver="",
    group_by=DEFAULT_GROUP_BY,
    group_wait_ms=DEFAULT_GROUP_WAIT_MS,
    group_interval_ms=DEFAULT_GROUP_INTERVAL_MS,
    repeat_interval_ms=DEFAULT_REPEAT_INTERVAL_MS,
    send_resolved=True,
    escalate=(),
)
"""What the root inherits (Alertmanager's defaults); the root must name its receiver itself."""


def _resolve(route: Route, parent: RouteMatch | None, path: str) -> RouteMatch:
    if parent is None and route.receiver is None:
        raise ValueError("the root route needs a receiver")
    parent = parent or _ROOT_DEFAULTS
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
