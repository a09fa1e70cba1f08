"""The shared instant type: given once, both wire forms, in bodies and in the JSON schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.schemas.common import Instant, InstantIn, InstantModel, Twin, twin, twin_name

# 1_717_200_192_512 ms = 1_717_200_192 s + 512 ms = 2024-06-01T00:03:12.512Z
MS = 1_717_200_192_512


class Event(InstantModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    id: int
    started_at: Instant = Field(description="When it started.")
    started_ms: Twin = twin()
    from_: Instant | None = Field(alias="from")
    from_ms: Twin | None = twin()
    note: str


class Window(InstantModel):
    start: Instant
    end: Instant
    start_ms: Twin = twin()
    end_ms: Twin = twin()
    value: float


class Request(BaseModel):
    at: InstantIn


@pytest.mark.parametrize(
    ("name", "twin"),
    [
        ("started_at", "started_ms"),
        ("window_start", "window_start_ms"),
        ("last_reading_ts", "last_reading_ts_ms"),
        ("from_", "from_ms"),
        ("at", "at_ms"),
        ("ts", "ts_ms"),
    ],
)
def test_twin_names_follow_the_api_convention(name: str, twin: str) -> None:
    assert twin_name(name) == twin


def test_each_instant_is_followed_by_its_twin() -> None:
    event = Event(id=1, started_at=MS, from_=None, note="x")
    assert list(event.model_dump(mode="json").items()) == [
        ("id", 1),
        ("started_at", "2024-06-01T00:03:12.512000Z"),
        ("started_ms", MS),
        ("from", None),
        ("from_ms", None),
        ("note", "x"),
    ]
    assert event.model_dump_json() == (
        '{"id":1,"started_at":"2024-06-01T00:03:12.512000Z","started_ms":1717200192512,'
        '"from":null,"from_ms":null,"note":"x"}'
    )


def test_python_dumps_give_datetimes_and_follow_by_alias() -> None:
    # 60_000 ms = 1970-01-01T00:01:00Z
    dumped = Event(id=1, started_at=0, from_=60_000, note="").model_dump(by_alias=False)
    assert dumped["started_at"].isoformat() == "1970-01-01T00:00:00+00:00"
    assert dumped["from_"].isoformat() == "1970-01-01T00:01:00+00:00"
    assert (dumped["started_ms"], dumped["from_ms"]) == (0, 60_000)


def test_a_twin_given_anyway_is_its_instant() -> None:
    # the two forms cannot disagree: the twin is always copied from the instant
    assert Event(id=1, started_at=MS, started_ms=5, from_=None, note="").started_ms == MS


def test_an_instant_without_its_twin_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=re.escape("declare its twin `seen_ms: Twin | None`")):

        class Bad(InstantModel):
            seen_at: Instant | None


def test_a_twin_can_follow_another_field() -> None:
    window = Window(start=0, end=60_000, value=1.5)
    assert list(window.model_dump(mode="json")) == ["start", "end", "start_ms", "end_ms", "value"]


def test_the_schema_declares_the_twins_as_integers() -> None:
    schema: dict[str, Any] = Event.model_json_schema(mode="serialization")
    assert list(schema["properties"]) == ["id", "started_at", "started_ms", "from", "from_ms", "note"]
    assert schema["properties"]["started_at"] == {
        "description": "When it started.",
        "format": "date-time",
        "title": "Started At",
        "type": "string",
    }
    assert schema["properties"]["started_ms"] == {"title": "Started Ms", "type": "integer"}
    assert schema["properties"]["from_ms"] == {
        "anyOf": [{"type": "integer"}, {"type": "null"}],
        "title": "From Ms",
    }
    assert schema["required"] == ["id", "started_at", "started_ms", "from", "from_ms", "note"]
    window = Window.model_json_schema(mode="serialization")
    assert window["required"] == ["start", "end", "start_ms", "end_ms", "value"]


def test_request_instants_take_text_or_milliseconds() -> None:
    # 2024-06-01T08:03:12.512+08:00 is 00:03:12.512Z
    assert Request(at="2024-06-01T08:03:12.512+08:00").at == MS
    assert Request(at=MS).at == MS
    with pytest.raises(ValidationError, match="no UTC offset"):
        Request(at="2024-06-01T08:00:00")
    with pytest.raises(ValidationError, match="epoch seconds"):
        Request(at=1_717_200_192)
