"""Device credentials (table ``devices``): the store side of ``peakwatch devices``."""

from __future__ import annotations

from typing import Final

import asyncpg

from peakwatch.domain.devices import Device
from peakwatch.errors import ConflictError, StoreError
from peakwatch.store.pooled import Pooled, convert

_COLUMNS: Final = (
    "id, kind, site_id, meters, password_hash, created_at AS created_ms, rotated_at AS rotated_ms, "
    "revoked_at AS revoked_ms"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM devices"


class DevicesStore(Pooled):
    """Every method raises StoreError; adding an id that exists raises ConflictError (a StoreError)."""

    async def add(self, device: Device) -> Device:
        async with self._connection("adding a device") as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO devices (id, kind, site_id, meters, password_hash, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING "
                    + _SELECT.removeprefix("SELECT ").split(" FROM ")[0],
                    device.id,
                    device.kind.value,
                    device.site_id,
                    list(device.meters),
                    device.password_hash,
                    device.created_ms,
                )
            except asyncpg.UniqueViolationError:
                raise ConflictError(f"device {device.id!r} exists; rotate its secret instead") from None
            except asyncpg.ForeignKeyViolationError:
                raise StoreError(f"unknown site {device.site_id!r}", retryable=False) from None
        assert row is not None
        return convert(row, Device)

    async def rotate(self, device_id: str, password_hash: str, now_ms: int) -> Device | None:
        """A new secret for an active device (the old one stops working at the next export)."""
        rows = await self._fetch(
            "rotating a device secret",
            "UPDATE devices SET password_hash = $2, rotated_at = $3 WHERE id = $1 AND revoked_at IS NULL "
            f"RETURNING {_COLUMNS}",
            device_id,
            password_hash,
            now_ms,
        )
        return convert(rows[0], Device) if rows else None

    async def revoke(self, device_id: str, now_ms: int) -> Device | None:
        rows = await self._fetch(
            "revoking a device",
            f"UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}",
            device_id,
            now_ms,
        )
        return convert(rows[0], Device) if rows else None

    async def list(self, *, include_revoked: bool = True) -> list[Device]:
        rows = await self._fetch(
            "listing devices",
            _SELECT + (" ORDER BY id" if include_revoked else " WHERE revoked_at IS NULL ORDER BY id"),
        )
        return [convert(r, Device) for r in rows]
