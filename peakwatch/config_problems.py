"""Every problem of a configuration file at once, each named by where it is.

A registry with three mistakes should cost one edit-and-restart, not three, and each mistake should be
found by what the user wrote (``site dc-1, meter it-1: role 'itt' is not one of: …``), not by a JSON path
into it. ``Problems`` collects them; ``convert`` checks a YAML mapping against a document struct field by
field, so one wrong field does not hide the next; ``yaml_problem`` says where a syntax error is in the
same ``where: what`` form. The file's ``ConfigError`` lists them all (``peakwatch.errors``).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import types
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec
import yaml

from peakwatch.errors import ConfigError

S = TypeVar("S", bound=msgspec.Struct)


class Problems:
    """The problems found so far in one file (``source``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.found.append(f"{where}: {what}" if where else what)

    @contextlib.contextmanager
    def at(self, where: str) -> Iterator[None]:
        """Record the ``ConfigError`` the block raises (each of its problems, at ``where``) and go on
        after the block: a check that depends on what failed is skipped, the others still run."""
        try:
            yield
        except ConfigError as exc:
            for problem in exc.problems:
                self.add(where, problem)

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError(source=self.source or None, problems=self.found)


def named(kind: str, raw: Any, key: str, index: int, *, quote: bool = False) -> str:
    """``site dc-1``: an item of a list by its id or name, else by its position (``site #2``)."""
    value = raw.get(key) if isinstance(raw, Mapping) else None
    if isinstance(value, str) and value.strip():
        return f"{kind} {value!r}" if quote else f"{kind} {value}"
    return f"{kind} #{index + 1}"


def items(raw: Mapping[str, Any], key: str, where: str, problems: Problems) -> list[tuple[int, Any]]:
    """The entries of the list ``raw[key]`` with their positions (none when absent or not a list)."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(where, f"{key} must be a list (- one entry per line), not {_kind(value)}")
        return []
    return list(enumerate(value))


def convert(
    raw: Any, cls: type[S], where: str, problems: Problems, *, skip: frozenset[str] = frozenset()
) -> S | None:
    """``raw`` as a ``cls`` document, every wrong field reported; ``None`` if any was wrong. Fields in
    ``skip`` are left at their defaults: the caller checks them item by item."""
    doc, failed = convert_partly(raw, cls, where, problems, {}, skip=skip)
    return None if failed else doc


@functools.cache
def _fields(cls: type[Any]) -> dict[str, msgspec.structs.FieldInfo]:
    """A document class's fields by their YAML name. Cached: msgspec evaluates the annotations on every
    call (about 0.2 ms), which was most of loading a registry of 100k meters (a call per meter)."""
    return {f.encode_name: f for f in msgspec.structs.fields(cls)}


def convert_partly(
    raw: Any,
    cls: type[S],
    where: str,
    problems: Problems,
    placeholders: Mapping[str, Any],
    *,
    skip: frozenset[str] = frozenset(),
) -> tuple[S | None, frozenset[str]]:
    """Like ``convert``, and the fields that were wrong (``"*"`` for an unknown one): the document holds
    the right fields, with ``placeholders`` (by field name) for wrong or missing required ones, so the
    caller can still check the right fields' meaning and skip the wrong ones' checks. ``None`` when
    ``raw`` is no mapping or a wrong required field has no placeholder."""
    if not isinstance(raw, Mapping):
        problems.add(where, f"must be a mapping of fields (key: value), not {_kind(raw)}")
        return None, frozenset({"*"})
    fields = _fields(cls)
    failed: set[str] = set()
    for key in raw:
        if key not in fields:
            problems.add(where, f"unknown field {key!r}; known: {', '.join(fields)}")
            failed.add("*")
    values: dict[str, Any] = {}
    for key, field in fields.items():
        if key in skip:
            continue
        if key not in raw:
            if field.required:
                problems.add(where, f"{key} is missing")
                failed.add(field.name)
            continue
        try:
            values[field.name] = msgspec.convert(raw[key], field.type)
        except msgspec.ValidationError as exc:
            problems.add(where, field_problem(key, raw[key], field.type, exc))
            failed.add(field.name)
    for name in failed:
        if name in placeholders:
            values[name] = placeholders[name]
    try:
        return cls(**values), frozenset(failed)
    except TypeError:  # a required field that was wrong and has no placeholder
        return None, frozenset(failed)


def field_problem(key: str, value: Any, kind: Any, exc: msgspec.ValidationError) -> str:
    """What is wrong with one field's value, in words: the allowed values of an enumeration, else
    msgspec's reason without its backticks, at the place inside the field (``labels.tier``)."""
    choices = _choices(kind)
    if choices and isinstance(value, str | int | float | bool):
        return f"{key} {value!r} is not one of: {', '.join(choices)}"
    text, _, at = str(exc).partition(" - at `")
    text = text.replace("`", "")
    text = text[:1].lower() + text[1:]
    if isinstance(value, str | int | float | bool) and not at:
        text += f" ({value!r})"
    inside = at.rstrip("`").removeprefix("$").replace("[...]", "")  # [...]: any key of a mapping
    return f"{key}{inside}: {text}"


def struct_problem(values: Mapping[str, Any], cls: type[Any], exc: msgspec.ValidationError) -> str:
    """Why ``values`` are not a ``cls``: ``field_problem`` of the field msgspec names."""
    text, _, at = str(exc).partition(" - at `")
    path = at.rstrip("`").removeprefix("$").removeprefix(".")
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    if path in fields:
        return field_problem(path, values.get(path), fields[path].type, msgspec.ValidationError(text))
    text = text.replace("`", "")
    text = text[:1].lower() + text[1:]
    return f"{path}: {text}" if path else text


def _choices(kind: Any) -> list[str]:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [str(member.value) for member in kind]
    origin = get_origin(kind)
    if origin is Literal:
        return [str(arg) for arg in get_args(kind)]
    if origin is Union or origin is types.UnionType:
        return [choice for arg in get_args(kind) if arg is not type(None) for choice in _choices(arg)]
    return []


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """A YAML syntax error as ``line 3, column 5: what (the line)``: the line itself shows what YAML
    tripped on, and the same ``where: what`` form as every other problem."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context:
        problem = f"{problem} ({context}"
        context_mark = getattr(exc, "context_mark", None)
        if context_mark is not None and context_mark is not mark:
            problem += f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
        problem += ")"
    if mark is None:
        return f"invalid YAML: {problem}"
    lines = text.splitlines()
    line = lines[mark.line].strip() if mark.line < len(lines) else ""
    shown = f": {line!r}" if line else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}{shown}"
