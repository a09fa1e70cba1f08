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


# api/schemas/: the wire format, below the routes. A schema module knows values (peakwatch, pydantic)
# and two value helpers of the API (a component's status, a payload's preview), never how a request is
# served: no route, dependency, auth or FastAPI.
SCHEMA_API_ALLOWED = {"api.health", "api.payloads"}


@pytest.mark.parametrize("path", python_files("api/schemas"), ids=lambda p: str(p.relative_to(ROOT)))
def test_api_schemas_know_no_route(path: Path) -> None:
    bad = {
        name
        for name in imports_of(path)
        if top(name) == "fastapi"
        or (top(name) == "api" and name not in SCHEMA_API_ALLOWED and not name.startswith("api.schemas."))
    }
    assert not bad, f"{path.relative_to(ROOT)} (a schema module) imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("api") if "schemas" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_api_imports_schemas_by_resource(path: Path) -> None:
    """``api.schemas`` re-exports nothing: a module names the resource whose bodies it speaks."""
    assert "api.schemas" not in imports_of(path), f"{path.relative_to(ROOT)} imports the api.schemas package"
