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


@pytest.mark.parametrize("path", python_files("peakwatch"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_builds_no_grafana_dashboards(path: Path) -> None:
    """Dashboards are built by their only user, the CLI (``cli/grafana/``): the core neither holds a
    Grafana module nor imports one (it may name Grafana in prose, as a reader of its data)."""
    assert "grafana" not in str(path.relative_to(ROOT / "peakwatch")).lower()
    grafana = {name for name in imports_of(path) if "grafana" in name.lower()}
    assert not grafana, f"{path.relative_to(ROOT)} imports {sorted(grafana)}"


def test_grafana_dashboards_live_in_the_cli() -> None:
    # source only: a stale __pycache__ entry of the old module is no Grafana code
    assert not [p for p in (ROOT / "peakwatch").rglob("*grafana*") if "__pycache__" not in p.parts]
    assert (ROOT / "cli" / "grafana" / "dashboards.py").is_file()


# ------------------------------------------------ notification channels and routing (issue #16, notify)

CHANNELS_ROOT = ROOT / "peakwatch" / "channels"
CHANNEL_FOLDERS = sorted(p.parent.name for p in CHANNELS_ROOT.glob("*/__init__.py"))
# What connects, sends or waits: a channel's config and message only describe. ``urllib.parse`` alone is
# a pure parser (the checks read URLs with it).
PURE_SHARED = (CHANNELS_ROOT / "checks.py", CHANNELS_ROOT / "text.py")
SENDING = (IO_MODULES - {"urllib"}) | {"urllib.request", "httpx", "aiosmtplib", "smtplib", "ssl", "apprise"}


def _channel_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] == ["peakwatch", "channels"] and len(parts) > 2 and parts[2] in CHANNEL_FOLDERS:
        return parts[2]
    return None


def test_channel_folders_exist() -> None:
    assert {"webhook", "email", "wecom", "dingtalk", "feishu", "slack", "apprise"} <= set(CHANNEL_FOLDERS)


FLAT_COMPONENT_PREFIXES = ("fuel:", "genfuel:", "output:", "zone:")
"""Prefixes of the flat component keys (``fuel:<carrier>:<quantity>`` …): stored and served, never used in
code, which holds ``Components`` (issue 16)."""


@pytest.mark.parametrize(
    "path",
    [p for folder in CHANNEL_FOLDERS for p in python_files(f"peakwatch/channels/{folder}")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_channels_never_import_each_other(path: Path) -> None:
    own = path.relative_to(CHANNELS_ROOT).parts[0]
    others = {name for name in imports_of(path) if _channel_of(name) not in (None, own)}
    assert not others, f"{path.relative_to(ROOT)} imports other channels {sorted(others)}"


@pytest.mark.parametrize(
    "path", sorted(CHANNELS_ROOT.glob("[!_]*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_shared_channel_modules_know_no_channel(path: Path) -> None:
    # Only the table (peakwatch/channels/__init__.py) lists the channels.
    named = {name for name in imports_of(path) if _channel_of(name) is not None}
    assert not named, f"{path.relative_to(ROOT)} imports channels {sorted(named)}"


@pytest.mark.parametrize(
    "path",
    sorted([*CHANNELS_ROOT.glob("*/config.py"), *CHANNELS_ROOT.glob("*/message.py"), *PURE_SHARED]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_channel_configs_and_messages_do_no_io(path: Path) -> None:
    bad = {name for name in imports_of(path) if name in SENDING or top(name) in SENDING}
    if path == CHANNELS_ROOT / "apprise" / "config.py":
        bad -= {"apprise"}  # apprise's own parser is the judge of its URLs; it parses, it does not connect
    assert not bad, f"{path.relative_to(ROOT)} (pure) imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", python_files("peakwatch/domain/routing"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_routing_package_stays_pure(path: Path) -> None:
    # Its libraries are held to the domain's rule by test_domain_is_pure (which walks subfolders); here:
    # of peakwatch it imports only the domain, so no configuration, channel or store reaches the math.
    assert path in python_files("peakwatch/domain")
    outside = {
        name
        for name in imports_of(path)
        if top(name) == "peakwatch" and not name.startswith("peakwatch.domain")
    }
    assert not outside, f"{path.relative_to(ROOT)} (routing, pure) imports {sorted(outside)}"


@pytest.mark.parametrize("path", python_files("cli"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_cli_module_imports_the_entry_point(path: Path) -> None:
    """``cli.main`` mounts every command group; a command module importing it back is the cycle the
    lazy mounting once dodged. What commands share lives in ``cli.common``."""
    assert "cli.main" not in imports_of(path), f"{path.relative_to(ROOT)} imports cli.main: use cli.common"


# ---- processor split (issue #16): the step is pure, the store is reached through processor/ports.py


def runtime_imports_of(path: Path) -> set[str]:
    """Like ``imports_of`` but without the ``if TYPE_CHECKING:`` blocks (names only for annotations)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    return {
        alias.name if isinstance(node, ast.Import) else (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [None])
    }


def test_the_processor_step_does_no_io() -> None:
    path = ROOT / "processor" / "step.py"
    bad = {n for n in imports_of(path) if top(n) in IO_MODULES or n.startswith("peakwatch.store")}
    assert not bad, f"processor/step.py (pure step) imports {sorted(bad)}"


PROCESSOR_PARTS = (
    "service",
    "step",
    "writer",
    "ownership",
    "restore",
    "restated",
    "rule_reload",
    "accountant",
    "ports",
)


@pytest.mark.parametrize("part", PROCESSOR_PARTS)
def test_the_processor_reaches_the_store_only_through_its_ports(part: str) -> None:
    path = ROOT / "processor" / f"{part}.py"
    bad = {n for n in runtime_imports_of(path) if n == "peakwatch.store" or n.startswith("peakwatch.store.")}
    assert not bad, f"processor/{part}.py imports {sorted(bad)}: use a protocol of processor/ports.py"


def test_retry_is_core() -> None:
    path = ROOT / "peakwatch" / "retry.py"
    bad = {n for n in imports_of(path) if top(n) not in sys.stdlib_module_names and n != "peakwatch.errors"}
    assert not bad, f"peakwatch/retry.py imports {sorted(bad)}: any room may use it"


def test_health_is_a_plain_core_type() -> None:
    """``peakwatch/health.py`` is what every component answers ``health()`` with: it may need nothing
    but the standard library, so the bus, the services and the API can all import it."""
    path = ROOT / "peakwatch" / "health.py"
    outside = {name for name in imports_of(path) if top(name) not in sys.stdlib_module_names}
    assert not outside - {"__future__"}, f"peakwatch/health.py imports {sorted(outside)}"


SPOOL_ROOMS = {
    "records": set(),  # the on-disk format stands alone
    "files": set(),
    "recovery": {"files", "records"},
    "metrics": set(),  # the gauges read the spool through a protocol
    "bus": {"files", "records", "recovery", "metrics"},
}


@pytest.mark.parametrize("room", sorted(SPOOL_ROOMS))
def test_spool_rooms_import_only_the_rooms_below_them(room: str) -> None:
    path = ROOT / "peakwatch" / "bus" / "spool" / f"{room}.py"
    prefix = "peakwatch.bus.spool."
    used = {name.removeprefix(prefix) for name in imports_of(path) if name.startswith(prefix)}
    assert used <= SPOOL_ROOMS[room], f"spool/{room}.py imports {sorted(used - SPOOL_ROOMS[room])}"


GMQTT_PRIVATE = {"_package_handler", "_handle_qos_1_publish_packet", "_connection", "_send_puback"}


@pytest.mark.parametrize("path", python_files("collector"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_gmqtt_adapter_reaches_into_gmqtt(path: Path) -> None:
    """gmqtt's private parts are used in ``collector/mqtt/gmqtt_client.py`` only (its docstring says why,
    its test says when they change)."""
    if path.relative_to(ROOT).as_posix() == "collector/mqtt/gmqtt_client.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found = sorted(attributes & GMQTT_PRIVATE)
    assert not found, f"{path.relative_to(ROOT)} uses gmqtt's private {found}: go through gmqtt_client"


FLAT_COMPONENT_PREFIXES = ("fuel:", "genfuel:", "output:", "zone:")
"""Prefixes of the flat component keys (``fuel:<carrier>:<quantity>`` …): stored and served, never used in
code, which holds ``Components`` (issue 16)."""


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


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("api") if "schemas" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_api_imports_schemas_by_resource(path: Path) -> None:
    """``api.schemas`` re-exports nothing: a module names the resource whose bodies it speaks."""
    assert "api.schemas" not in imports_of(path), f"{path.relative_to(ROOT)} imports the api.schemas package"
