"""``peakwatch`` command line: run the whole stack (``up``) or one component at a time."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from cli.common import (
    ConfigOpt,
    DataDirOpt,
    DbUrlOpt,
    console,
    database,
    database_options,
    run,
    settings_from,
)
from cli.devices import devices_app
from cli.grafana import grafana_app
from cli.help import command_group
from cli.restate import db_restate
from cli.running import StackCard, read_card, remove_card, write_card
from cli.simulate import simulate
from cli.simulate_sources import continue_from_store
from cli.users import users_app
from peakwatch.clock import now_ms
from peakwatch.config import Registry, Settings
from peakwatch.errors import PeakwatchError
from peakwatch.redaction import redact_url
from simulators.options import SimulationOptions

if TYPE_CHECKING:
    from cli.stack import Stack  # at run time only where needed: it imports every service

app = command_group(
    name="peakwatch",
    help="Real-time energy and carbon monitoring for parks and data centres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = command_group(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(grafana_app, name="grafana")
db_app.command("restate")(db_restate)
MqttUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--mqtt-url",
        envvar="PEAKWATCH_MQTT_URL",
        help="mqtt://host:port of an existing broker; omit to start the embedded broker.",
    ),
]
BusOpt = Annotated[
    str,
    typer.Option(
        "--bus",
        envvar="PEAKWATCH_BUS_URL",
        help="Bus between collector and processor: spool:// (on disk in the data directory: survives "
        "crashes and database outages; spool:///path?max_bytes=1GiB), memory:// (in-process, not durable) "
        "or kafka://host:9092[,host2:9092]?partitions=12 (collectors and processors on many machines; "
        "docs/deploy.md).",
    ),
]


@app.command()
def up(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
    mqtt_url: MqttUrlOpt = None,
    mqtt_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the embedded MQTT broker [default: 1883, or a free port when 1883 is taken]"
        ),
    ] = None,
    api_host: Annotated[str, typer.Option(help="Address the API and dashboard listen on.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    db_port: Annotated[
        int | None,
        typer.Option(
            help="Port of embedded PostgreSQL (loopback) [default: 5433, or a free port when 5433 is taken]"
        ),
    ] = None,
    bus: BusOpt = "spool://",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo/--no-demo",
            help="Feed the two demo sites with the simulators (10 minutes of backfill, then real time).",
        ),
    ] = True,
) -> None:
    """Start everything: database, broker, collector, processor, API and (by default) the demo feed."""
    settings = settings_from(
        config_file=config,
        data_dir=data_dir,
        database_url=database_url,
        mqtt_url=mqtt_url,
        mqtt_port=mqtt_port,
        api_host=api_host,
        api_port=api_port,
        db_port=db_port,
        bus_url=bus,
        demo=demo,
    )
    explicit = {name for name, value in (("mqtt_port", mqtt_port), ("db_port", db_port)) if value is not None}
    run(_up(settings, explicit))


def _embedded_ports(settings: Settings, explicit: set[str]) -> dict[str, int]:
    """Ports for the embedded broker and database: the defaults when free, else a free port (with a
    notice), unless the user chose the port, in which case a taken port is an error. The data
    directory's own server, left running by a killed stack, does not take its port: it is adopted."""
    from peakwatch.embedded.postgres import EmbeddedPostgres
    from peakwatch.net import bind_problem, free_port

    chosen: dict[str, int] = {}
    left = None
    if settings.database_url is None:
        left = EmbeddedPostgres(settings.data_dir / "postgres", port=settings.db_port).running_port()
    for field, what, needed, option in (
        ("mqtt_port", "embedded MQTT broker", settings.mqtt_url is None, "--mqtt-port"),
        ("db_port", "embedded PostgreSQL", settings.database_url is None, "--db-port"),
    ):
        port: int = getattr(settings, field)
        problem = bind_problem("127.0.0.1", port) if needed else None
        if problem is None:
            continue
        if field == "db_port" and left == port:
            continue
        if field in explicit or not problem.in_use:
            raise PeakwatchError(
                f"the {what} cannot listen on port {port}: {problem.reason} (change it with {option})"
            )
        chosen[field] = free_port()
        console.print(
            f"[yellow]note:[/yellow] port {port} is in use (another {what.split(' ', 1)[1]}?); the {what} "
            f"listens on {chosen[field]} instead (fix it with {option})."
        )
    return chosen


def _check_api_address(settings: Settings) -> None:
    """Before anything starts: an API that cannot listen would otherwise fail after the database and
    the broker are up, with uvicorn's errno text."""
    from peakwatch.net import bind_problem

    problem = bind_problem(settings.api_host, settings.api_port)
    if problem is not None:
        option = "--api-port" if problem.on_port else "--api-host"
        raise PeakwatchError(
            f"the API cannot listen on {settings.api_host}:{settings.api_port}: {problem.reason} "
            f"(change it with {option})"
        )


async def _up(settings: Settings, explicit: set[str]) -> None:
    from cli.stack import load_registry, running_stack

    registry = load_registry(settings)
    running = read_card(settings.data_dir)
    if running is not None:
        raise PeakwatchError(
            f"peakwatch up already runs from {settings.data_dir} (pid {running.pid}, API {running.api_url}); "
            "stop it first, or give this one another --data-dir"
        )
    _check_api_address(settings)
    settings = settings.model_copy(update=_embedded_ports(settings, explicit))
    with console.status("starting peakwatch…"):
        stack_cm = running_stack(settings, registry, owner=True)
        stack = await stack_cm.__aenter__()
    card = None
    try:
        if settings.demo:
            from simulators.publisher import run_simulation

            options = await _demo_options(stack, SimulationOptions.demo(registry_sites=list(registry.sites)))
            sim_stop = asyncio.Event()
            sim = stack.spawn(
                "simulators", run_simulation(options, mqtt_url=stack.mqtt_url, stop=sim_stop), essential=False
            )

            async def stop_simulators() -> None:
                sim_stop.set()
                await asyncio.wait({sim}, timeout=10)

            stack.on_stop("simulators", stop_simulators)
        card = _publish_card(stack)
        if stack.first_admin_password is not None:
            _print_first_admin(stack.first_admin_password)
        console.print(_banner(stack, registry))
        await stack.wait()
    finally:
        console.print("stopping…")
        if card is not None:  # first: a command typed from now on must not count on this stack
            remove_card(settings.data_dir, card.pid)
        await stack_cm.__aexit__(None, None, None)
        console.print("stopped cleanly.")


def _publish_card(stack: Stack) -> StackCard:
    """The running stack's card (cli/running.py), written once everything listens."""
    card = StackCard(
        pid=os.getpid(),
        started_at_ms=now_ms(),
        database_url=stack.database_url,
        mqtt_url=_without_credentials(stack.mqtt_url),
        api_url=_reachable(stack.api_url),
        data_dir=str(stack.settings.data_dir.expanduser().resolve()),
        embedded_broker=stack.embedded_broker,
    )
    write_card(card)
    return card


def _banner(stack: Stack, registry: Registry) -> Panel:
    """What a newcomer needs: where to look, where devices publish, where the data lives. Every value
    is escaped (an IPv6 ``[::1]`` is not markup) and no URL shows a password."""
    settings = stack.settings
    api = _reachable(stack.api_url)
    site_lines = "\n".join(f"  {escape(site.id):<20} {site.kind.value}" for site in registry.sites.values())
    example = escape(next(iter(registry.sites), "<site>"))
    broker = escape(redact_url(stack.mqtt_url))
    where = (
        "embedded: this machine only, no authentication"
        if stack.embedded_broker
        else "your broker; devices use their own credentials"
    )
    data_dir = escape(str(settings.data_dir.expanduser()))
    return Panel.fit(
        f"[bold]peakwatch is running[/bold]\n\n"
        f"Dashboard     {escape(api)}/\n"
        f"API           {escape(api)}/api/v1  (OpenAPI at /docs; /healthz, /metrics)\n"
        f"Broker        {broker}  ({where})\n"
        f"              devices publish to {escape(settings.mqtt_topic_prefix)}/<site>/<meter>\n"
        f"Database      {escape(redact_url(stack.database_url))}\n"
        f"Data dir      {data_dir}\n\n"
        f"Sites:\n{site_lines}\n\n"
        f"Latest KPIs   {escape(api)}/api/v1/sites/{example}/kpis/latest\n"
        f"              (windows close {settings.allowed_lateness_ms // 1000} s after they end)\n"
        f"Commands      peakwatch users list --data-dir {data_dir}\n"
        f"              (a command given this data directory uses this stack)\n\n"
        f"{'Demo simulators are feeding both sites. ' if settings.demo else ''}Press Ctrl-C to stop.",
        title="peakwatch",
    )


def _print_first_admin(password: str) -> None:
    """Once (never through logging): the first admin's one-time password alone on standard output, the
    words around it on standard error with the rest of the chatter."""
    from peakwatch.accounts import FIRST_ADMIN

    console.print(
        Panel.fit(
            f"First run: user [bold]{FIRST_ADMIN}[/bold], one-time password on standard output (next line)\n"
            "Log in (POST /api/v1/auth/login) and change it (POST /api/v1/auth/password); it is not shown "
            "again (`peakwatch users reset-password admin` makes a new one).",
            title="admin login",
        )
    )
    typer.echo(f"one-time password {password}")


async def _demo_options(stack: Stack, options: SimulationOptions) -> SimulationOptions:
    """Continue the demo meters where the store left them (instead of a fresh 10-minute backfill that
    would overlap what is stored)."""
    assert stack.store is not None
    return await continue_from_store(stack.store, options)


def _without_credentials(url: str) -> str:
    """``url`` without its user and password (the card is for finding the broker, not logging in)."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def _reachable(url: str) -> str:
    """An ``http://host:port`` one can open: a wildcard listen address (every interface) becomes the
    loopback address, and an IPv6 address gets its brackets."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.netloc.rsplit(":", 1)
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


@app.command()
def collector(
    config: ConfigOpt = None,
    mqtt_url: MqttUrlOpt = None,
    database_url: DbUrlOpt = None,
    bus: BusOpt = "spool://",
) -> None:
    """Run only the collector (MQTT -> bus). Needs a bus shared between processes."""
    settings = settings_from(config_file=config, mqtt_url=mqtt_url, database_url=database_url, bus_url=bus)
    _require_shared_bus(settings, "collector")
    run(_component(settings, collector=True))


@app.command()
def processor(
    config: ConfigOpt = None,
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    bus: BusOpt = "spool://",
) -> None:
    """Run only the processor (bus -> KPIs -> database). Needs a bus shared between processes."""
    settings = settings_from(config_file=config, database_url=database_url, data_dir=data_dir, bus_url=bus)
    _require_shared_bus(settings, "processor")
    run(_component(settings, processor=True))


@app.command()
def notifier(
    config: ConfigOpt = None,
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    public_url: Annotated[
        str | None, typer.Option(help="Where people reach peakwatch (links in the messages).")
    ] = None,
) -> None:
    """Run only the notifier (alerts in the database -> webhook, e-mail, chat). Several may run: one
    sends, the others stand by and take over when it stops."""
    settings = settings_from(
        config_file=config, database_url=database_url, data_dir=data_dir, public_url=public_url
    )
    run(_component(settings, notifier=True))


@app.command("api")
def api_command(
    config: ConfigOpt = None,
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    api_host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="Listen port.")] = 8000,
    db_port: Annotated[int, typer.Option(help="Port of embedded PostgreSQL (loopback).")] = 5433,
) -> None:
    """Run only the API against the database (embedded PostgreSQL in --data-dir unless --database-url)."""
    settings = settings_from(
        config_file=config,
        database_url=database_url,
        data_dir=data_dir,
        api_host=api_host,
        api_port=api_port,
        db_port=db_port,
    )
    run(_component(settings, api=True))


def _require_shared_bus(settings: Settings, name: str) -> None:
    if settings.bus_url.startswith(("memory://", "spool://")):
        console.print(
            f"[red]error:[/red] the {name} alone needs a bus shared between processes; memory:// and the "
            f"spool:// belong to one process. Run the whole pipeline in one process with "
            f"[bold]peakwatch up[/bold] (add --no-demo and --mqtt-url/--database-url for your own broker "
            f"and database), or share Kafka between them: --bus kafka://host:9092 (docs/deploy.md)."
        )
        raise typer.Exit(2)


async def _component(
    settings: Settings,
    *,
    collector: bool = False,
    processor: bool = False,
    api: bool = False,
    notifier: bool = False,
) -> None:
    """One component alone (the others run in their own processes), against the shared bus and database."""
    from cli.stack import load_registry, running_stack

    registry = load_registry(settings)
    if api:
        _check_api_address(settings)
    if notifier and registry.notifications is None:
        raise PeakwatchError("the registry has no notifications section: there is nothing to send")
    async with running_stack(
        settings,
        registry,
        collector=collector,
        processor=processor,
        api=api,
        broker=False,
        notifier=notifier,
    ) as stack:
        if stack.first_admin_password is not None:
            _print_first_admin(stack.first_admin_password)
        console.print(f"running: {', '.join(t.get_name() for t in stack._tasks) or 'collector'}")
        await stack.wait()


@db_app.command("migrate")
@database_options
def db_migrate(
    *,
    settings: Settings,
) -> None:
    """Apply schema migrations (and TimescaleDB extras when available) and sync the site registry."""
    run(_migrate(settings))


async def _migrate(settings: Settings) -> None:
    from cli.stack import load_registry

    registry: Registry = load_registry(settings)
    async with database(settings, migrate=False) as store:
        applied = await store.migrate()
        await store.sync_registry(registry)
        console.print(
            f"migrations applied: {', '.join(applied) or 'none (up to date)'}; "
            f"TimescaleDB: {'yes' if store.timescale else 'no (plain PostgreSQL)'}; "
            f"registry: {len(registry.sites)} sites, {len(registry.meters)} meters",
            markup=False,
        )


app.command("simulate")(simulate)
app.add_typer(devices_app, name="devices")
app.add_typer(users_app, name="users")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
