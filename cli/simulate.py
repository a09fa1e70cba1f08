"""``peakwatch simulate``: feed a broker with simulated meters: the user's registry (``--config``),
the template parks and data centres, or synthetic load.

The command function ``simulate`` is mounted by ``cli.main``; nothing runs at import time. Options
are parsed here into ``simulators.options.SimulationOptions``; the fleet and the broker are chosen in
``cli.simulate_sources``; the run itself is ``simulators.publisher.run_simulation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from cli.simulate_sources import (
    Broker,
    connection_error,
    continue_from_stack,
    fleet_zone,
    progress_line,
    registry_option,
    report_left_out,
    resolve_broker,
    select_fleet,
    summary,
)
from peakwatch.clock import now_ms
from peakwatch.config import Registry
from peakwatch.domain.instants import parse_iso
from peakwatch.durations import parse_duration_ms
from peakwatch.errors import InstantError, PeakwatchError
from peakwatch.redaction import redact_text
from simulators.faults import MALFORMED_KINDS, FaultConfig
from simulators.fleet import build_fleet, registry_yaml
from simulators.meters import SiteModel
from simulators.options import SimStats, SimulationOptions
from simulators.pacing import parse_speed

_BROKER = "Broker"
_FLEET = "Fleet"
_TIME = "Time"
_FAULTS = "Fault injection"
_OUTPUT = "Output"


def _duration_ms(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration_ms(value)
    except PeakwatchError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def parse_time_ms(value: str, *, now_ms: int) -> int:
    """Epoch milliseconds, an ISO 8601 time with a UTC offset, or ``+5m`` / ``-1h`` relative to now."""
    text = value.strip()
    if text[:1] in "+-" and not text[1:].isdigit():
        delta = parse_duration_ms(text[1:])
        return now_ms + delta if text[0] == "+" else now_ms - delta
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return parse_iso(text)
    except InstantError as exc:
        if "no UTC offset" in str(exc):
            raise
        raise InstantError(
            f"invalid time {value!r}: use epoch ms, ISO 8601 with offset, or +5m / -1h"
        ) from None


def _time_ms(value: str | None, option: str, now_ms: int) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_ms(value, now_ms=now_ms)
    except (ValueError, PeakwatchError) as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _probability(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value} is not a probability between 0 and 1")
    return value


def _fault_probability(help_text: str) -> Any:
    """A fault's probability: checked to lie in 0..1, listed with the fault options."""
    return typer.Option(callback=_probability, rich_help_panel=_FAULTS, help=help_text)


async def _run(
    options: SimulationOptions, fleet: list[SiteModel], broker: Broker, console: Console, quiet: bool
) -> SimStats:
    from simulators.publisher import run_simulation

    options = await continue_from_stack(options, fleet, broker, console)
    mqtt_url = broker.url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(sig: signal.Signals) -> None:
        # first Ctrl-C: finish cleanly (flush, wait for acks); a second one interrupts
        stop.set()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop, sig)
    try:
        if quiet:
            return await run_simulation(options, mqtt_url=mqtt_url, stop=stop, fleet=fleet)
        zone = fleet_zone(fleet)
        with Live(Text("connecting…"), console=console, refresh_per_second=4, transient=False) as live:
            return await run_simulation(
                options,
                mqtt_url=mqtt_url,
                stop=stop,
                fleet=fleet,
                progress=lambda s: live.update(progress_line(s, zone)),
            )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _write_registry(options: SimulationOptions, path: Path, console: Console) -> None:
    """The registry of the template fleet, for ``peakwatch --config``, before publishing to it."""
    path.write_text(registry_yaml(build_fleet(options.fleet_spec)), encoding="utf-8")
    console.print(f"wrote the registry of {options.sites} site(s) to ", Text(str(path)))


def _publish(
    options: SimulationOptions,
    registry: Registry | None,
    only: Sequence[str],
    *,
    mqtt_url: str | None,
    data_dir: Path | None,
    console: Console,
    quiet: bool,
) -> SimStats:
    """The sources (the fleet, the broker), then the run. A failure of any is one line and exit 2;
    once the broker is chosen the line also says where its URL came from."""
    broker: Broker | None = None
    try:
        fleet, left_out = select_fleet(options, registry, only)
        report_left_out(console, left_out)
        broker = resolve_broker(mqtt_url, data_dir)
        return asyncio.run(_run(options, fleet, broker, console, quiet))
    except PeakwatchError as exc:
        text = str(exc) if broker is None else connection_error(exc, broker)
        console.print(Text("error: ", style="red"), Text(redact_text(text)), sep="")
        raise typer.Exit(2) from exc


def simulate(
    mqtt_url: Annotated[
        str | None,
        typer.Option(
            "--mqtt-url",
            envvar="PEAKWATCH_MQTT_URL",
            rich_help_panel=_BROKER,
            help="Broker to publish to: mqtt://[user[:password]@]host[:port] (mqtts:// for TLS; a device "
            "credential as user and password when the broker wants one). Default: the broker of the "
            "peakwatch up running from --data-dir, else mqtt://127.0.0.1:1883.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="PEAKWATCH_DATA_DIR",
            file_okay=False,
            rich_help_panel=_BROKER,
            help="Data directory of the running peakwatch up whose broker to publish to (when no "
            "--mqtt-url). Default ~/.local/share/peakwatch.",
        ),
    ] = None,
    topic_prefix: Annotated[
        str,
        typer.Option(
            envvar="PEAKWATCH_MQTT_TOPIC_PREFIX",
            rich_help_panel=_BROKER,
            help="Topics are <prefix>/<site_id>/<meter_id>; must match the collector's prefix.",
        ),
    ] = "telemetry",
    qos: Annotated[
        int,
        typer.Option(
            min=0,
            max=2,
            rich_help_panel=_BROKER,
            help="MQTT QoS of every message (0, 1 or 2). At 1 and 2 unacknowledged messages are bounded by "
            "--max-inflight and the broker's receive maximum.",
        ),
    ] = 1,
    max_inflight: Annotated[
        int,
        typer.Option(
            min=1,
            rich_help_panel=_BROKER,
            help="At most this many QoS 1/2 messages awaiting acknowledgement (messages).",
        ),
    ] = 1000,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            rich_help_panel=_BROKER,
            help="Readings per message: consecutive readings of one meter sent as one JSON array "
            "(a meter's message leaves when its batch is full, so batches add latency).",
        ),
    ] = 1,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="PEAKWATCH_CONFIG_FILE",
            exists=True,
            dir_okay=False,
            rich_help_panel=_FLEET,
            help="Simulate this registry YAML: every site and meter in it, each meter by its role and "
            "carrier, in its register kind and unit, within its rated_kw. Meters of roles no model "
            "covers are listed, not published. Default: the template fleet (--sites).",
        ),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            rich_help_panel=_FLEET,
            help="Publish only this site of the fleet (repeatable), e.g. the one a device credential "
            "may publish to.",
        ),
    ] = None,
    sites: Annotated[
        int | None,
        typer.Option(
            min=1,
            rich_help_panel=_FLEET,
            help="Number of template sites (not with --config): park-changsha, dc-xiangjiang, park-2, "
            "dc-2, park-3 … (default 2: the demo registry). Synthetic fleet: load-site-0001 …",
        ),
    ] = None,
    synthetic_meters: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FLEET,
            help="Load-test mode: this many flat-load meters (load-0001 …) per site instead of the park and "
            "data-centre models; 0 uses the models.",
        ),
    ] = 0,
    seed: Annotated[
        int,
        typer.Option(
            rich_help_panel=_FLEET,
            help="Seed of every random process (weather, loads, faults): same seed, same data.",
        ),
    ] = 0,
    write_registry: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            rich_help_panel=_FLEET,
            help="Write the registry YAML of the simulated fleet to this file, then publish. Give it to "
            "peakwatch with --config so every simulated meter is known.",
        ),
    ] = None,
    print_registry: Annotated[
        bool,
        typer.Option(
            "--print-registry",
            rich_help_panel=_FLEET,
            help="Print the fleet's registry YAML to stdout and exit without publishing.",
        ),
    ] = False,
    speed: Annotated[
        str,
        typer.Option(
            rich_help_panel=_TIME,
            help="realtime (event time = wall clock), max (as fast as possible) or a factor such as 60x "
            "(60 simulated seconds per wall second; from now this runs ahead of the clock, and the "
            "collector rejects readings more than 5 min in the future, so combine with --start in "
            "the past).",
        ),
    ] = "realtime",
    step: Annotated[
        str,
        typer.Option(
            rich_help_panel=_TIME,
            help="Simulated time between two readings of a meter, e.g. 10s, 1m (bare number = seconds).",
        ),
    ] = "10s",
    start: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_TIME,
            help="Event time of the first reading: epoch ms, ISO 8601 with offset "
            "(2026-01-15T08:00:00+08:00) or relative to now (-1d). Default: now.",
        ),
    ] = None,
    backfill: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_TIME,
            help="Publish this much of the recent past as fast as possible first (e.g. 10m), then continue "
            "at --speed. What the demo uses so KPIs appear at once. Not with --start.",
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_TIME,
            help="Stop after this much simulated time from the first reading, backfill included "
            "(e.g. 1h). Default: run until Ctrl-C.",
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            min=0, rich_help_panel=_TIME, help="Stop after this many steps (one reading per meter each)."
        ),
    ] = None,
    drop: Annotated[
        float,
        _fault_probability("Probability (0-1) that a message is lost."),
    ] = 0.0,
    duplicate: Annotated[
        float,
        _fault_probability("Probability (0-1) that a message is sent twice."),
    ] = 0.0,
    reorder: Annotated[
        float,
        _fault_probability(
            "Probability (0-1) that a message is held back and sent after the next --reorder-depth "
            "messages of the same meter (so that meter's readings arrive out of order)."
        ),
    ] = 0.0,
    reorder_depth: Annotated[
        int,
        typer.Option(
            min=1,
            rich_help_panel=_FAULTS,
            help="How many later messages of the same topic overtake a held-back one (messages).",
        ),
    ] = 3,
    malformed: Annotated[
        float,
        _fault_probability(
            "Probability (0-1) that a payload is corrupted: invalid JSON, a value of the wrong type, "
            "NaN, or a missing ts (see --malformed-kinds)."
        ),
    ] = 0.0,
    malformed_kinds: Annotated[
        str,
        typer.Option(
            rich_help_panel=_FAULTS,
            help=f"Comma-separated corruptions to choose from: {', '.join(MALFORMED_KINDS)}.",
        ),
    ] = ",".join(MALFORMED_KINDS),
    reset: Annotated[
        float,
        _fault_probability(
            "Probability (0-1), per reading, that the meter's cumulative register restarts at 0 "
            "(and keeps counting from there)."
        ),
    ] = 0.0,
    reset_at: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="Event time at which registers restart at 0 once: epoch ms, ISO 8601 with offset, or "
            "relative to now (+5m). Applies to --reset-meter, or every meter.",
        ),
    ] = None,
    reset_meter: Annotated[
        list[str] | None,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="SITE/METER that --reset-at applies to (repeatable), e.g. dc-xiangjiang/it.",
        ),
    ] = None,
    clock_skew: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="Largest clock error of a skewed meter (e.g. 30s); each skewed meter keeps a constant "
            "offset drawn from [-skew, +skew].",
        ),
    ] = None,
    clock_skew_share: Annotated[
        float,
        _fault_probability("Share (0-1) of meters whose clock is skewed when --clock-skew is set."),
    ] = 1.0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", rich_help_panel=_OUTPUT, help="No live progress line; only the final summary."
        ),
    ] = False,
) -> None:
    """Publish simulated meter telemetry to an MQTT broker.

    With --config, the sites and meters of your registry are simulated; without, the template fleet.
    The park model (PV, wind, battery, heat pump, gas boiler, process loads, grid import/export) and
    the data-centre model (IT, cooling, UPS losses, lighting, facility) are physically consistent:
    the grid balance and facility = sum of sub-meters hold at every step. Each meter publishes its
    cumulative register (energy_kwh, or volume_m3 for gas) and power_kw on
    <prefix>/<site_id>/<meter_id>, with ts in epoch ms. A registry's meters follow the model of their
    role, in their own register kind and unit, and never above their rated_kw.

    Examples:

      peakwatch simulate --config my-sites.yaml --backfill 10m   # your sites, into the running stack

      peakwatch simulate --backfill 10m                      # the demo feed

      peakwatch simulate --speed max --start -1d --duration 1d

      peakwatch simulate --sites 20 --write-registry fleet.yaml --drop 0.01 --reorder 0.01

      peakwatch simulate --synthetic-meters 500 --sites 10 --speed max --count 100 --qos 0
    """
    console = Console(stderr=True, emoji=False)
    now = now_ms()
    step_ms = _duration_ms(step, "--step") or 0
    if step_ms <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--step")
    registry = registry_option(config, sites=sites, synthetic_meters=synthetic_meters)
    if registry is not None and (print_registry or write_registry is not None):
        raise typer.BadParameter("the registry of --config is yours already", param_hint="--print-registry")
    try:
        options = SimulationOptions(
            sites=sites or 2,
            synthetic_meters=synthetic_meters,
            seed=seed,
            speed=parse_speed(speed),
            step_ms=step_ms,
            start_ms=_time_ms(start, "--start", now),
            backfill_ms=_duration_ms(backfill, "--backfill") or 0,
            duration_ms=_duration_ms(duration, "--duration"),
            count=count,
            batch_size=batch_size,
            qos=qos,
            topic_prefix=topic_prefix,
            max_inflight=max_inflight,
            faults=FaultConfig(
                drop=drop,
                duplicate=duplicate,
                reorder=reorder,
                reorder_depth=reorder_depth,
                malformed=malformed,
                malformed_kinds=tuple(k.strip() for k in malformed_kinds.split(",") if k.strip()),
                reset=reset,
                reset_at_ms=_time_ms(reset_at, "--reset-at", now),
                reset_meters=frozenset(reset_meter or ()),
                clock_skew_ms=_duration_ms(clock_skew, "--clock-skew") or 0,
                clock_skew_share=clock_skew_share,
            ),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if print_registry:
        sys.stdout.write(registry_yaml(build_fleet(options.fleet_spec)))
        return
    if write_registry is not None:
        _write_registry(options, write_registry, console)
    stats = _publish(
        options, registry, site or (), mqtt_url=mqtt_url, data_dir=data_dir, console=console, quiet=quiet
    )
    console.print(summary(stats))
