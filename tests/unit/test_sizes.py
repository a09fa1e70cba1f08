"""Rooms small enough to hold in one's head: no module over 500 lines, no function over 80.

A CLI command's option list is declarative (one ``Annotated`` parameter per option), so for the
commands in ``cli/`` only the body counts. Tests and generated data are outside the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("peakwatch", "collector", "processor", "notifier", "api", "simulators", "cli", "bench")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def function_lengths(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of every function; a ``cli/`` function is counted from its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body_only = path.relative_to(root).parts[0] == "cli"
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = child.body[0].lineno if body_only else child.lineno
                found.append((f"{prefix}{child.name}", (child.end_lineno or first) - first + 1))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def test_function_lengths_are_measured_from_the_def(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class A:\n    def f(self):\n        x = 1\n        return x\n")
    # f spans lines 2..4: 3 lines
    assert function_lengths(module, tmp_path) == [("A.f", 3)]


def test_cli_commands_are_measured_from_their_body(tmp_path: Path) -> None:
    module = tmp_path / "cli" / "m.py"
    module.parent.mkdir()
    module.write_text("def up(\n    a: int = 1,\n    b: int = 2,\n) -> None:\n    print(a)\n    print(b)\n")
    # the body is lines 5..6: 2 lines; the option list (lines 1..4) does not count
    assert function_lengths(module, tmp_path) == [("up", 2)]


@pytest.mark.parametrize("path", modules(), ids=_name)
def test_module_is_short(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines (at most {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", modules(), ids=_name)
def test_functions_are_short(path: Path) -> None:
    long = [f"{name} ({n} lines)" for name, n in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"{_name(path)}: {', '.join(long)} over {MAX_FUNCTION_LINES} lines"
