"""What every resource's schemas share: the error body, months, and the instant type.

Every instant of a response is given twice: RFC 3339 UTC (``started_at``) for people and epoch
milliseconds (``started_ms``) for scripts, which then need no date parsing. A model declares the pair
(``started_at: Instant`` and, where the wire puts it, ``started_ms: Twin``) and is given the value once:
``InstantModel`` fills the twin from the instant and refuses, when the class is made, an instant
without its twin.
"""

from __future__ import annotations

import re
import types
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Final, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.fields import FieldInfo

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


class _Mark:
    """Tags an annotation so ``InstantModel`` finds its fields (a type alias has no name)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_INSTANT: Final = _Mark("Instant")
_TWIN: Final = _Mark("Twin")


def _as_datetime(ms: int) -> datetime:
    # A one-argument function: pydantic would pass its serialisation info as ``to_datetime``'s ``tz``.
    return to_datetime(ms)


Instant = Annotated[int, PlainSerializer(_as_datetime, return_type=datetime), _INSTANT]
"""An instant of a response, held as epoch milliseconds and written as an RFC 3339 date-time
(pydantic's form: ``2024-06-01T00:03:12.512000Z``). Its integer form is its ``Twin``."""

Twin = Annotated[int, _TWIN]
"""The integer form of the ``Instant`` it is named after (``started_at`` -> ``started_ms``, see
``twin_name``): declared where the wire puts it (right after its instant) as ``started_ms: Twin =
twin()``, never given: ``InstantModel`` copies the instant into it, so the two forms cannot disagree."""


def twin() -> Any:
    """A twin's default, so a constructor (and mypy) does not ask for it; it is always filled."""
    return Field(default=None)


def _twins_required(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """In the OpenAPI document a twin is what it is on the wire: always there, no default."""
    twins = {twin for _, _, twin in getattr(cls, "instant_twins", ())}
    if not twins:
        return
    for name in twins:
        schema["properties"][name].pop("default", None)
    required = set(schema.get("required", ())) | twins
    schema["required"] = [key for key in schema["properties"] if key in required]


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


def _marked(field: FieldInfo, mark: _Mark) -> bool:
    """``X`` (pydantic moves the mark into the field's metadata) or ``X | None``."""
    return mark in field.metadata or any(
        mark in getattr(arg, "__metadata__", ()) for arg in get_args(field.annotation)
    )


def _nullable(field: FieldInfo) -> bool:
    return types.NoneType in get_args(field.annotation)


class InstantModel(BaseModel):
    """A response body with ``Instant`` fields, each with its ``Twin``. The twins are ordinary fields,
    so bodies and the OpenAPI document are written by pydantic itself (no Python per key), and filled
    here from their instants whatever the caller passes."""

    model_config = ConfigDict(json_schema_extra=_twins_required)

    instant_twins: ClassVar[tuple[tuple[str, str | None, str], ...]] = ()
    """(instant, its alias, its twin) of every ``Instant`` field, checked when the class is made."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        twins = []
        for name, field in cls.model_fields.items():
            if not _marked(field, _INSTANT):
                continue
            twin = cls.model_fields.get(twin_name(name))
            if twin is None or not _marked(twin, _TWIN) or _nullable(twin) != _nullable(field):
                optional = " | None" if _nullable(field) else ""
                raise TypeError(
                    f"{cls.__name__}.{name}: declare its twin `{twin_name(name)}: Twin{optional}`"
                )
            twins.append((name, field.alias, twin_name(name)))
        cls.instant_twins = tuple(twins)

    @model_validator(mode="before")
    @classmethod
    def _fill_twins(cls, data: Any) -> Any:
        if not cls.instant_twins or not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, alias, twin in cls.instant_twins:
            if name in filled:
                filled[twin] = filled[name]
            elif alias is not None and alias in filled:
                filled[twin] = filled[alias]
        return filled
