"""``peakwatch devices``: provision, rotate and revoke broker credentials; export the broker's files.

A secret is shown once, when it is made (``add``, ``add-collector``, ``rotate``), and never stored: the
database keeps its hash in Mosquitto's format. ``export`` writes the broker's ``password_file`` and
``acl_file``; Mosquitto reads them again on SIGHUP, so provisioning never restarts the broker.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import console, database, database_options, run
from cli.help import command_group
from cli.running import read_card
from peakwatch.accounts import audit_cli, new_device_secret
from peakwatch.clock import now_ms
from peakwatch.config import Settings
from peakwatch.domain.devices import (
    DEVICE_ID,
    Device,
    DeviceKind,
    acl_file,
    password_file,
    topics,
)

devices_app = command_group(help="Broker credentials of devices and collectors.", no_args_is_help=True)


def _check_id(device_id: str) -> None:
    if not DEVICE_ID.match(device_id):
        raise typer.BadParameter(f"{device_id!r} must match {DEVICE_ID.pattern} (it is the MQTT user name)")


def _show_secret(settings: Settings, device: Device, secret: str) -> None:
    # The secret alone on standard output (a script captures it); the words around it on standard error.
    console.print(
        f"[bold]{escape(device.id)}[/]: new secret on standard output, shown once; store it in the device now"
    )
    typer.echo(secret)
    access = "reads" if device.kind is DeviceKind.COLLECTOR else "publishes to"
    console.print(f"  {access}: {', '.join(topics(device))}", markup=False)
    console.print(f"  {_how_to_apply(settings)}", markup=False)


def _how_to_apply(settings: Settings) -> str:
    """A credential takes effect when the broker's files are exported and reloaded, but the embedded
    broker has no files: it accepts every loopback client (peakwatch/embedded/mqtt.py)."""
    card = read_card(settings.data_dir)
    if card is not None and card.embedded_broker:
        return (
            f"note: the running stack's embedded broker ({card.mqtt_url}) accepts every client on this "
            "machine without checking credentials, so this one takes effect only on a broker that enforces "
            "them: Mosquitto with `peakwatch devices export --out DIR` (docs/security.md)"
        )
    return "run `peakwatch devices export` to apply"


@devices_app.command("add")
@database_options
def add(
    device_id: Annotated[str, typer.Argument(help="Device id, used as its MQTT user name.")],
    site: Annotated[str, typer.Option(help="The site the device publishes for.")],
    meter: Annotated[
        list[str] | None, typer.Option(help="A meter it may publish for (repeat); default: all of the site.")
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Provision a device (meter or gateway): a new secret, allowed to publish only under its site."""
    _check_id(device_id)
    run(_add(settings, device_id, DeviceKind.DEVICE, site, tuple(meter or ())))


@devices_app.command("add-collector")
@database_options
def add_collector(
    collector_id: Annotated[str, typer.Argument(help="User name of the collector's service account.")],
    *,
    settings: Settings,
) -> None:
    """A service account for collectors: may read every site's telemetry; give its secret to the
    collector in its MQTT URL (``mqtt://<id>:<secret>@broker:1883``)."""
    _check_id(collector_id)
    run(_add(settings, collector_id, DeviceKind.COLLECTOR, None, ()))


async def _add(
    settings: Settings, device_id: str, kind: DeviceKind, site: str | None, meters: tuple[str, ...]
) -> None:
    from cli.stack import load_registry

    registry = load_registry(settings)
    if site is not None:
        if site not in registry.sites:
            raise typer.BadParameter(f"unknown site {site!r}; known: {', '.join(sorted(registry.sites))}")
        unknown = [m for m in meters if registry.meter(site, m) is None]
        if unknown:
            raise typer.BadParameter(f"meters not registered to site {site!r}: {', '.join(unknown)}")
    secret, password_hash = new_device_secret()
    async with database(settings) as store:
        await store.sync_registry(registry)
        device = await store.devices.add(
            Device(
                id=device_id,
                kind=kind,
                site_id=site,
                meters=meters,
                password_hash=password_hash,
                created_ms=now_ms(),
            )
        )
        await audit_cli(store, f"add {kind.value}", device_id, {"site_id": site, "meters": list(meters)})
    _show_secret(settings, device, secret)


@devices_app.command("rotate")
@database_options
def rotate(
    device_id: Annotated[str, typer.Argument(help="Device or collector id.")],
    *,
    settings: Settings,
) -> None:
    """A new secret; the old one keeps working until the next ``export``."""
    run(_rotate(settings, device_id))


async def _rotate(settings: Settings, device_id: str) -> None:
    secret, password_hash = new_device_secret()
    async with database(settings) as store:
        device = await store.devices.rotate(device_id, password_hash, now_ms())
        if device is not None:
            await audit_cli(store, "rotate device", device_id)
    if device is None:
        raise typer.BadParameter(f"no active device {device_id!r}")
    _show_secret(settings, device, secret)


@devices_app.command("revoke")
@database_options
def revoke(
    device_id: Annotated[str, typer.Argument(help="Device or collector id.")],
    *,
    settings: Settings,
) -> None:
    """Revoke a credential (kept in the list with the time); effective at the next ``export``."""
    run(_revoke(settings, device_id))


async def _revoke(settings: Settings, device_id: str) -> None:
    async with database(settings) as store:
        device = await store.devices.revoke(device_id, now_ms())
        if device is not None:
            await audit_cli(store, "revoke device", device_id)
    if device is None:
        raise typer.BadParameter(f"no active device {device_id!r}")
    console.print(f"{device.id} revoked; {_how_to_apply(settings)}", markup=False)


@devices_app.command("list")
@database_options
def list_devices(
    *,
    settings: Settings,
) -> None:
    """Every credential, revoked ones included (secrets are never shown again)."""
    run(_list(settings))


async def _list(settings: Settings) -> None:
    async with database(settings) as store:
        devices = await store.devices.list()
    table = Table("id", "kind", "site", "topics", "state")
    for d in devices:
        state = "revoked" if d.revoked_ms is not None else "active"
        table.add_row(d.id, d.kind.value, d.site_id or "", ", ".join(topics(d)), state)
    console.print(table)


@devices_app.command("export")
@database_options
def export(
    out: Annotated[Path, typer.Option(help="Directory for the broker's `passwd` and `acl` files.")],
    topic_prefix: Annotated[
        str, typer.Option(help="Topic prefix the collector subscribes under.")
    ] = "telemetry",
    *,
    settings: Settings,
) -> None:
    """Write Mosquitto's password and ACL files (atomically, owner-only), then reload the broker with
    SIGHUP (``kill -HUP $(pidof mosquitto)``; in Docker ``docker kill -s HUP <container>``)."""
    run(_export(settings, out, topic_prefix))


async def _export(settings: Settings, out: Path, prefix: str) -> None:
    async with database(settings) as store:
        devices = await store.devices.list(include_revoked=False)
    await asyncio.to_thread(write_broker_files, out, password_file(devices), acl_file(devices, prefix))
    console.print(
        f"{len(devices)} active credentials written to {out / 'passwd'} and {out / 'acl'}", markup=False
    )


def write_broker_files(out: Path, passwd: str, acl: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_private(out / "passwd", passwd)
    write_private(out / "acl", acl)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with an owner-only file: the broker never reads a half-written one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
