"""What ``peakwatch simulate`` feeds and where to: the fleet (the user's registry or the template
sites) and the broker (``--mqtt-url``, else the running stack's card, else the default port); and what
it shows while and after it runs.

Kept apart from the option parsing in ``cli.simulate`` so each stays short.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.running import card_path, read_card
from peakwatch.clock import now_ms
from peakwatch.config import Registry, default_data_dir
from peakwatch.domain.instants import to_datetime
from peakwatch.errors import PeakwatchError
from peakwatch.store import Store
from simulators.fleet import build_fleet
from simulators.meters import SiteModel
from simulators.options import SimStats, SimulationOptions
from simulators.registry_sites import ROLE_MODELS, Unsimulated, registry_fleet

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
_FAULT_KINDS = ("dropped", "duplicated", "reordered", "malformed", "resets", "skewed_readings")


@dataclass(frozen=True, slots=True)
class Broker:
    url: str
    source: str
    """Where the URL came from, said in every connection error (the URL alone does not tell a user
    why that broker was tried)."""
    database_url: str | None = None
    """The database of the running stack whose broker this is (from its card), so the simulated
    registers continue from what the stack stored."""


def resolve_broker(mqtt_url: str | None, data_dir: Path | None) -> Broker:
    """``--mqtt-url`` wins; otherwise the broker of the ``peakwatch up`` running from the data
    directory (its card); otherwise the default port."""
    if mqtt_url:
        return Broker(mqtt_url, "--mqtt-url")
    directory = data_dir if data_dir is not None else default_data_dir()
    card = read_card(directory)
    if card is not None:
        return Broker(card.mqtt_url, f"the running stack's card {card_path(directory)}", card.database_url)
    return Broker(
        DEFAULT_MQTT_URL,
        f"the default: no running `peakwatch up` found in {directory}; start one, pass its --data-dir, "
        "or give --mqtt-url",
    )


def connection_error(exc: PeakwatchError, broker: Broker) -> str:
    """The publisher's error with where the URL came from, and how to authenticate when refused."""
    text = f"{exc}\n(broker URL from {broker.source})"
    lowered = str(exc).lower()
    if "auth" in lowered or "bad user" in lowered:
        text += (
            "\nthe broker wants a device credential: --mqtt-url mqtt://<device>:<secret>@host:port "
            "(peakwatch devices add; docs/security.md)"
        )
    return text


def registry_option(config: Path | None, *, sites: int | None, synthetic_meters: int) -> Registry | None:
    """The user's registry (``None``: the template fleet); fleet-shaping options cannot apply to it."""
    if config is None:
        return None
    if sites is not None or synthetic_meters:
        raise typer.BadParameter(
            "--sites and --synthetic-meters shape the template fleet; --config simulates every site of "
            "the registry (choose some with --site)",
            param_hint="--config",
        )
    try:
        return Registry.from_yaml(config)
    except PeakwatchError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None


async def continue_from_store(
    store: Store, options: SimulationOptions, meters: set[tuple[str, str]] | None = None
) -> SimulationOptions:
    """Continue the simulated meters where the store left them: registers from their last stored values
    and, when the last reading is recent, event time from just after it (instead of a backfill that
    would overlap what is stored, or registers starting afresh, which the processor would take for
    register drops). ``meters`` limits it to the fleet's ``(site, meter)`` pairs."""
    states = [
        s
        for s in await store.load_meter_states()
        if s.last_value is not None and (meters is None or (s.site_id, s.meter_id) in meters)
    ]
    if not states:
        return options
    now = now_ms()
    # The first simulated step only sets the registers' starting point; starting it at the last stored
    # timestamp makes that step a duplicate of what is stored, and energy flows from there on.
    start_ms = max(max(s.last_ts_ms for s in states), now - options.backfill_ms)
    resume = tuple((s.site_id, s.meter_id, s.last_value) for s in states if s.last_value is not None)
    return dataclasses.replace(options, resume_registers=resume, backfill_ms=max(0, now - start_ms))


async def continue_from_stack(
    options: SimulationOptions, fleet: Sequence[SiteModel], broker: Broker, console: Console
) -> SimulationOptions:
    """``continue_from_store`` with the running stack's database, when the broker is that stack's and
    no ``--start`` was given; a database that cannot be read leaves the registers as they are, said."""
    if broker.database_url is None or options.start_ms is not None:
        return options
    meters = {(m.info.id, spec.id) for m in fleet for spec in m.meters}
    try:
        store = await Store.connect(broker.database_url, max_size=1)
    except PeakwatchError as exc:
        console.print(Text(f"note: registers start afresh: cannot read the stack's database: {exc}"))
        return options
    try:
        return await continue_from_store(store, options, meters)
    finally:
        await store.close()


def select_fleet(
    options: SimulationOptions, registry: Registry | None, only: Sequence[str]
) -> tuple[list[SiteModel], list[Unsimulated]]:
    """The sites to publish and the registry meters left out. ``only`` restricts to those site ids
    (an id the fleet lacks is an error naming the ones it has)."""
    left_out: list[Unsimulated] = []
    if registry is None:
        fleet: list[SiteModel] = list(build_fleet(options.fleet_spec))
    else:
        models, left_out = registry_fleet(registry, seed=options.seed)
        fleet = list(models)
        if not fleet:
            raise PeakwatchError("no meter of the registry can be simulated:\n" + _left_out_text(left_out))
    if only:
        known = [m.info.id for m in fleet]
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise PeakwatchError(
                f"--site {', '.join(unknown)}: not a simulated site; the fleet has {', '.join(known)}"
            )
        fleet = [m for m in fleet if m.info.id in set(only)]
        left_out = [u for u in left_out if u.site_id in set(only)]
    names = {f"{m.info.id}/{spec.id}" for m in fleet for spec in m.meters}
    unknown_resets = sorted(options.faults.reset_meters - names)
    if unknown_resets:
        raise PeakwatchError(
            f"--reset-meter {', '.join(unknown_resets)}: no such simulated meter (SITE/METER, e.g. "
            f"{min(names)})"
        )
    return fleet, left_out


def _left_out_text(left_out: Sequence[Unsimulated]) -> str:
    return "\n".join(f"  {u.site_id}/{u.meter_id}: {u.reason}" for u in left_out)


def report_left_out(console: Console, left_out: Sequence[Unsimulated]) -> None:
    """Name every registry meter that gets no readings, so its silence is not taken for a fault."""
    if not left_out:
        return
    table = Table(title=f"not simulated ({len(left_out)} meter(s))", title_justify="left", box=None)
    table.add_column("meter", style="yellow", no_wrap=True)
    table.add_column("why")
    for u in left_out:
        table.add_row(Text(f"{u.site_id}/{u.meter_id}"), Text(u.reason))
    console.print(table)
    modelled = ", ".join(sorted(role.value for role in ROLE_MODELS))
    console.print(Text(f"(the park and data-centre models cover the roles {modelled})"))


def fleet_zone(fleet: Sequence[SiteModel]) -> tzinfo:
    """The zone event times are shown in: the sites' own when they share one (the template fleets'
    Asia/Shanghai), else UTC. Never the machine's: the simulated meters keep their sites' clocks."""
    zones = {m.info.timezone for m in fleet}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else UTC


def progress_line(stats: SimStats, zone: tzinfo = UTC) -> Text:
    sim = "-"
    if stats.last_ts_ms is not None:
        sim = to_datetime(stats.last_ts_ms, zone).strftime("%Y-%m-%d %H:%M:%S %z")
    line = Text()
    line.append("simulating ", style="bold")
    line.append(
        f"event time {sim}  steps {stats.steps:,}  messages {stats.published:,}  "
        f"readings {stats.readings:,}  "
    )
    line.append(f"{stats.messages_per_s:,.0f} msg/s  {stats.readings_per_s:,.0f} readings/s", style="cyan")
    injected = sum(stats.faults.get(k, 0) for k in _FAULT_KINDS)
    if injected:
        line.append(f"  faults {injected:,}", style="yellow")
    return line


def summary(stats: SimStats) -> Table:
    table = Table(title="simulation finished", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("steps", f"{stats.steps:,}"),
        ("readings generated", f"{stats.readings:,}"),
        ("messages produced", f"{stats.messages:,}"),
        ("messages published", f"{stats.published:,}"),
        ("readings published", f"{stats.readings_published:,}"),
        ("unacknowledged at exit", f"{stats.unacknowledged:,}"),
        ("elapsed", f"{stats.elapsed_s:,.1f} s"),
        ("rate", f"{stats.messages_per_s:,.0f} msg/s, {stats.readings_per_s:,.0f} readings/s"),
    ]
    rows += [(f"fault: {k}", f"{v:,}") for k, v in stats.faults.items() if v]
    for k, v in rows:
        table.add_row(k, v)
    return table
