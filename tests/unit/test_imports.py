"""Every module of the installed packages imports. Most unit tests import only what they test, so a
module that uses a name its dependency's floor lacks (``fastapi.sse`` before FastAPI 0.135) would
otherwise pass scripts/test-lowest, which runs this on the lowest versions pyproject.toml allows."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def installed_modules() -> list[str]:
    """The modules of the packages pyproject.toml installs, ``__main__`` left out (it runs the CLI)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    names = []
    for package in packages:
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if not info.name.endswith(".__main__"):
                names.append(info.name)
    return names


def test_the_packages_have_modules() -> None:
    assert {"api.stream", "collector.mqtt", "simulators.publisher", "cli.main"} <= set(installed_modules())


@pytest.mark.parametrize("module", installed_modules())
def test_module_imports(module: str) -> None:
    importlib.import_module(module)
