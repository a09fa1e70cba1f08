"""Broker credentials of devices and collectors, as ``peakwatch devices`` manages them.

An admin manages the devices of the sites in its scope; collectors (which read every site) need an
admin whose scope is every site. A secret is returned once, when it is made. The broker applies
changes at the next ``peakwatch devices export`` (the API does not write the broker's files: it
usually runs on another host).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status

from api.auth import ADMIN, PrincipalDep, audit_site, forbidden
from api.deps import RegistryDep, SettingsDep, StoreDep, invalid_body, now_ms
from api.errors import DATABASE_DOWN, Responses
from api.schemas.common import ErrorPublic
from api.schemas.devices import DeviceIn, DevicePublic, DeviceSecretPublic
from peakwatch.accounts import new_device_secret
from peakwatch.domain.access import AccessRole, Principal
from peakwatch.domain.devices import Device, DeviceKind
from peakwatch.store import Store

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceId = Annotated[str, Path(max_length=64, description="Device or collector id (its MQTT user name).")]
UNKNOWN_DEVICE: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "No such active device in your scope."}
}


def _may_manage(principal: Principal, device: Device) -> bool:
    return principal.may(AccessRole.ADMIN, device.site_id)


async def _device(store: Store, principal: Principal, device_id: str) -> Device:
    """The active device, if the principal may manage it (404 otherwise: an outsider learns nothing)."""
    for device in await store.devices.list(include_revoked=False):
        if device.id == device_id and _may_manage(principal, device):
            return device
    raise _not_found(device_id)


def _not_found(device_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no active device {device_id!r} in your scope")


def _changed(device: Device | None, device_id: str) -> Device:
    """The device a change returned; ``None``: it was revoked meanwhile, the 404 of an unknown one."""
    if device is None:
        raise _not_found(device_id)
    return device


@router.get(
    "",
    response_model=list[DevicePublic],
    dependencies=[ADMIN],
    summary="Devices and collectors you may manage, revoked ones included",
    responses={**DATABASE_DOWN},
)
async def list_devices(store: StoreDep, principal: PrincipalDep, settings: SettingsDep) -> list[DevicePublic]:
    return [
        DevicePublic.from_device(d, settings.mqtt_topic_prefix)
        for d in await store.devices.list()
        if _may_manage(principal, d)
    ]


@router.post(
    "",
    response_model=DeviceSecretPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[ADMIN],
    summary="Provision a device (publishes under its site) or a collector (reads every site)",
    responses={
        status.HTTP_409_CONFLICT: {"model": ErrorPublic, "description": "The id exists: rotate it instead."},
        **DATABASE_DOWN,
    },
)
async def add_device(
    body: DeviceIn,
    store: StoreDep,
    registry: RegistryDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    request: Request,
) -> DeviceSecretPublic:
    audit_site(request, body.site_id)
    if body.kind is DeviceKind.COLLECTOR:
        if body.site_id is not None or body.meters:
            raise invalid_body(
                "site_id", "a collector reads every site: give no site_id or meters", body.site_id
            )
    elif body.site_id is None:
        raise invalid_body("site_id", "a device publishes for one site: site_id is required", None)
    if not principal.may(AccessRole.ADMIN, body.site_id):
        raise forbidden(
            "collectors need an admin whose scope is every site"
            if body.site_id is None
            else f"site {body.site_id!r} is outside your scope"
        )
    if body.site_id is not None:
        if body.site_id not in registry.sites:
            raise invalid_body("site_id", f"unknown site {body.site_id!r}", body.site_id)
        unknown = [m for m in body.meters if registry.meter(body.site_id, m) is None]
        if unknown:
            raise invalid_body(
                "meters", f"not registered to site {body.site_id!r}: {', '.join(unknown)}", unknown
            )
    if any(d.id == body.id for d in await store.devices.list()):
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"device {body.id!r} exists; rotate its secret instead"
        )
    secret, password_hash = new_device_secret()
    device = await store.devices.add(
        Device(
            id=body.id,
            kind=body.kind,
            site_id=body.site_id,
            meters=tuple(body.meters),
            password_hash=password_hash,
            created_ms=now_ms(),
        )
    )
    return DeviceSecretPublic.of(device, secret, settings.mqtt_topic_prefix)


@router.post(
    "/{device_id}/rotate",
    response_model=DeviceSecretPublic,
    dependencies=[ADMIN],
    summary="A new secret (the old one works until the next export)",
    responses={**UNKNOWN_DEVICE, **DATABASE_DOWN},
)
async def rotate_device(
    device_id: DeviceId, store: StoreDep, principal: PrincipalDep, settings: SettingsDep, request: Request
) -> DeviceSecretPublic:
    audit_site(request, (await _device(store, principal, device_id)).site_id)
    secret, password_hash = new_device_secret()
    device = _changed(await store.devices.rotate(device_id, password_hash, now_ms()), device_id)
    return DeviceSecretPublic.of(device, secret, settings.mqtt_topic_prefix)


@router.post(
    "/{device_id}/revoke",
    response_model=DevicePublic,
    dependencies=[ADMIN],
    summary="Revoke a credential (kept in the list with the time; effective at the next export)",
    responses={**UNKNOWN_DEVICE, **DATABASE_DOWN},
)
async def revoke_device(
    device_id: DeviceId, store: StoreDep, principal: PrincipalDep, settings: SettingsDep, request: Request
) -> DevicePublic:
    audit_site(request, (await _device(store, principal, device_id)).site_id)
    device = _changed(await store.devices.revoke(device_id, now_ms()), device_id)
    return DevicePublic.from_device(device, settings.mqtt_topic_prefix)
