"""The architecture, enforced: who may import whom (docs/architecture.md, "Layering")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("collector", "processor", "notifier", "api", "simulators")
# The pure domain may use the standard library and these value libraries, nothing that does I/O.
DOMAIN_ALLOWED = {"msgspec", "peakwatch", "re2"}  # re2: linear-time regexes for matchers
IO_MODULES = {
    "asyncio",
    "socket",
    "asyncpg",
    "gmqtt",
    "amqtt",
    "fastapi",
    "uvicorn",
    "httpx",
    "aiokafka",
    "subprocess",
    "urllib",
    "http",
    "requests",
    "os",
    "pathlib",
    "io",
    "shutil",
    "sqlite3",
}


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports; relative imports are resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    module = tmp_path / "api" / "routes" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("from . import deps\nfrom .. import schemas\nfrom ...processor import meters\n")
    assert imports_of(module, tmp_path) == {"api.routes", "api", "processor"}


def top(name: str) -> str:
    return name.split(".", 1)[0]


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["peakwatch", *SERVICES])
def test_package_has_modules(package: str) -> None:
    assert python_files(package), f"{package}/ has no Python modules"


@pytest.mark.parametrize("path", python_files("peakwatch"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_service(path: Path) -> None:
    forbidden = {name for name in imports_of(path) if top(name) in (*SERVICES, "cli")}
    assert not forbidden, f"{path.relative_to(ROOT)} imports services {sorted(forbidden)}"


@pytest.mark.parametrize("path", python_files("peakwatch/domain"), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_is_pure(path: Path) -> None:
    stdlib = sys.stdlib_module_names
    bad = {
        name
        for name in imports_of(path)
        if top(name) in IO_MODULES
        or (top(name) not in stdlib and top(name) not in DOMAIN_ALLOWED and top(name) != "__future__")
    }
    bad -= {"peakwatch.domain", *[n for n in bad if n.startswith("peakwatch.domain.")]}
    assert not bad, f"{path.relative_to(ROOT)} (pure domain) imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", [p for s in SERVICES for p in python_files(s)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_services_do_not_import_each_other(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0]
    others = {name for name in imports_of(path) if top(name) in (*SERVICES, "cli") and top(name) != own}
    assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}: services talk through the core"


FLAT_COMPONENT_PREFIXES = ("fuel:", "genfuel:", "output:", "zone:")
"""Prefixes of the flat component keys (``fuel:<carrier>:<quantity>`` …): stored and served, never used in
code, which holds ``Components`` (issue 16)."""


@pytest.mark.parametrize(
    "path",
    [p for package in ("peakwatch", *SERVICES, "cli") for p in python_files(package)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_flat_component_keys_are_spelled_only_in_the_components_codec(path: Path) -> None:
    if path == ROOT / "peakwatch" / "domain" / "components.py":
        return  # encode_components / decode_components: the one place that converts
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    spelled = sorted(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(FLAT_COMPONENT_PREFIXES)
    )
    assert not spelled, f"{path.relative_to(ROOT)} spells flat component keys {spelled}: use Components"
