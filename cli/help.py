"""``--help`` as plain text, complete: what every ``peakwatch`` command group is built with.

Typer's rich help reads help texts as rich markup, so ``[default: 1883, or a free port …]`` vanished and
a long word was cut with "…"; click's plain help cuts each command's summary in the command list at
about 45 characters. Here help is click's plain text (nothing in it is markup), the command list shows
each command's whole first paragraph, and the docstrings' RST ````code```` reads as ```code```.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer.core import TyperGroup

_RST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
HELP_SETTINGS: dict[str, Any] = {"max_content_width": 110}


def plain_help(text: str | None) -> str | None:
    """``text`` as plain help: RST literals in single backticks, indented paragraphs (examples) kept as
    written instead of re-wrapped into one line (click's ``\\b`` marker)."""
    if text is None:
        return None
    paragraphs = _RST_LITERAL.sub(r"`\1`", inspect.cleandoc(text)).split("\n\n")
    kept = [
        "\b\n" + p if p.strip() and all(line.startswith(" ") for line in p.splitlines()) else p
        for p in paragraphs
    ]
    return "\n\n".join(kept)


def _summary(command: Any) -> str:
    """The first paragraph of the help, on one line and whole (help before a ``\\f`` only)."""
    text = (plain_help(command.short_help or command.help) or "").partition("\f")[0]
    first = text.replace("\b\n", "").split("\n\n", 1)[0]
    return " ".join(first.split())


class PlainHelpGroup(TyperGroup):
    """A command group whose help, and its commands' help, is plain text and complete.

    Contexts and formatters are typed ``Any``: typer 0.29 vendors click (``typer._click``), older typers
    use click itself, and this class works with both."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        self.help = plain_help(self.help)
        super().format_help_text(ctx, formatter)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not hasattr(command, "list_commands"):  # a group renders its own
            command.help = plain_help(command.help)  # idempotent: every lookup may apply it again
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, _summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(**options: Any) -> typer.Typer:
    """A ``typer.Typer`` with plain, complete help (see the module's docstring)."""
    return typer.Typer(cls=PlainHelpGroup, rich_markup_mode=None, context_settings=HELP_SETTINGS, **options)
