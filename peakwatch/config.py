"""Configuration: process settings (environment / CLI) and the site registry (YAML).

Both are built once at start-up by the composition root (``cli``) and passed down; nothing here is
created at import time.

* ``Settings`` (pydantic-settings, env prefix ``PEAKWATCH_``): where things run.
* ``Registry`` (YAML, see docs/configuration.md): sites, meters, alert rules, factor overrides, factor
  sets, the GB 40879 thresholds and notifications (``peakwatch.notify_config``).
  It is mirrored into the database (``sites``/``meters`` tables) so the API and SQL users see it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from peakwatch.config_problems import Problems, convert, items, named, yaml_problem
from peakwatch.domain.factors import FactorLibrary, ResolvedFactors
from peakwatch.domain.kpis import DEFAULT_GB40879_THRESHOLDS
from peakwatch.domain.models import Meter, Role, Site
from peakwatch.domain.rules import KPI_FIELDS, Op, StalenessRule, ThresholdRule
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import ConfigError
from peakwatch.notify_config import Notifications, parse_notifications
from peakwatch.registry_doc import (
    LISTS,
    RegistryDoc,
    as_struct,
    factor_library,
    factor_sets,
    gb40879_thresholds,
    sites_and_meters,
)


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "peakwatch"


def check_mqtt_shared_group(group: str) -> str:
    """``group`` if it can name an MQTT shared subscription, else ``ConfigError``.

    A share name is one non-empty topic level without wildcards (MQTT 5, 4.8.2). Checked before any
    broker sees it: mosquitto answers ``$share/a+b/...`` by dropping the connection, which a
    collector would take for a network fault and retry forever.
    """
    if not group:
        raise ConfigError("mqtt_shared_group must not be empty (unset it for no shared subscription)")
    bad = sorted({char for char in group if char in "/+#\x00"})
    if bad:
        raise ConfigError(
            f"mqtt_shared_group {group!r} must not contain {', '.join(map(repr, bad))}: it is one "
            "topic level of the subscription $share/<group>/<prefix>/+/+"
        )
    return group


class Settings(BaseSettings):
    """Where peakwatch runs and how it behaves; every field can be set as ``PEAKWATCH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="PEAKWATCH_", extra="ignore")

    config_file: Path | None = None
    """YAML registry; ``None`` uses the bundled demo registry (two demo sites)."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Embedded PostgreSQL data and other local state; kept across restarts."""
    database_url: str | None = None
    """``postgresql://...``; ``None`` starts embedded PostgreSQL in ``data_dir``."""
    mqtt_url: str | None = None
    """``mqtt://host:port``; ``None`` starts the embedded broker on ``mqtt_port``."""
    mqtt_port: int = 1883
    mqtt_topic_prefix: str = "telemetry"
    mqtt_client_id: str = "peakwatch-collector"
    mqtt_qos: Literal[0, 1] = 1
    mqtt_shared_group: str | None = None
    """MQTT shared-subscription group: collectors with the same group and different
    ``mqtt_client_id`` split the messages (``$share/<group>/...``, each message to one of them), so
    ingest can run on several hosts. Needs an MQTT 5 broker given by ``mqtt_url`` (docs/ingest.md)."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    db_port: int = 5433
    """TCP port of embedded PostgreSQL (loopback only)."""
    bus_url: str = "spool://"
    """Between collector and processor: ``spool://`` (on disk in ``data_dir/spool``, survives a crash
    and a database outage; ``spool:///path?max_bytes=1GiB&fsync=0``) or ``memory://`` (in-process,
    not durable; tests and benchmarks)."""
    window_ms: int = 60_000
    """The processor's closing window. Fixed at one minute: the 15-minute .. 12-month periods are summed
    from minutes (docs/kpis.md); the setting exists so that a wrong value is refused, not ignored."""
    allowed_lateness_ms: int = 10_000
    """How long after a window's end readings are still accepted into it (event time)."""
    idle_close_ms: int = 5_000
    """When a site has been silent this long (wall clock), its event time is advanced by the silence,
    so windows close even if no further reading arrives."""
    max_future_ms: int = 300_000
    """Readings stamped further than this ahead of the collector's clock are dead-lettered."""
    max_age_ms: int = 400 * 86_400_000
    """Readings older than this (against the collector's clock) are dead-lettered as ``ts_too_old``."""
    max_payload_bytes: int = 1_048_576
    session_ttl_ms: int = Field(default=12 * 3_600_000, ge=60_000)
    """How long a dashboard login lasts."""
    public_url: str = ""
    """Where people reach this peakwatch (``https://peakwatch.example.com``): links in notifications."""
    cookie_secure: bool = False
    """Send the session cookie over HTTPS only: set it whenever a TLS proxy serves the API."""
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses (or networks) of the reverse proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` the API believes; empty: none, the client is the TCP peer. Anyone else could
    rotate the header to escape the per-address login throttle."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body the API reads (413 beyond it), checked before the body is read."""
    max_login_body_bytes: int = Field(default=16_384, ge=1024)
    """Largest body of the unauthenticated login and password routes."""
    demo: bool = True

    @field_validator("mqtt_shared_group")
    @classmethod
    def _share_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_mqtt_shared_group(value)
        except ConfigError as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(exc)) from exc

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _address_list(cls, value: object) -> object:
        """``PEAKWATCH_TRUSTED_PROXIES=10.0.0.5,10.0.1.0/24``: a comma-separated list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("window_ms")
    @classmethod
    def _one_minute(cls, value: int) -> int:
        if value != 60_000:
            raise ValueError(
                "window_ms must be 60000: KPI periods (15 min .. 12 months) are built from 1-minute windows"
            )
        return value


# ---------------------------------------------------------------------------------------------- registry


class _RuleDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, rename={"for_": "for"}):
    name: str
    kpi: str | None = None
    op: Op | None = None
    threshold: float | None = None
    """A threshold rule has ``kpi``, ``op`` and ``threshold``; a staleness rule has ``silent_for``."""
    silent_for: str | int | None = None
    per: Literal["meter", "site"] | None = None
    """Staleness rules: ``meter`` (default, one alert per silent meter) or ``site`` (every meter silent)."""
    meter_roles: list[str] = []
    labels: dict[str, str] = {}
    site_labels: dict[str, str] = {}
    for_: str | int = 0
    recover: float | None = None
    """Hysteresis: the value a firing alert must get back past (default: ``threshold``)."""
    keep_firing_for: str | int = 0
    min_completeness: float = 0.0
    min_it_kw: float | None = None
    change_over: str | int | None = None
    """Rate of change: compare the KPI's change over this span (e.g. 15m) instead of its value."""
    severity: str = "warning"
    summary: str = ""
    site_kinds: list[str] = []
    site_ids: list[str] = []


class Registry:
    """Sites, meters, rules and factors (with the factor sets), validated and indexed for the hot path."""

    def __init__(
        self,
        sites: Iterable[Site],
        meters: Iterable[Meter],
        rules: Iterable[ThresholdRule] = (),
        factors: FactorLibrary | None = None,
        *,
        gb40879_thresholds: tuple[float, float, float] = DEFAULT_GB40879_THRESHOLDS,
        staleness_rules: Iterable[StalenessRule] = (),
        notifications: Notifications | None = None,
    ) -> None:
        self.sites: dict[str, Site] = {s.id: s for s in sites}
        self.meters: dict[tuple[str, str], Meter] = {(m.site_id, m.id): m for m in meters}
        self.rules: tuple[ThresholdRule, ...] = tuple(rules)
        self.staleness_rules: tuple[StalenessRule, ...] = tuple(staleness_rules)
        self.notifications: Notifications | None = notifications
        """Receivers and routing (``None``: alerts are shown in the API, never sent)."""
        self.factors: FactorLibrary = factors or FactorLibrary()
        self.gb40879_thresholds: tuple[float, float, float] = gb40879_thresholds
        """Upper limits of the electric energy ratio for GB 40879-2021 grades 1, 2 and 3."""
        by_site: dict[str, list[Meter]] = {sid: [] for sid in self.sites}
        for meter in self.meters.values():  # one pass: a scan per site was sites x meters (100M at 100k)
            bucket = by_site.get(meter.site_id)
            if bucket is not None:
                bucket.append(meter)
        self._by_site: dict[str, tuple[Meter, ...]] = {sid: tuple(ms) for sid, ms in by_site.items()}

    def meter(self, site_id: str, meter_id: str) -> Meter | None:
        return self.meters.get((site_id, meter_id))

    def site_meters(self, site_id: str) -> tuple[Meter, ...]:
        return self._by_site.get(site_id, ())

    def only(self, site_ids: Iterable[str]) -> Registry:
        """The same registry restricted to ``site_ids`` (and their meters): what one processor among
        several sees of it. Rules, factors and notifications are shared."""
        keep = set(site_ids)
        return Registry(
            [s for s in self.sites.values() if s.id in keep],
            [m for m in self.meters.values() if m.site_id in keep],
            self.rules,
            self.factors,
            gb40879_thresholds=self.gb40879_thresholds,
            staleness_rules=self.staleness_rules,
            notifications=self.notifications,
        )

    def resolve_factors(self, site: Site) -> ResolvedFactors:
        """The numbers ``site``'s KPIs use: its factor set, with its own grid factor if it names one."""
        return self.factors.resolve(site.factor_set, site.grid_factor)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(cls, path: Path) -> Registry:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read registry {path}: {exc}") from exc
        return cls.from_text(text, source=str(path))

    @classmethod
    def bundled_demo(cls) -> Registry:
        text = resources.files("peakwatch.demo").joinpath("sites.yaml").read_text(encoding="utf-8")
        return cls.from_text(text, source="bundled demo registry")

    @classmethod
    def from_text(cls, text: str, *, source: str = "<text>") -> Registry:
        try:
            raw: Any = _load_yaml(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(source=source, problems=[yaml_problem(exc, text)]) from exc
        return cls.from_mapping(raw, source=source)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "<mapping>") -> Registry:
        """The registry, or one ``ConfigError`` listing every problem of ``raw`` (each naming its site,
        meter, rule or factor)."""
        problems = Problems(source)
        if not isinstance(raw, Mapping):
            problems.add("", f"a registry is a mapping (sites:, rules:, ...), not a {type(raw).__name__}")
            problems.raise_any()
        doc = convert(raw, RegistryDoc, "", problems, skip=LISTS)
        factor_problems = Problems(source)  # reported after the sites and rules, as a file reads
        factors = factor_library(raw, factor_problems)
        factors = factors.with_sets(factor_sets(raw, factors, factor_problems))
        sites, meters = sites_and_meters(raw, factors, problems)
        rules, stale_rules = _rules(raw, problems)
        problems.found += factor_problems.found
        thresholds = DEFAULT_GB40879_THRESHOLDS
        notifications = None
        if doc is not None:
            with problems.at(""):
                thresholds = gb40879_thresholds(doc.gb40879_thresholds)
            with problems.at("notifications"):
                notifications = None if doc.notifications is None else parse_notifications(doc.notifications)
        problems.raise_any()
        return cls(
            sites,
            meters,
            rules,
            factors,
            gb40879_thresholds=thresholds,
            staleness_rules=stale_rules,
            notifications=notifications,
        )


Rule = ThresholdRule | StalenessRule


def parse_rule(raw: Mapping[str, Any], source: str) -> Rule:
    """One rule as written in the registry's ``rules:`` list (or sent to the API), validated."""
    problems = Problems(source)
    where = named("rule", raw, "name", 0)
    doc = convert(raw, _RuleDoc, where, problems)
    rule: Rule | None = None
    if doc is not None:
        with problems.at(where):
            rule = _rule(doc)
    problems.raise_any()
    assert rule is not None
    return rule


def _rules(raw: Mapping[str, Any], problems: Problems) -> tuple[list[ThresholdRule], list[StalenessRule]]:
    rules: list[ThresholdRule] = []
    stale_rules: list[StalenessRule] = []
    names: list[str] = []
    for i, raw_rule in items(raw, "rules", "", problems):
        where = named("rule", raw_rule, "name", i)
        doc = convert(raw_rule, _RuleDoc, where, problems)
        if doc is None:
            continue
        names.append(doc.name)
        with problems.at(where):
            rule = _rule(doc)
            (stale_rules if isinstance(rule, StalenessRule) else rules).append(rule)  # type: ignore[arg-type]
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        problems.add("", f"duplicate rule names: {', '.join(twice)}")
    return rules, stale_rules


def rule_document(rule: Rule) -> dict[str, Any]:
    """The registry form of ``rule`` (what ``parse_rule`` reads back to an equal rule)."""
    common: dict[str, Any] = {"name": rule.name, "severity": rule.severity}
    if rule.summary:
        common["summary"] = rule.summary
    for key in ("site_kinds", "site_ids"):
        if value := getattr(rule, key):
            common[key] = [str(v) for v in value]
    if rule.site_labels:
        common["site_labels"] = dict(rule.site_labels)
    if rule.labels:
        common["labels"] = dict(rule.labels)
    if isinstance(rule, StalenessRule):
        common |= {"silent_for": _seconds(rule.silent_ms), "per": rule.per}
        if rule.meter_roles:
            common["meter_roles"] = list(rule.meter_roles)
        return common
    common |= {"kpi": rule.kpi, "op": rule.op, "threshold": rule.threshold, "for": _seconds(rule.for_ms)}
    if rule.recover_threshold is not None:
        common["recover"] = rule.recover_threshold
    if rule.keep_firing_for_ms:
        common["keep_firing_for"] = _seconds(rule.keep_firing_for_ms)
    if rule.min_completeness:
        common["min_completeness"] = rule.min_completeness
    if rule.min_it_kw is not None:
        common["min_it_kw"] = rule.min_it_kw
    if rule.change_over_ms is not None:
        common["change_over"] = _seconds(rule.change_over_ms)
    return common


def _seconds(ms: int) -> str:
    """Exact and readable: ``300s``, ``1500ms`` (never ``1.2096e+06s``, which no parser reads back)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
MAX_RULE_LABELS = 20
MAX_LABEL_VALUE = 200


def _labels_problem(labels: Mapping[str, str]) -> str | None:
    """Labels end up in matchers, group keys and message headers: names as Alertmanager's, values short
    and on one line (a newline in a grouped label would break every e-mail of the group)."""
    if len(labels) > MAX_RULE_LABELS:
        return f"at most {MAX_RULE_LABELS} labels"
    for name, value in labels.items():
        if not _LABEL_NAME.match(name):
            return f"label name {name!r} must match {_LABEL_NAME.pattern}"
        if len(value) > MAX_LABEL_VALUE or any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"label {name}: at most {MAX_LABEL_VALUE} characters on one line"
    return None


def _rule(r: _RuleDoc) -> Rule:
    for field, labels in (("labels", r.labels), ("site_labels", r.site_labels)):
        if (problem := _labels_problem(labels)) is not None:
            raise ConfigError(f"{field}: {problem}")
    if r.silent_for is not None:
        return _staleness_rule(r)
    if r.per is not None:
        raise ConfigError("per (meter or site) belongs to staleness rules")
    if r.meter_roles:
        raise ConfigError(
            "meter_roles scope staleness rules (silent_for); a threshold rule watches a site's KPIs"
        )
    if r.kpi is None or r.op is None or r.threshold is None:
        raise ConfigError("give kpi, op and threshold (a threshold rule) or silent_for (a staleness rule)")
    if r.kpi not in KPI_FIELDS:
        raise ConfigError(f"unknown kpi {r.kpi!r}; known: {', '.join(sorted(KPI_FIELDS))}")
    rule = as_struct(
        {
            "name": r.name,
            "kpi": r.kpi,
            "op": r.op,
            "threshold": r.threshold,
            "for_ms": parse_duration_ms(r.for_),
            "severity": r.severity,
            "summary": r.summary,
            "site_kinds": r.site_kinds,
            "site_ids": r.site_ids,
            "site_labels": r.site_labels,
            "labels": r.labels,
            "recover_threshold": r.recover,
            "keep_firing_for_ms": parse_duration_ms(r.keep_firing_for),
            "min_completeness": r.min_completeness,
            "min_it_kw": r.min_it_kw,
            "change_over_ms": None if r.change_over is None else parse_duration_ms(r.change_over),
        },
        ThresholdRule,
    )
    if (problem := rule.problem()) is not None:
        raise ConfigError(f"{problem}")
    return rule


def _staleness_rule(r: _RuleDoc) -> StalenessRule:
    threshold_only = {
        "kpi": r.kpi,
        "op": r.op,
        "threshold": r.threshold,
        "for": r.for_ or None,
        "recover": r.recover,
        "keep_firing_for": r.keep_firing_for or None,
        "min_completeness": r.min_completeness or None,
        "min_it_kw": r.min_it_kw,
        "change_over": r.change_over,
    }
    given = [name for name, value in threshold_only.items() if value is not None]
    if given:
        raise ConfigError(f"a staleness rule (silent_for) takes no {', '.join(given)}")
    assert r.silent_for is not None
    silent_ms = parse_duration_ms(r.silent_for)
    if silent_ms <= 0:
        raise ConfigError("silent_for must be positive")
    unknown = sorted(set(r.meter_roles) - {role.value for role in Role})
    if unknown:
        known = ", ".join(role.value for role in Role)
        raise ConfigError(f"unknown meter roles {unknown}; known: {known}")
    return as_struct(
        {
            "name": r.name,
            "silent_ms": silent_ms,
            "severity": r.severity,
            "summary": r.summary,
            "site_kinds": r.site_kinds,
            "site_ids": r.site_ids,
            "site_labels": r.site_labels,
            "meter_roles": r.meter_roles,
            "labels": r.labels,
            "per": r.per or "meter",
        },
        StalenessRule,
    )


def _load_yaml(text: str) -> Any:
    """libyaml's parser when PyYAML has it: a registry of 100k meters took 100 s and 750 MiB with the
    pure-Python one (issue 21), 12 s and 480 MiB with libyaml. A document it refuses is parsed again by
    the pure-Python parser, whose error (with its line and column) is the one reported."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)
