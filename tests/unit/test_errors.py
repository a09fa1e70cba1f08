"""The exception tree: every exception peakwatch raises on purpose is defined in ``peakwatch/errors.py``,
derives from ``PeakwatchError`` and is drawn in the module's docstring tree."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from peakwatch import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("peakwatch", "collector", "processor", "notifier", "api", "simulators", "cli")
TREE_CLASSES = [
    value for value in vars(errors).values() if inspect.isclass(value) and issubclass(value, Exception)
]


def exception_classes_defined_in(path: Path) -> list[str]:
    """Classes whose base names end in ``Error`` or ``Exception``: what a module defines as an error."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
            if any(base.endswith(("Error", "Exception")) for base in bases):
                found.append(node.name)
    return found


@pytest.mark.parametrize(
    "path",
    sorted(
        p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if p != ROOT / "peakwatch/errors.py"
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_exceptions_are_defined_in_the_tree(path: Path) -> None:
    defined = exception_classes_defined_in(path)
    assert not defined, f"{path.relative_to(ROOT)} defines {defined}: define them in peakwatch/errors.py"


@pytest.mark.parametrize("cls", TREE_CLASSES, ids=lambda c: c.__name__)
def test_every_exception_has_the_root_and_is_drawn(cls: type[Exception]) -> None:
    assert issubclass(cls, errors.PeakwatchError)
    drawn = (errors.__doc__ or "").split()
    assert cls.__name__ in drawn, f"{cls.__name__} is not drawn in the tree"


def test_the_tree_holds_what_the_issue_named() -> None:
    names = {cls.__name__ for cls in TREE_CLASSES}
    named = {"DeliveryError", "PushError", "FencedError", "ConflictError", "MqttError", "SimulationError"}
    assert named <= names


def test_instant_errors_stay_value_errors() -> None:
    # pydantic turns a ValueError raised in a validator into a 422 for the caller
    assert issubclass(errors.InstantError, ValueError)


def test_detector_sees_an_exception_class(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "class A(ValueError):\n    pass\n\nclass B:\n    pass\n\nclass C(x.StoreError):\n    pass\n"
    )
    assert exception_classes_defined_in(module) == ["A", "C"]
