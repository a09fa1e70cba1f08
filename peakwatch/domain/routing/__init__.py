"""Notification routing, pure: who hears about which alert, when (Alertmanager's model).

- ``matchers``: label conditions (``site="dc-1"``, ``severity=~"crit.*"``), RE2 for regexes;
- ``routes``: the routing tree, inherited timings, group labels and keys;
- ``mutes``: silences, maintenance windows, inhibition, and when what is muted changes;
- ``group_log``: the per-group notification log (the notifier's only state) and the retry backoff;
- ``planning``: the one decision function, ``plan(now_ms, alerts, config, silences, logs)``, whose
  docstring has the rules.

Callers import from here; the modules are where to read and change each part.
"""

from peakwatch.domain.routing.group_log import GroupLog, after_failure, log_id
from peakwatch.domain.routing.matchers import MAX_REGEX_LENGTH, Matcher, MatchOp, matches_all
from peakwatch.domain.routing.mutes import Inhibitions, InhibitRule, MaintenanceWindow, Silence, inhibited_by
from peakwatch.domain.routing.planning import Muted, Plan, RoutingConfig, plan
from peakwatch.domain.routing.routes import (
    ALL_LABELS,
    DEFAULT_GROUP_BY,
    DEFAULT_GROUP_INTERVAL_MS,
    DEFAULT_GROUP_WAIT_MS,
    DEFAULT_REPEAT_INTERVAL_MS,
    Escalation,
    Route,
    RouteMatch,
    group_key,
    group_labels,
    route_at,
    routes_for,
)

__all__ = [
    "ALL_LABELS",
    "DEFAULT_GROUP_BY",
    "DEFAULT_GROUP_INTERVAL_MS",
    "DEFAULT_GROUP_WAIT_MS",
    "DEFAULT_REPEAT_INTERVAL_MS",
    "MAX_REGEX_LENGTH",
    "Escalation",
    "GroupLog",
    "InhibitRule",
    "Inhibitions",
    "MaintenanceWindow",
    "MatchOp",
    "Matcher",
    "Muted",
    "Plan",
    "Route",
    "RouteMatch",
    "RoutingConfig",
    "Silence",
    "after_failure",
    "group_key",
    "group_labels",
    "inhibited_by",
    "log_id",
    "matches_all",
    "plan",
    "route_at",
    "routes_for",
]
