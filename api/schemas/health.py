"""Bodies of ``/healthz`` and ``/readyz``, answered without credentials."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.health import ComponentStatus
from peakwatch.redaction import redact_text


class ComponentPublic(BaseModel):
    name: str = Field(examples=["database"])
    ok: bool
    detail: str = Field(examples=["ping 1.2 ms"])

    @classmethod
    def from_status(cls, status: ComponentStatus) -> ComponentPublic:
        """``/healthz`` answers without credentials: a detail quoting an error (a task's crash, a
        channel's URL with its token) is redacted here, at the one door every component passes."""
        return cls(name=status.name, ok=status.ok, detail=redact_text(status.detail))


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok: everything answers; degraded: the database or another component does not "
        "(readings are still accepted into the spool while the database is away; `/readyz` says whether "
        "data can be served)."
    )
    database: ComponentPublic
    components: list[ComponentPublic] = Field(description="As reported by the process's health probe.")


class ReadyPublic(BaseModel):
    ready: bool
    detail: str
