"""Label matchers, as Alertmanager writes and reads them (``site="dc-1"``, ``severity=~"crit.*"``):
the one condition routes, silences, inhibition rules and maintenance windows are made of."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
import re2  # type: ignore[import-untyped]

_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER_TEXT: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", re.DOTALL)


class MatchOp(enum.StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_EQUALITY: Final = frozenset({MatchOp.EQ, MatchOp.NE})


MAX_REGEX_LENGTH: Final = 256
_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported as a ValueError, not on stderr


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """RE2, as Alertmanager uses: matching takes time linear in the label's length whatever the
    pattern, so a silence written by an operator (``severity=~"(.|.)*!"``) cannot stall the notifier
    (Python's backtracking ``re`` would, for minutes). Matchers are frozen Structs, so the compiled
    regex is cached here rather than on the matcher."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _unquote(raw: str, text: str) -> str:
    """Alertmanager's quoting: ``\\"``, ``\\\\`` and ``\\n`` are escapes; any other backslash stays, so
    ``site=~"dc-\\d+"`` means the regex ``dc-\\d+`` without doubling every backslash."""
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            following = raw[i + 1]
            out.append({'"': '"', "\\": "\\", "n": "\n"}.get(following, "\\" + following))
            i += 2
            continue
        if char == '"':
            if i != len(raw) - 1:
                raise ValueError(f"invalid matcher {text!r}: text after the closing quote")
            return "".join(out)
        out.append(char)
        i += 1
    raise ValueError(f"invalid matcher {text!r}: the value's quote is not closed")


class Matcher(msgspec.Struct, frozen=True, kw_only=True):
    """One label condition, as in Alertmanager: a missing label is the empty string, and regexes are
    anchored at both ends (``site=~dc`` does not match ``dc-1``), so a matcher never matches by accident
    on a substring."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        # Checked on construction (and so on decoding a config) so that matches() can never raise.
        if not _LABEL_NAME.fullmatch(self.name):
            raise ValueError(f"invalid label name {self.name!r} (expected [A-Za-z_][A-Za-z0-9_]*)")
        if self.op in (MatchOp.RE, MatchOp.NRE):
            if len(self.value) > MAX_REGEX_LENGTH:
                raise ValueError(f"regular expression longer than {MAX_REGEX_LENGTH} characters")
            try:
                _compiled(self.value)
            except re2.error as error:
                reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
                raise ValueError(f"invalid regular expression {self.value!r}: {reason}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        found = _compiled(self.value).fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``; the value may be in double
        quotes (needed for leading or trailing spaces)."""
        parsed = _MATCHER_TEXT.fullmatch(text)
        if parsed is None:
            raise ValueError(
                f"invalid matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex "
                "with a label name like [A-Za-z_][A-Za-z0-9_]*"
            )
        name, op, raw = parsed.groups()
        value = _unquote(raw, text) if raw.startswith('"') else raw
        try:
            return cls(name=name, op=MatchOp(op), value=value)
        except ValueError as error:
            raise ValueError(f"invalid matcher {text!r}: {error}") from None

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{_quote(self.value)}"


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Equality first: a silence's ``site="..."`` rules out other sites before any regex runs."""
    return all(m.matches(labels) for m in matchers if m.op in _EQUALITY) and all(
        m.matches(labels) for m in matchers if m.op not in _EQUALITY
    )
