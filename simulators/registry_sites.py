"""The user's own registry, simulated: every meter driven by the park or data-centre model of its role.

A site of the registry gets no physics of its own. It steps the template models
(``simulators.park``, ``simulators.datacentre``) under its own id, time zone and seed, and each meter
reports the template's rate for its role:

* park roles (grid import/export, PV, wind, storage charge/discharge, heat pump, process load, gas
  boiler) from ``ParkSimulator.last``; data-centre roles (facility, IT, cooling, UPS losses, lighting)
  from ``DataCentreSimulator.last``. So a data centre with a PV roof gets the park's sun, and PUE and
  the grid balance keep the templates' physics.
* Meters sharing a role split the role's rate equally (two IT halls each carry half of the IT load).
* One scale per site: when meters state ``rated_kw``, the whole site is scaled so that each rated
  meter's share of its role's template peak fits its rating (ratios such as PUE stay as in the
  template), and every rate is clipped at its meter's ``rated_kw`` besides: a reading never implies
  more than the meter's rated power.
* The meter's register kind and unit decide the payload: a cumulative register (rolling over at
  ``register_max``), the interval's amount, or a power sample, each in the field of its declared unit
  (``energy_mwh``, ``volume_l``, ``power_w`` ...).

Meters whose role (or whose carrier for that role) no template models are not simulated;
``registry_fleet``
lists them with the reason, and the command line prints that list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from peakwatch.config import Registry
from peakwatch.domain.models import Carrier, Meter, Role, Site, SiteKind
from peakwatch.domain.units import PAYLOAD_FIELDS, meter_quantity
from simulators.datacentre import DataCentreSimulator, DataCentreStep
from simulators.meters import MeterBank, MeterSample, MeterSpec, SiteInfo
from simulators.park import ParkSimulator, ParkStep
from simulators.randomness import derived_rng


@dataclass(frozen=True, slots=True)
class RoleModel:
    """Where a role's rate comes from (canonical unit per hour: kW, m3/h) and how large it gets."""

    kind: SiteKind
    """The template that models it."""
    carrier: Carrier
    peak: float
    """About the largest rate the template gives this role (exact where the model caps it: PV, wind,
    storage, IT, lighting); the site's scale fits it to the meters' ``rated_kw``."""
    rate: Callable[[ParkStep | DataCentreStep], float]


def _park(get: Callable[[ParkStep], float]) -> Callable[[ParkStep | DataCentreStep], float]:
    def rate(step: ParkStep | DataCentreStep) -> float:
        assert isinstance(step, ParkStep)
        return get(step)

    return rate


def _dc(get: Callable[[DataCentreStep], float]) -> Callable[[ParkStep | DataCentreStep], float]:
    def rate(step: ParkStep | DataCentreStep) -> float:
        assert isinstance(step, DataCentreStep)
        return get(step)

    return rate


_PARK, _DC, _ELECTRICITY = SiteKind.PARK, SiteKind.DATA_CENTRE, Carrier.ELECTRICITY
ROLE_MODELS: dict[Role, RoleModel] = {
    Role.GRID_IMPORT: RoleModel(_PARK, _ELECTRICITY, 3500.0, _park(lambda s: s.grid_import_kw)),
    Role.GRID_EXPORT: RoleModel(_PARK, _ELECTRICITY, 4000.0, _park(lambda s: s.grid_export_kw)),
    Role.PV_GENERATION: RoleModel(_PARK, _ELECTRICITY, 2500.0, _park(lambda s: s.pv_kw)),
    Role.WIND_GENERATION: RoleModel(_PARK, _ELECTRICITY, 1500.0, _park(lambda s: s.wind_kw)),
    Role.STORAGE_CHARGE: RoleModel(_PARK, _ELECTRICITY, 1000.0, _park(lambda s: s.battery_charge_kw)),
    Role.STORAGE_DISCHARGE: RoleModel(_PARK, _ELECTRICITY, 1000.0, _park(lambda s: s.battery_discharge_kw)),
    Role.HEAT_PUMP: RoleModel(_PARK, _ELECTRICITY, 300.0, _park(lambda s: s.heat_pump_kw)),
    Role.PROCESS_LOAD: RoleModel(_PARK, _ELECTRICITY, 2000.0, _park(lambda s: s.process_kw)),
    Role.BOILER: RoleModel(_PARK, Carrier.NATURAL_GAS, 100.0, _park(lambda s: s.boiler_gas_m3_per_h)),
    Role.FACILITY_TOTAL: RoleModel(_DC, _ELECTRICITY, 3200.0, _dc(lambda s: s.facility_kw)),
    Role.IT_LOAD: RoleModel(_DC, _ELECTRICITY, 2000.0, _dc(lambda s: s.it_kw)),
    Role.COOLING: RoleModel(_DC, _ELECTRICITY, 1000.0, _dc(lambda s: s.cooling_kw)),
    Role.UPS_LOSSES: RoleModel(_DC, _ELECTRICITY, 100.0, _dc(lambda s: s.ups_losses_kw)),
    Role.LIGHTING: RoleModel(_DC, _ELECTRICITY, 24.0, _dc(lambda s: s.lighting_kw)),
}


@dataclass(frozen=True, slots=True)
class Unsimulated:
    """A registry meter the simulator leaves out, and why."""

    site_id: str
    meter_id: str
    reason: str


def unsupported_reason(meter: Meter) -> str | None:
    """Why no template can drive ``meter`` (``None``: one can)."""
    model = ROLE_MODELS.get(meter.role)
    if model is None:
        return f"no model for role {meter.role.value}"
    if meter.carrier is not model.carrier:
        return f"role {meter.role.value} is modelled as {model.carrier.value}, not {meter.carrier.value}"
    return None


def payload_field(unit: str) -> tuple[str, float]:
    """The payload field that carries a meter's main quantity in its own unit, and that unit's scale
    to the canonical one (``MWh`` -> ``energy_mwh``, 1000)."""
    quantity, scale = meter_quantity(unit)
    for name, (q, s) in PAYLOAD_FIELDS.items():
        if q is quantity and s == scale:
            return name, scale
    raise KeyError(f"no payload field for unit {unit!r}")  # METER_UNITS and PAYLOAD_FIELDS disagree


def meter_spec(meter: Meter) -> MeterSpec:
    field, scale = payload_field(meter.unit)
    return MeterSpec(
        meter.id,
        meter.carrier,
        meter.role,
        unit=meter.unit,
        register_field=field,
        reports_power=meter.carrier is Carrier.ELECTRICITY,
        register_max=meter.register_max,
        zone=meter.zone,
        register=meter.register,
        scale=scale,
    )


class RegistrySite:
    """One site of the user's registry (``SiteModel``): its simulable meters, driven by the templates."""

    def __init__(self, site: Site, meters: Sequence[Meter], *, seed: int) -> None:
        if not meters:
            raise ValueError(f"site {site.id}: no meter to simulate")
        self.info: Final = SiteInfo(site.id, site.name, site.kind, site.timezone)
        self.meters: Final = tuple(meter_spec(m) for m in meters)
        kinds = {ROLE_MODELS[m.role].kind for m in meters}
        self._park = ParkSimulator(self._as(SiteKind.PARK), seed=seed) if _PARK in kinds else None
        self._dc = DataCentreSimulator(self._as(SiteKind.DATA_CENTRE), seed=seed) if _DC in kinds else None
        sharing = Counter(m.role for m in meters)
        scale = min(
            (
                m.rated_kw * sharing[m.role] / ROLE_MODELS[m.role].peak
                for m in meters
                if m.rated_kw is not None
            ),
            default=1.0,
        )
        # (meter id, role model, factor on the role's template rate, rated cap)
        self._drive = [(m.id, ROLE_MODELS[m.role], scale / sharing[m.role], m.rated_kw) for m in meters]
        start = derived_rng(seed, site.id, "registers")
        initial: dict[str, float] = {}
        for spec in self.meters:
            value = start.uniform(1_000.0, 200_000.0) * scale / spec.scale
            initial[spec.id] = value % spec.register_max if spec.register_max else value
        self.bank = MeterBank(site.id, self.meters, initial)

    def _as(self, kind: SiteKind) -> SiteInfo:
        return SiteInfo(self.info.id, self.info.name, kind, self.info.timezone)

    def step(self, ts_ms: int) -> list[MeterSample]:
        steps: dict[SiteKind, ParkStep | DataCentreStep] = {}
        if self._park is not None:
            self._park.step(ts_ms)
            assert self._park.last is not None
            steps[_PARK] = self._park.last
        if self._dc is not None:
            self._dc.step(ts_ms)
            assert self._dc.last is not None
            steps[_DC] = self._dc.last
        rates: dict[str, float] = {}
        for meter_id, model, factor, rated in self._drive:
            rate = max(model.rate(steps[model.kind]) * factor, 0.0)
            rates[meter_id] = rate if rated is None else min(rate, rated)
        return self.bank.record(ts_ms, rates)


def registry_fleet(registry: Registry, *, seed: int) -> tuple[list[RegistrySite], list[Unsimulated]]:
    """The models of every site that has a simulable meter, and the meters left out with the reason
    (a site none of whose meters can be simulated is left out whole, its meters listed)."""
    models: list[RegistrySite] = []
    left_out: list[Unsimulated] = []
    for site in registry.sites.values():
        simulable: list[Meter] = []
        for meter in registry.site_meters(site.id):
            reason = unsupported_reason(meter)
            if reason is None:
                simulable.append(meter)
            else:
                left_out.append(Unsimulated(site.id, meter.id, reason))
        if simulable:
            models.append(RegistrySite(site, simulable, seed=seed))
    return models, left_out
