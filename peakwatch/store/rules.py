"""Alert rules made through the API. The processor polls ``version`` and reloads its rules when it
changes; the API validates every rule before it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from peakwatch.store.pooled import Pooled, convert
from peakwatch.store.records import StoredRule

_COLUMNS: Final = "name, spec, created_by, created_at AS created_ms, updated_by, updated_at AS updated_ms"


class RulesStore(Pooled):
    """Every method raises StoreError."""

    async def list(self) -> list[StoredRule]:
        rows = await self._fetch("listing alert rules", f"SELECT {_COLUMNS} FROM alert_rules ORDER BY name")
        return [convert(r, StoredRule) for r in rows]

    async def get(self, name: str) -> StoredRule | None:
        rows = await self._fetch(
            "reading an alert rule", f"SELECT {_COLUMNS} FROM alert_rules WHERE name = $1", name
        )
        return convert(rows[0], StoredRule) if rows else None

    async def version(self) -> str:
        """Changes whenever the stored rules change (a digest of every rule's content, so a rule deleted
        and made again differently within the same instant is still a change); cheap to poll."""
        rows = await self._fetch(
            "reading the alert rules version",
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(name || '@' || "
            "(extract(epoch FROM updated_at) * 1000000)::bigint::text || spec::text, ',' ORDER BY name)), "
            "'') AS v FROM alert_rules",
        )
        return str(rows[0]["v"])

    async def create(self, name: str, spec: Mapping[str, Any], by: str, now_ms: int) -> StoredRule | None:
        """``None``: the name is taken (checked by the insert itself, so two admins cannot both win)."""
        rows = await self._fetch(
            "adding an alert rule",
            "INSERT INTO alert_rules (name, spec, created_by, created_at, updated_by, updated_at) "
            f"VALUES ($1, $2, $3, $4, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
            name,
            dict(spec),
            by,
            now_ms,
        )
        return convert(rows[0], StoredRule) if rows else None

    async def replace(self, name: str, spec: Mapping[str, Any], by: str, now_ms: int) -> StoredRule | None:
        """``None``: no such rule (removed meanwhile: a replace does not bring it back)."""
        rows = await self._fetch(
            "replacing an alert rule",
            "UPDATE alert_rules SET spec = $2, updated_by = $3, "
            "updated_at = greatest($4, updated_at + interval '1 microsecond') "
            f"WHERE name = $1 RETURNING {_COLUMNS}",
            name,
            dict(spec),
            by,
            now_ms,
        )
        return convert(rows[0], StoredRule) if rows else None

    async def delete(self, name: str) -> StoredRule | None:
        rows = await self._fetch(
            "deleting an alert rule", f"DELETE FROM alert_rules WHERE name = $1 RETURNING {_COLUMNS}", name
        )
        return convert(rows[0], StoredRule) if rows else None
