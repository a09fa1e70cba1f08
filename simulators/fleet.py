"""A fleet of simulated sites, and the registry YAML that describes exactly those sites.

Site ids (stable, so a registry written once matches later runs with the same ``sites``):

* template fleet: sites alternate park / data centre. The first park is ``park-changsha`` and the
  first data centre ``dc-xiangjiang`` (the demo registry's sites), then ``park-2``, ``dc-2``,
  ``park-3``, ``dc-3`` ... So ``sites=2`` is the demo, ``sites=1`` is the park alone.
* synthetic fleet (``synthetic_meters > 0``): ``load-site-0001`` ... each with meters ``load-0001``
  ... (kind ``park``, process-load meters), for benchmarks.

Every site draws its randomness from ``(seed, site id)``, so site ``park-2`` behaves the same whether
the fleet has 3 sites or 300.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from peakwatch.domain.models import SiteKind
from simulators.datacentre import DataCentreSimulator
from simulators.meters import SiteInfo, SiteModel
from simulators.park import ParkSimulator
from simulators.synthetic import SyntheticSimulator

DEMO_PARK_ID = "park-changsha"
DEMO_DC_ID = "dc-xiangjiang"
_TEMPLATE_ID = re.compile(r"(park|dc)-([2-9]|[1-9][0-9]+)")


@dataclass(frozen=True, slots=True)
class FleetSpec:
    sites: int = 2
    synthetic_meters: int = 0
    """Meters per site in synthetic mode; 0 builds the park / data-centre templates."""
    seed: int = 0


def site_infos(spec: FleetSpec) -> list[SiteInfo]:
    """The identities of the fleet's sites, in publishing order (see the module docstring)."""
    if spec.sites < 1:
        raise ValueError("a fleet needs at least one site")
    if spec.synthetic_meters > 0:
        return [
            SiteInfo(f"load-site-{i:04d}", f"Synthetic load site {i}", SiteKind.PARK)
            for i in range(1, spec.sites + 1)
        ]
    infos: list[SiteInfo] = []
    for i in range(spec.sites):
        n = i // 2 + 1
        if i % 2 == 0:
            infos.append(
                SiteInfo(DEMO_PARK_ID, "Changsha green micro-grid park", SiteKind.PARK)
                if n == 1
                else SiteInfo(f"park-{n}", f"Simulated micro-grid park {n}", SiteKind.PARK)
            )
        else:
            infos.append(
                SiteInfo(DEMO_DC_ID, "Xiangjiang data centre", SiteKind.DATA_CENTRE)
                if n == 1
                else SiteInfo(f"dc-{n}", f"Simulated data centre {n}", SiteKind.DATA_CENTRE)
            )
    return infos


def template_position(site_id: str) -> int | None:
    """Where a template site id sits in the fleet order (``park-changsha`` 0, ``dc-xiangjiang`` 1,
    ``park-2`` 2, ``dc-2`` 3 ...), or ``None`` for ids the template fleet never produces."""
    if site_id == DEMO_PARK_ID:
        return 0
    if site_id == DEMO_DC_ID:
        return 1
    match = _TEMPLATE_ID.fullmatch(site_id)
    if match is None:
        return None
    return 2 * (int(match.group(2)) - 1) + (0 if match.group(1) == "park" else 1)


def build_fleet(spec: FleetSpec) -> list[SiteModel]:
    models: list[SiteModel] = []
    for info in site_infos(spec):
        if spec.synthetic_meters > 0:
            models.append(SyntheticSimulator(info, meters=spec.synthetic_meters, seed=spec.seed))
        elif info.kind is SiteKind.PARK:
            models.append(ParkSimulator(info, seed=spec.seed))
        else:
            models.append(DataCentreSimulator(info, seed=spec.seed))
    return models


def _demo_rules() -> list[Any]:
    text = resources.files("peakwatch.demo").joinpath("sites.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text) or {}
    rules: list[Any] = doc.get("rules", [])
    return rules


def registry_document(fleet: Sequence[SiteModel], *, include_demo_rules: bool = True) -> dict[str, Any]:
    """The registry as a mapping (``peakwatch.config.Registry.from_mapping`` accepts it)."""
    sites: list[dict[str, Any]] = []
    for model in fleet:
        info = model.info
        meters: list[dict[str, Any]] = []
        for m in model.meters:
            doc: dict[str, Any] = {
                "id": m.id,
                "carrier": m.carrier.value,
                "role": m.role.value,
                "unit": m.unit,
            }
            if m.register_max is not None:
                doc["register_max"] = m.register_max
            if m.zone is not None:
                doc["zone"] = m.zone
            if m.rated_kw is not None:
                doc["rated_kw"] = m.rated_kw
            meters.append(doc)
        sites.append(
            {
                "id": info.id,
                "name": info.name,
                "kind": info.kind.value,
                "timezone": info.timezone,
                "grid_factor": info.grid_factor,
                # simulated data centres meter IT at the UPS output, as the demo states (no default)
                **({"pue_category": "category 1"} if info.kind is SiteKind.DATA_CENTRE else {}),
                "meters": meters,
            }
        )
    document: dict[str, Any] = {"sites": sites}
    if include_demo_rules:
        document["rules"] = _demo_rules()
    return document


def registry_yaml(fleet: Sequence[SiteModel], *, include_demo_rules: bool = True) -> str:
    """Registry YAML (schema of peakwatch/demo/sites.yaml) for exactly the sites and meters of ``fleet``,
    so that a scale or bench run gives peakwatch the registry matching what the simulator publishes.
    The demo's alert rules are copied unless ``include_demo_rules`` is false."""
    header = (
        f"# Generated by the peakwatch simulator for {len(fleet)} site(s).\n"
        "# Pass it to peakwatch with --config so every simulated meter is known.\n"
    )
    body = yaml.safe_dump(
        registry_document(fleet, include_demo_rules=include_demo_rules),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=120,
    )
    return header + body
