"""What every resource's schemas share: the error body, months, and the instant type.

Every instant of a response is given twice: RFC 3339 UTC (``started_at``) for people and epoch
milliseconds (``started_ms``) for scripts, which then need no date parsing. A model declares the instant
once, as an ``Instant`` field of an ``InstantModel``; the model writes both forms, in the wire order the
API has always had (the twin right after its field), into bodies and into the OpenAPI document alike.
"""

from __future__ import annotations

import re
import types
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Final, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from peakwatch.domain.instants import parse_instant, to_datetime

SITES_DOC: Final = "Sites in scope; `null`: every site."


class ErrorPublic(BaseModel):
    detail: str = Field(examples=["unknown site 'x'"])


# ------------------------------------------------------------------------------------------ months

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])\Z")


def parse_month(text: str) -> date:
    """``"2025-03"`` -> 2025-03-01; ``ValueError`` with the expected form otherwise."""
    match = _MONTH.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2025-03")
    year = int(match.group(1))
    if not 1973 <= year <= 2099:
        raise ValueError(f"{text!r} is outside 1973..2099, the range peakwatch stores")
    return date(year, int(match.group(2)), 1)


def month_text(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


# ------------------------------------------------------------------------------------------ instants


class _InstantMark:
    """Tags an ``Instant`` annotation so ``InstantModel`` finds its fields (a type alias has no name)."""


_INSTANT: Final = _InstantMark()


def _as_datetime(ms: int) -> datetime:
    # A one-argument function: pydantic would pass its serialisation info as ``to_datetime``'s ``tz``.
    return to_datetime(ms)


Instant = Annotated[int, PlainSerializer(_as_datetime, return_type=datetime), _INSTANT]
"""An instant of a response, held as epoch milliseconds: written as an RFC 3339 date-time under the
field's name (pydantic's form: ``2024-06-01T00:03:12.512000Z``) and as the integer under its twin (see
``twin_name``). Only ``InstantModel`` writes the twin."""


def _parsed(value: int | str) -> int:
    return parse_instant(str(value))


InstantIn = Annotated[int | str, AfterValidator(_parsed)]
"""An instant of a request: RFC 3339 with an offset or epoch milliseconds, epoch milliseconds once
validated (the field keeps ``int | str`` so the OpenAPI document offers both forms)."""


def twin_name(name: str) -> str:
    """The integer form's key: ``started_at`` -> ``started_ms``, ``window_start`` -> ``window_start_ms``,
    ``from_`` -> ``from_ms``, ``at`` -> ``at_ms`` (the names the API has always used)."""
    base = name.rstrip("_")
    return (base[: -len("_at")] if base.endswith("_at") else base) + "_ms"


def _is_instant(field: FieldInfo) -> bool:
    """``Instant`` (pydantic moves the mark into the field's metadata) or ``Instant | None``."""
    return _INSTANT in field.metadata or any(
        _INSTANT in getattr(arg, "__metadata__", ()) for arg in get_args(field.annotation)
    )


class TwinAfter:
    """Writes an instant's twin after another field instead of right after its own: the KPI window has
    always given ``window_start, window_end, window_start_ms, window_end_ms``."""

    def __init__(self, field: str) -> None:
        self.field = field


def _twin_schema(name: str, nullable: bool) -> JsonSchemaValue:
    """The property pydantic would write for ``<twin>: int`` (or ``int | None``), key for key."""
    title = name.replace("_", " ").title()
    if nullable:
        return {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": title}
    return {"title": title, "type": "integer"}


class InstantModel(BaseModel):
    """A response body with ``Instant`` fields: each is followed by its integer twin, in bodies and in
    the JSON schema. The twin is derived, never stored, so the two forms cannot disagree."""

    instant_twins: ClassVar[dict[str, list[tuple[str, str, bool]]]] = {}
    """Serialised key (name or alias) -> the twins written after it: (attribute, twin key, nullable),
    in field order. Filled per subclass from its ``Instant`` fields."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        twins: dict[str, list[tuple[str, str, bool]]] = {}
        for name, field in cls.model_fields.items():
            if not _is_instant(field):
                continue
            nullable = types.NoneType in get_args(field.annotation)
            after = next((m.field for m in field.metadata if isinstance(m, TwinAfter)), name)
            anchor = cls.model_fields[after]
            twin = (name, twin_name(name), nullable)
            twins.setdefault(after, []).append(twin)
            if anchor.alias and anchor.alias != after:
                twins.setdefault(anchor.alias, []).append(twin)
        cls.instant_twins = twins

    @model_serializer(mode="wrap")
    def _with_twins(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        written: dict[str, Any] = {}
        for key, value in data.items():
            written[key] = value
            for name, twin, _ in self.instant_twins.get(key, ()):
                written[twin] = getattr(self, name)
        return written

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The wrap serialiser returns Any, which would describe the body as ``{}``: describe the fields
        # instead, then add each twin after its instant, as a declared ``int`` field would be.
        fields_only = {k: v for k, v in core_schema.items() if k != "serialization"}
        json_schema = handler(fields_only)
        if handler.mode != "serialization":
            return json_schema
        target = handler.resolve_ref_schema(json_schema)
        properties: dict[str, Any] = {}
        for key, value in target["properties"].items():
            properties[key] = value
            for _, twin, nullable in cls.instant_twins.get(key, ()):
                properties[twin] = _twin_schema(twin, nullable)
        target["properties"] = properties
        required: list[str] = []
        for key in target.get("required", []):
            required.append(key)
            required.extend(twin for _, twin, _ in cls.instant_twins.get(key, ()))
        target["required"] = required
        return json_schema
