"""Configuration: process settings (environment / CLI) and the site registry (YAML).

Both are built once at start-up by the composition root (``cli``) and passed down; nothing here is
created at import time.

* ``Settings`` (pydantic-settings, env prefix ``PEAKWATCH_``): where things run.
* ``Registry`` (YAML, see docs/configuration.md): sites, meters, alert rules, factor overrides, factor
  sets, the GB 40879 thresholds and notifications (``peakwatch.notify_config``).
  It is mirrored into the database (``sites``/``meters`` tables) so the API and SQL users see it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from peakwatch.domain.factors import (
    DEFAULT_FACTORS,
    DEFAULT_SET,
    DEFAULT_SLOTS,
    Factor,
    FactorLibrary,
    FactorSet,
    ResolvedFactors,
)
from peakwatch.domain.kpis import DEFAULT_GB40879_THRESHOLDS
from peakwatch.domain.models import Carrier, Meter, Quantity, Register, Role, Site
from peakwatch.domain.rules import KPI_FIELDS, StalenessRule, ThresholdRule
from peakwatch.domain.units import CARRIER_QUANTITIES, METER_UNITS, meter_quantity
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import ConfigError
from peakwatch.notify_config import Notifications, parse_notifications


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

    @field_validator("window_ms")
    @classmethod
    def _one_minute(cls, value: int) -> int:
        if value != 60_000:
            raise ValueError(
                "window_ms must be 60000: KPI periods (15 min .. 12 months) are built from 1-minute windows"
            )
        return value


# ---------------------------------------------------------------------------------------------- registry


class _MeterDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    carrier: Carrier
    role: Role
    register: Register | None = None
    """``None``: ``power`` for a power unit (W, kW, MW), else ``cumulative``."""
    unit: str = "kWh"
    register_max: float | None = None
    rated_kw: float | None = None
    zone: str | None = None


class _SiteDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    name: str
    kind: str
    timezone: str = "Asia/Shanghai"
    grid_factor: str | None = None
    factor_set: str = DEFAULT_SET.name
    pue_category: str | None = None
    labels: dict[str, str] = {}
    meters: list[_MeterDoc] = []


class _RuleDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, rename={"for_": "for"}):
    name: str
    kpi: str | None = None
    op: str | None = None
    threshold: float | None = None
    """A threshold rule has ``kpi``, ``op`` and ``threshold``; a staleness rule has ``silent_for``."""
    silent_for: str | int | None = None
    per: str | None = None
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


class _FactorDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    value: float
    unit: str
    source: str
    data_year: int | None = None
    published: str | None = None
    status: str = "unverified"


class _FactorSetDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    description: str = ""
    slots: dict[str, str] = {}


class _RegistryDoc(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sites: list[_SiteDoc] = []
    rules: list[_RuleDoc] = []
    factors: list[_FactorDoc] = []
    factor_sets: list[_FactorSetDoc] = []
    gb40879_thresholds: list[float] | None = None
    notifications: dict[str, Any] | None = None


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
        self._by_site: dict[str, tuple[Meter, ...]] = {
            sid: tuple(m for m in self.meters.values() if m.site_id == sid) for sid in self.sites
        }

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
            raw: Any = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
        return cls.from_mapping(raw, source=source)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "<mapping>") -> Registry:
        try:
            doc = msgspec.convert(raw, _RegistryDoc)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        factors = _factor_library(doc.factors, source)
        factors = factors.with_sets(_factor_sets(doc.factor_sets, factors, source))
        thresholds = _gb40879_thresholds(doc.gb40879_thresholds, source)
        sites: list[Site] = []
        meters: list[Meter] = []
        for s in doc.sites:
            if not _ID.match(s.id):
                raise ConfigError(f"{source}: site id {s.id!r} must match {_ID.pattern}")
            if s.grid_factor is not None:
                if s.grid_factor not in factors:
                    raise ConfigError(f"{source}: site {s.id}: unknown grid_factor {s.grid_factor!r}")
                if factors.get(s.grid_factor).unit != GRID_FACTOR_UNIT:
                    raise ConfigError(
                        f"{source}: site {s.id}: grid_factor {s.grid_factor!r} is in "
                        f"{factors.get(s.grid_factor).unit}, not {GRID_FACTOR_UNIT}"
                    )
            if s.factor_set not in factors.sets:
                raise ConfigError(
                    f"{source}: site {s.id}: unknown factor_set {s.factor_set!r}; "
                    f"known: {', '.join(sorted(factors.sets))}"
                )
            if s.pue_category is not None and not s.pue_category.strip():
                raise ConfigError(f"{source}: site {s.id}: pue_category must not be empty")
            for key, value in s.labels.items():
                if not _ID.match(key) or not _ID.match(value):
                    raise ConfigError(
                        f"{source}: site {s.id}: label {key}: {value} must be two words of letters, "
                        f"digits, '_', '.' or '-' ({_ID.pattern})"
                    )
            try:
                site = msgspec.convert(
                    {
                        "id": s.id,
                        "name": s.name,
                        "kind": s.kind,
                        "timezone": s.timezone,
                        "grid_factor": s.grid_factor,
                        "factor_set": s.factor_set,
                        "pue_category": s.pue_category,
                        "labels": s.labels,
                    },
                    Site,
                )
            except msgspec.ValidationError as exc:
                raise ConfigError(f"{source}: site {s.id}: {exc}") from exc
            _check_timezone(site, source)
            sites.append(site)
            seen: set[str] = set()
            for m in s.meters:
                if not _ID.match(m.id):
                    raise ConfigError(f"{source}: meter id {m.id!r} must match {_ID.pattern}")
                if m.id in seen:
                    raise ConfigError(f"{source}: site {s.id}: duplicate meter id {m.id!r}")
                seen.add(m.id)
                try:
                    quantity, _ = meter_quantity(m.unit)
                except KeyError as exc:
                    raise ConfigError(f"{source}: meter {s.id}/{m.id}: {exc.args[0]}") from None
                allowed = CARRIER_QUANTITIES[m.carrier]
                if quantity not in allowed:
                    units = sorted(u for u, (q, _) in METER_UNITS.items() if q in allowed)
                    raise ConfigError(
                        f"{source}: meter {s.id}/{m.id}: unit {m.unit!r} does not fit carrier "
                        f"{m.carrier.value}; use one of {', '.join(units)}"
                    )
                register = _meter_register(m, quantity, f"{source}: meter {s.id}/{m.id}")
                if m.rated_kw is not None and not (0 < m.rated_kw < math.inf):
                    raise ConfigError(
                        f"{source}: meter {s.id}/{m.id}: rated_kw must be a number > 0, not {m.rated_kw}"
                    )
                meters.append(
                    Meter(
                        id=m.id,
                        site_id=s.id,
                        carrier=m.carrier,
                        role=m.role,
                        register=register,
                        unit=m.unit,
                        register_max=m.register_max,
                        rated_kw=m.rated_kw,
                        zone=m.zone,
                    )
                )
        if len({s.id for s in sites}) != len(sites):
            raise ConfigError(f"{source}: duplicate site ids")
        rules: list[ThresholdRule] = []
        stale_rules: list[StalenessRule] = []
        for r in doc.rules:
            rule = _rule(r, source)
            if isinstance(rule, StalenessRule):
                stale_rules.append(rule)
            else:
                rules.append(rule)
        names = [r.name for r in doc.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}: duplicate rule names")
        notifications = None if doc.notifications is None else parse_notifications(doc.notifications, source)
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
    try:
        doc = msgspec.convert(raw, _RuleDoc)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: rule {raw.get('name', '?')}: {exc}") from exc
    return _rule(doc, source)


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


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
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


def _rule(r: _RuleDoc, source: str) -> Rule:
    for field, labels in (("labels", r.labels), ("site_labels", r.site_labels)):
        if (problem := _labels_problem(labels)) is not None:
            raise ConfigError(f"{source}: rule {r.name}: {field}: {problem}")
    if r.silent_for is not None:
        return _staleness_rule(r, source)
    if r.per is not None:
        raise ConfigError(f"{source}: rule {r.name}: per (meter or site) belongs to staleness rules")
    if r.meter_roles:
        raise ConfigError(
            f"{source}: rule {r.name}: meter_roles scope staleness rules (silent_for); a threshold "
            "rule watches a site's KPIs"
        )
    if r.kpi is None or r.op is None or r.threshold is None:
        raise ConfigError(
            f"{source}: rule {r.name}: give kpi, op and threshold (a threshold rule) or silent_for "
            "(a staleness rule)"
        )
    if r.kpi not in KPI_FIELDS:
        raise ConfigError(f"{source}: rule {r.name}: unknown kpi {r.kpi!r}; known: {sorted(KPI_FIELDS)}")
    try:
        rule = msgspec.convert(
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
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: rule {r.name}: {exc}") from exc
    if (problem := rule.problem()) is not None:
        raise ConfigError(f"{source}: rule {r.name}: {problem}")
    return rule


def _staleness_rule(r: _RuleDoc, source: str) -> StalenessRule:
    where = f"{source}: rule {r.name}"
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
        raise ConfigError(f"{where}: a staleness rule (silent_for) takes no {', '.join(given)}")
    assert r.silent_for is not None
    silent_ms = parse_duration_ms(r.silent_for)
    if silent_ms <= 0:
        raise ConfigError(f"{where}: silent_for must be positive")
    unknown = sorted(set(r.meter_roles) - {role.value for role in Role})
    if unknown:
        raise ConfigError(f"{where}: unknown meter roles {unknown}")
    try:
        return msgspec.convert(
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
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


GRID_FACTOR_UNIT = "kgCO2/kWh"


def _meter_register(m: _MeterDoc, quantity: Quantity, where: str) -> Register:
    """A power unit means instantaneous samples, to be integrated; any other unit is a register. The two
    cannot be mixed: differencing kW samples, or integrating a kWh register, gives nonsense."""
    is_power = quantity is Quantity.POWER_KW
    if is_power and m.register_max is not None:
        raise ConfigError(f"{where}: register_max applies to energy registers, not to power samples")
    if m.register is None:
        return Register.POWER if is_power else Register.CUMULATIVE
    if is_power and m.register is not Register.POWER:
        raise ConfigError(
            f"{where}: unit {m.unit!r} is power, so the register must be power (samples integrated "
            f"over time), not {m.register.value}; use an energy unit (kWh, MWh, Wh) for a {m.register.value} "
            "register"
        )
    if m.register is Register.POWER and not is_power:
        raise ConfigError(
            f"{where}: register power needs a power unit (W, kW, MW), not {m.unit!r}; use register "
            "cumulative or interval for an energy register"
        )
    return m.register


def _factor_sets(docs: list[_FactorSetDoc], library: FactorLibrary, source: str) -> tuple[FactorSet, ...]:
    """The registry's factor sets. Each slot must be one the KPIs read and name a factor in the unit of
    the shipped one: the code multiplies by it, so a kgCO2/m3 factor in the grid slot would be wrong."""
    shipped = {f.id: f for f in DEFAULT_FACTORS}
    sets: list[FactorSet] = []
    seen: set[str] = set()
    for doc in docs:
        where = f"{source}: factor set {doc.name!r}"
        if not _ID.match(doc.name):
            raise ConfigError(f"{where}: the name must match {_ID.pattern}")
        if doc.name == DEFAULT_SET.name:
            raise ConfigError(
                f"{where}: the default set is built in (the shipped factors); give yours another name "
                "and choose it with a site's factor_set"
            )
        if doc.name in seen:
            raise ConfigError(f"{where}: defined twice")
        seen.add(doc.name)
        for slot, factor_id in doc.slots.items():
            if slot not in DEFAULT_SLOTS:
                raise ConfigError(
                    f"{where}: unknown slot {slot!r}; known: {', '.join(sorted(DEFAULT_SLOTS))}"
                )
            if factor_id not in library:
                raise ConfigError(f"{where}: slot {slot!r}: unknown factor {factor_id!r}")
            unit = library.get(factor_id).unit
            expected = shipped[DEFAULT_SLOTS[slot]].unit
            if unit != expected:
                raise ConfigError(
                    f"{where}: slot {slot!r}: factor {factor_id!r} is in {unit}, the slot needs {expected}"
                )
        sets.append(FactorSet(name=doc.name, slots=dict(doc.slots), description=doc.description))
    return tuple(sets)


def _gb40879_thresholds(values: list[float] | None, source: str) -> tuple[float, float, float]:
    if values is None:
        return DEFAULT_GB40879_THRESHOLDS
    if len(values) != 3 or not all(0 < v < math.inf for v in values) or not values[0] < values[1] < values[2]:
        raise ConfigError(
            f"{source}: gb40879_thresholds must be three increasing numbers > 0 (the upper limits of "
            f"grades 1, 2 and 3, e.g. [1.2, 1.3, 1.5]), not {values}"
        )
    return values[0], values[1], values[2]


def _factor_library(docs: list[_FactorDoc], source: str) -> FactorLibrary:
    """The shipped factors with the registry's overrides. An override of a shipped factor must keep its
    unit: the code multiplies by it, so 2.16 kgCO2/kg in place of kgCO2/m3 would be silently wrong."""
    library = FactorLibrary(DEFAULT_FACTORS)
    overrides: list[Factor] = []
    for doc in docs:
        try:
            factor = msgspec.convert(msgspec.to_builtins(doc), Factor)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: factor {doc.id}: {exc}") from exc
        if factor.id in library and library.get(factor.id).unit != factor.unit:
            raise ConfigError(
                f"{source}: factor {factor.id}: unit {factor.unit!r} differs from the shipped "
                f"{library.get(factor.id).unit!r}; convert the value to that unit"
            )
        if not (factor.value >= 0 and factor.value < float("inf")):
            raise ConfigError(f"{source}: factor {factor.id}: value must be a finite number >= 0")
        overrides.append(factor)
    return library.with_overrides(tuple(overrides))


def _check_timezone(site: Site, source: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(site.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{source}: site {site.id}: unknown time zone {site.timezone!r}") from exc
