"""Start and stop peakwatch's components in the right order, in one event loop.

This is where the data flow is wired, so it reads top to bottom like docs/architecture.md:

    embedded PostgreSQL -> Store (migrate, sync registry, first admin)
    embedded MQTT broker -> MqttSource -> Collector -> Bus (on-disk spool) -> Processor -> Store
    Store -> API (uvicorn)
    Store -> Notifier -> webhook / e-mail / WeCom / DingTalk / Feishu / Slack / apprise
    simulators -> MQTT broker (demo)

Shutdown runs in reverse order of start so that nothing accepted is lost: the demo simulators stop
publishing, the API stops serving, the MQTT source disconnects, the bus drains into the processor,
which flushes what the watermark allows, then the store and the embedded servers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from api.app import create_app
from api.limits import close_after_413
from api.stream import close_streams
from cli.common import database_url
from collector.decode import DecodeContext
from collector.metrics import CollectorMetrics
from collector.mqtt import MqttSource
from collector.service import Collector
from notifier.service import Notifier, NotifierMetrics
from peakwatch.accounts import ensure_first_admin
from peakwatch.bus import Bus, open_bus
from peakwatch.clock import now_ms
from peakwatch.config import Registry, Settings
from peakwatch.embedded.mqtt import EmbeddedBroker
from peakwatch.embedded.postgres import EmbeddedPostgres
from peakwatch.errors import ConfigError
from peakwatch.health import ComponentStatus, Reporting
from peakwatch.redaction import install_log_redaction, remember_secret, url_secrets
from peakwatch.retry import retry
from peakwatch.store import Store
from peakwatch.store.store import PROCESSOR_APPLICATION
from peakwatch.supervise import Supervisor
from processor.metrics import ProcessorMetrics
from processor.service import Processor

log = logging.getLogger("peakwatch")


def load_registry(settings: Settings) -> Registry:
    return Registry.from_yaml(settings.config_file) if settings.config_file else Registry.bundled_demo()


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the stack owns Ctrl-C and decides when the API stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Stack:
    """Running components and how to stop them. Built by ``start_stack``; ``stop()`` is idempotent."""

    settings: Settings
    registry: Registry
    database_url: str = ""
    mqtt_url: str = ""
    api_url: str = ""
    embedded_broker: bool = False
    first_admin_password: str | None = None
    """Set on the embedded default's first run only: the one-time password of user ``admin``."""
    store: Store | None = None
    bus: Bus | None = None
    processor: Processor | None = None
    notifier: Notifier | None = None
    source: MqttSource | None = None
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    supervisor: Supervisor | None = None
    """The background loops of the processor and the notifier (metrics on ``metrics``; ``components``)."""
    _stoppers: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _essential: list[asyncio.Task[Any]] = field(default_factory=list)

    def on_stop(self, name: str, stopper: Callable[[], Awaitable[None]]) -> None:
        self._stoppers.append((name, stopper))

    def spawn(self, name: str, coro: Awaitable[Any], *, essential: bool = True) -> asyncio.Task[Any]:
        """Run ``coro`` as part of the stack. When an essential task ends, ``wait`` returns (and the
        stack stops); a non-essential one (the demo feed) only logs how it ended."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        if essential:
            self._essential.append(task)
        else:
            task.add_done_callback(_log_end)
        return task

    def supervise(self) -> Supervisor:
        if self.supervisor is None:
            self.supervisor = Supervisor(self.metrics)
        return self.supervisor

    def components(self) -> list[ComponentStatus]:
        """What /healthz reports besides the database: each component's own ``health()``, then the
        supervised loops, then any stack task that stopped with an error."""
        running: list[Reporting | None] = [self.source, self.bus, self.processor, self.notifier]
        out = [component.health() for component in running if component is not None]
        if self.supervisor is not None:
            out.extend(self.supervisor.health())
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                failure = type(task.exception()).__name__  # the message is in the log, not on a public page
                out.append(ComponentStatus(name=task.get_name(), ok=False, detail=f"stopped: {failure}"))
        return out

    async def wait(self) -> None:
        """Return when any component task ends (normally only at shutdown); re-raise its failure."""
        if not self._essential:
            await asyncio.Event().wait()
        done, _ = await asyncio.wait(self._essential, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        while self._stoppers:
            name, stopper = self._stoppers.pop()
            try:
                await stopper()
            except Exception:
                log.exception("stopping %s failed", name)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _log_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception())
    else:
        log.info("%s finished: %s", task.get_name(), task.result())


async def _start_database(stack: Stack, *, owner: bool, processor: bool) -> None:
    """``owner`` (``peakwatch up``): the data directory's embedded server is the stack's, started (or
    taken over) here and stopped with it, by its watchdog if this process is killed. A single
    component (``peakwatch api`` …) uses the database as the other commands do
    (``cli.common.database_url``): beside a running stack, the stack's, never stopped."""
    settings = stack.settings
    if settings.database_url:
        stack.database_url = settings.database_url
    elif owner:
        pg = EmbeddedPostgres(settings.data_dir / "postgres", port=settings.db_port)
        stack.database_url = await asyncio.to_thread(pg.start)
        stack.on_stop("embedded postgres", lambda: asyncio.to_thread(pg.stop))
    else:
        found = database_url(settings)
        stack.database_url = await found.__aenter__()

        async def release() -> None:
            await found.__aexit__(None, None, None)

        stack.on_stop("embedded postgres", release)
    name = PROCESSOR_APPLICATION if processor else "peakwatch"
    url = stack.database_url
    # A database that is away (not yet started, restarting) is waited for, as any outage later is;
    # one that refuses us (credentials, a bad schema) is an error at once.
    store = await retry(
        lambda: _opened_store(url, stack.registry, name), initial_s=0.5, max_s=10.0, on_retry=_database_away
    )
    stack.on_stop("store", store.close)
    stack.store = store
    if not settings.database_url:
        # The embedded default is one person's installation: it gets an admin on its first run, with
        # a one-time password that the CLI prints once. Anywhere else there is no default account.
        stack.first_admin_password = await ensure_first_admin(store, now_ms())
    elif not await store.access.list_users():
        log.warning("no API users yet: create an admin with `peakwatch users add <name> --role admin`")


async def _opened_store(url: str, registry: Registry, application_name: str) -> Store:
    """Connected, migrated and holding the registry's sites, or closed again and raising."""
    store = await Store.connect(url, application_name=application_name)
    try:
        await store.migrate()
        await store.sync_registry(registry)
    except BaseException:
        await store.close()
        raise
    return store


def _database_away(exc: Exception, delay_s: float) -> None:
    log.warning("waiting for the database (retrying in %.1f s): %s", delay_s, exc)


async def _start_broker(stack: Stack) -> None:
    settings = stack.settings
    if settings.mqtt_url:
        stack.mqtt_url = settings.mqtt_url
        return
    broker = EmbeddedBroker(host="127.0.0.1", port=settings.mqtt_port)
    await broker.start()
    stack.on_stop("embedded mqtt broker", broker.stop)
    stack.mqtt_url = broker.url
    stack.embedded_broker = True


async def _start_pipeline(stack: Stack, *, collector: bool, processor: bool) -> None:
    settings, registry = stack.settings, stack.registry
    bus = await asyncio.to_thread(open_bus, settings.bus_url, default_dir=settings.data_dir / "spool")
    stack.bus = bus
    bus.register_metrics(stack.metrics)
    await bus.start()
    if bus.shared:  # closed last (stoppers run in reverse): the collector's records are sent by then
        stack.on_stop("bus", bus.close)
    if processor:
        assert stack.store is not None
        proc = Processor(
            bus,
            stack.store,
            registry,
            settings,
            ProcessorMetrics(stack.metrics),
            accounting=stack.store,
            stored_rules=stack.store.rules,
            supervisor=stack.supervise(),
        )
        stack.processor = proc
        task = stack.spawn("processor", proc.run())

        async def stop_processor() -> None:
            # The collector has stopped by now (stoppers run in reverse): let the processor drain what
            # a local bus still holds, then stop it and wait for its final flush, so nothing accepted is
            # lost. A shared bus keeps what is left for the other processors (and this one's restart).
            if bus.shared:  # its final writes commit their offsets; the bus closes after (last)
                proc.stop()
                await asyncio.wait_for(asyncio.shield(task), timeout=30)
                return
            deadline = time.monotonic() + 30
            while bus.lag and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the bus offers no "drained" event; lag is a cheap counter
            proc.stop()
            await bus.close()
            await asyncio.wait_for(asyncio.shield(task), timeout=30)
            kept = bus.kept_at_stop()
            if bus.lag and kept is not None:
                log.warning("%d spooled item(s) are processed at the next start", kept)
            elif bus.lag:
                # Already acknowledged to the broker, so never silently: say what was not processed.
                log.error(
                    "stopped with %d bus item(s) unprocessed (the processor did not drain in time)", bus.lag
                )

        stack.on_stop("processor", stop_processor)
    if collector:
        ctx = DecodeContext.from_settings(settings, registry)
        collector_metrics = CollectorMetrics(stack.metrics)
        coll = Collector(bus, ctx, collector_metrics)
        if settings.mqtt_shared_group is not None and stack.embedded_broker:
            raise ConfigError(
                "PEAKWATCH_MQTT_SHARED_GROUP needs an MQTT 5 broker given with --mqtt-url: the embedded "
                "broker (amqtt, MQTT 3.1.1) has no shared subscriptions"
            )
        source = MqttSource(
            stack.mqtt_url,
            client_id=settings.mqtt_client_id,
            topic_filter=ctx.topic_filter,
            qos=settings.mqtt_qos,
            handler=coll.handle,
            shared_group=settings.mqtt_shared_group,
            metrics=collector_metrics,
            protocol="3.1.1" if stack.embedded_broker else "auto",
        )
        await source.start()
        stack.source = source
        stack.on_stop("collector", source.stop)


async def _start_notifier(stack: Stack) -> None:
    config = stack.registry.notifications
    if config is None:
        log.info("notifications: none configured (alerts are shown, not sent)")
        return
    assert stack.store is not None
    notifier = Notifier(
        stack.store,
        config,
        public_url=stack.settings.public_url,
        metrics=NotifierMetrics(stack.metrics),
        supervisor=stack.supervise(),
    )
    stack.notifier = notifier
    task = stack.spawn("notifier", notifier.run())

    async def stop_notifier() -> None:
        notifier.stop()
        await asyncio.wait({task}, timeout=35)

    stack.on_stop("notifier", stop_notifier)


async def _start_api(stack: Stack) -> None:
    settings = stack.settings
    assert stack.store is not None
    app = create_app(
        stack.store, stack.registry, settings, health=stack.components, metrics_registry=stack.metrics
    )
    config = api_server_config(app, settings)
    server = _Uvicorn(config)
    task = stack.spawn("api", server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("API server exited during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("API server did not start within 15 s")
        await asyncio.sleep(0.05)
    stack.api_url = f"http://{settings.api_host}:{settings.api_port}"

    async def stop_api() -> None:
        await close_streams(app)  # uvicorn waits for open responses: end the live alert streams first
        server.should_exit = True  # finishes open requests and the lifespan, then serve() returns
        await asyncio.wait({task}, timeout=10)

    stack.on_stop("api", stop_api)


def api_server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """How uvicorn serves the API (tests serve it the same way)."""
    config = uvicorn.Config(
        close_after_413(app),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local client could then pose as
        # any address and escape the per-address login throttle. Only the configured proxies are believed.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers, not the root's
        install_log_redaction(logging.getLogger(name))
    return config


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    registry: Registry,
    *,
    collector: bool = True,
    processor: bool = True,
    api: bool = True,
    broker: bool = True,
    notifier: bool = True,
    owner: bool = False,
) -> AsyncIterator[Stack]:
    """Start the chosen components; stop them all (in reverse) when the block exits. ``owner``: this
    is ``peakwatch up``, which owns the data directory's embedded database (``_start_database``)."""
    stack = Stack(settings=settings, registry=registry)
    for url in (settings.mqtt_url, settings.database_url):
        remember_secret(*url_secrets(url or ""))
    if registry.notifications is not None:
        remember_secret(*registry.notifications.secrets())
    try:
        await _start_database(stack, owner=owner, processor=processor)
        if broker and collector:
            await _start_broker(stack)
        elif collector:
            stack.mqtt_url = settings.mqtt_url or f"mqtt://127.0.0.1:{settings.mqtt_port}"
        if collector or processor:
            await _start_pipeline(stack, collector=collector, processor=processor)
        if notifier:
            await _start_notifier(stack)
        if api:
            await _start_api(stack)
        yield stack
    finally:
        await stack.stop()
