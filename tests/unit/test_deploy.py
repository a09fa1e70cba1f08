"""The cluster deployment (Dockerfile, deploy/compose, deploy/k8s) fits peakwatch and itself.

Nothing here starts a container: the build machine has no Docker engine and no Kubernetes cluster. What
can be checked offline is checked: the compose file against the Compose Specification (the
``compose-spec`` package: bindings of the Rust ``compose_spec`` crate, which parses and validates
compose files) after the interpolation Compose does, the rendered Kubernetes manifests
(``kubectl kustomize deploy/``) against the Kubernetes API schemas (``kubernetes-validate``), and, in
both, the mistakes a schema cannot see: a setting peakwatch does not know, a command it does not have,
a URL that names no service, a mount of a file that is not there, two collectors sharing an MQTT client
id, a ConfigMap or Secret that nothing creates.

``kubectl apply --dry-run=client`` is not used: even a client-side dry run asks the API server for its
resource types (it fails with "connection refused" without a cluster), so the schema check stands in.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from typer.main import get_command

from cli.devices import devices_app
from cli.main import app as peakwatch_app
from peakwatch.bus import open_bus
from peakwatch.config import Registry, Settings, check_mqtt_shared_group
from peakwatch.mqtt_url import BrokerAddress

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
GRAFANA_DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "peakwatch.yaml"
GRAFANA_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "peakwatch.yaml"

SETTINGS_ENV = {f"PEAKWATCH_{name.upper()}" for name in Settings.model_fields}
PEAKWATCH_IMAGE = "peakwatch"
PROCESSORS = 2
COLLECTORS = 2
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests are checked against (StatefulSet, PDB and Job fields they use
are all older)."""


def _image_name(image: str) -> str:
    """``registry/name:tag`` -> ``registry/name``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def _assert_pinned(where: str, image: str) -> None:
    """A tag or digest, and not ``latest``: a redeploy must run what was tested."""
    if "@sha256:" in image:
        return
    last = image.rsplit("/", 1)[-1]
    assert ":" in last, f"{where}: image {image!r} has no tag"
    tag = last.rsplit(":", 1)[1]
    assert tag not in ("", "latest"), f"{where}: image {image!r} is not pinned"


def _parse_cli(args: list[str], root: Any, name: str = "peakwatch") -> Any:
    """Parse ``args`` as the ``peakwatch`` command line would, without running the command: an unknown
    command, an unknown option or a value of the wrong type raises a click error. (Typer carries its
    own copy of click, so groups are recognised by their ``commands``, not by class.)"""
    command, rest = root, list(args)
    while isinstance(getattr(command, "commands", None), dict):
        assert rest, f"{name}: a subcommand is missing"
        sub = command.get_command(command.context_class(command), rest[0])
        assert sub is not None, f"{name} has no command {rest[0]!r}"
        name, command, rest = rest[0], sub, rest[1:]
    return command.make_context(name, rest)


PEAKWATCH_CLI = get_command(peakwatch_app)


# ---------------------------------------------------------------------------------------------- compose

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


def _interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        braced = _BRACED.match(match.group("braced"))
        assert braced, f"unsupported substitution {match.group(0)!r}"
        name, op, arg = braced.group("name", "op", "arg")
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op is None:
            return env.get(name, "")
        if op.endswith("-"):
            return env[name] if present else _interpolate(arg, env)
        if op.endswith("?"):
            assert present, f"${{{name}}} is required: {arg}"
            return env[name]
        return _interpolate(arg, env) if present else ""

    return _VARIABLE.sub(substitute, value)


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolated(value, env) for value in node]
    return node


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Compose sees it with the example .env: variables substituted."""
    doc: dict[str, Any] = _interpolated(compose_raw, _dotenv(ENV_EXAMPLE))
    return doc


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _peakwatch_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc for name, svc in _services(compose).items() if _image_name(svc["image"]) == PEAKWATCH_IMAGE
    }


def _environment(svc: Mapping[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _with_command(compose: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in _peakwatch_services(compose).items()
        if "entrypoint" not in svc and svc.get("command", [None])[0] == command
    }


def _replicas(svc: Mapping[str, Any]) -> int:
    replicas: int = svc.get("deploy", {}).get("replicas", 1)
    return replicas


def _binds(svc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry (short syntax, as compose.yaml writes them)."""
    out = []
    for entry in svc.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target = entry.split(":")[:2]
        out.append((source, target))
    return out


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    from compose_spec import PyCompose

    parsed = PyCompose.from_json(json.dumps(compose))  # YAML anchors and merge keys resolved by PyYAML
    parsed.validate()  # volumes, networks, configs and secrets used are defined
    assert sorted(parsed.service_names()) == sorted(compose["services"])


@pytest.mark.parametrize(
    ("service_field", "value"),
    [("restart", "sometimes"), ("imagee", "x"), ("healthcheck", {"test": 1}), ("ports", [{"target": "abc"}])],
)
def test_the_compose_check_refuses_a_broken_service(
    compose: dict[str, Any], service_field: str, value: object
) -> None:
    from compose_spec import PyCompose

    broken = json.loads(json.dumps(compose))
    broken["services"]["api"][service_field] = value
    with pytest.raises(ValueError):  # noqa: PT011 (the crate's message names the field in many ways)
        PyCompose.from_json(json.dumps(broken)).validate()


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in _services(compose).items():
        _assert_pinned(f"service {name}", svc["image"])


def test_compose_dependencies_exist_and_can_be_met(compose: dict[str, Any]) -> None:
    """A ``service_healthy`` dependency needs a healthcheck and a ``service_completed_successfully`` one
    a service that ends (a restarting service never completes, so its dependants never start)."""
    services = _services(compose)
    for name, svc in services.items():
        for target, condition in svc.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is no service"
            assert "profiles" not in services[target], f"{name} depends on {target}, which is in a profile"
            match condition["condition"]:
                case "service_healthy":
                    assert "healthcheck" in services[target], f"{target} has no healthcheck for {name}"
                case "service_completed_successfully":
                    assert services[target].get("restart", "no") == "no", f"{target} never completes"
                case other:
                    assert other == "service_started"


def test_compose_peakwatch_services_set_only_known_settings(compose: dict[str, Any]) -> None:
    services = _peakwatch_services(compose)
    assert services
    for name, svc in services.items():
        unknown = sorted(set(_environment(svc)) - SETTINGS_ENV)
        assert unknown == [], f"{name} sets what peakwatch.config.Settings does not read: {unknown}"
        Settings.model_validate(
            {k.removeprefix("PEAKWATCH_").lower(): v for k, v in _environment(svc).items()}
        )


def test_compose_commands_are_peakwatch_commands(compose: dict[str, Any]) -> None:
    for name, svc in _peakwatch_services(compose).items():
        if "entrypoint" in svc:
            # broker-files: `peakwatch devices export ... && chown ...` in a shell.
            [script] = svc["command"]
            first = shlex.split(script.split("&&")[0])
            assert first[:2] == ["peakwatch", "devices"], name
            ctx = _parse_cli(first[2:], get_command(devices_app), "devices")
            out = ctx.params["out"]
            assert any(target == str(out) for _, target in _binds(svc)), f"{name} exports to no volume"
            continue
        if svc["command"] != ["--help"]:
            _parse_cli(svc["command"], PEAKWATCH_CLI)


def test_two_collectors_with_distinct_stable_client_ids(compose: dict[str, Any]) -> None:
    """Each collector's persistent MQTT session is keyed on its client id: two collectors with one id
    would take each other's session over, so replicas of one service (same environment) are wrong."""
    collectors = _with_command(compose, "collector")
    assert len(collectors) == COLLECTORS
    services = _services(compose)
    ids, groups = set(), set()
    for name, svc in collectors.items():
        env = _environment(svc)
        assert _replicas(svc) == 1, f"{name}: replicas would share the client id"
        ids.add(env["PEAKWATCH_MQTT_CLIENT_ID"])
        groups.add(check_mqtt_shared_group(env["PEAKWATCH_MQTT_SHARED_GROUP"]))
        broker = BrokerAddress.parse(env["PEAKWATCH_MQTT_URL"])
        assert broker.host in services, name
        assert broker.username, name
        assert broker.password, name
        assert "mosquitto" in services[broker.host]["image"]
        assert any(p.split(":")[-1] == str(broker.port) for p in services[broker.host]["ports"])
    assert len(ids) == COLLECTORS
    assert "" not in ids
    assert len(groups) == 1, "collectors in different share groups would each get every message"


def test_processors_share_a_kafka_bus_with_enough_partitions(compose: dict[str, Any]) -> None:
    processors = _with_command(compose, "processor")
    assert sum(_replicas(svc) for svc in processors.values()) == PROCESSORS
    services = _services(compose)
    kafka_nodes = [s for s in services.values() if _image_name(s["image"]) == "apache/kafka"]
    urls = {_environment(svc)["PEAKWATCH_BUS_URL"] for svc in _peakwatch_services(compose).values()}
    assert len(urls) == 1, "every component must use the same bus"
    [url] = urls
    options = open_bus(url).options  # type: ignore[attr-defined]
    assert options.partitions >= PROCESSORS, "processors beyond the partition count idle"
    assert options.replication <= len(kafka_nodes)
    for server in options.bootstrap:
        host = server.rsplit(":", 1)[0]
        assert _image_name(services[host]["image"]) == "apache/kafka"
        assert f"PLAINTEXT://{server}" in _environment(services[host])["KAFKA_ADVERTISED_LISTENERS"]


def test_database_url_matches_the_database_service(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name, svc in _peakwatch_services(compose).items():
        url = urlsplit(_environment(svc)["PEAKWATCH_DATABASE_URL"])
        db = _environment(services[url.hostname or ""])
        assert (url.username, url.password, url.path.lstrip("/"), url.port) == (
            db["POSTGRES_USER"],
            db["POSTGRES_PASSWORD"],
            db["POSTGRES_DB"],
            5432,
        ), name


def test_api_listens_where_it_is_published_and_probed(compose: dict[str, Any]) -> None:
    [svc] = _with_command(compose, "api").values()
    ctx = _parse_cli(svc["command"], PEAKWATCH_CLI)
    assert ctx.params["api_host"] == "0.0.0.0"
    port = ctx.params["api_port"]
    assert any(p.split(":")[-1] == str(port) for p in svc["ports"])
    probe = " ".join(svc["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in probe


def test_mounted_files_exist_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    for name, svc in _services(compose).items():
        for source, _target in _binds(svc):
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in declared, f"{name} uses volume {source}, which is not declared"


def test_mosquitto_gets_every_file_its_configuration_names(compose: dict[str, Any]) -> None:
    """mosquitto.conf names its password, ACL, certificate and persistence paths; each must be on a
    mount, and the password and ACL files where `peakwatch devices export` writes them."""
    services = _services(compose)
    [broker] = [s for s in services.values() if "mosquitto" in s["image"]]
    mounts = dict((target, source) for source, target in _binds(broker))
    assert mounts["/mosquitto/config/mosquitto.conf"] == "../mosquitto/mosquitto.conf"
    conf = _mosquitto_conf()

    def mount_of(path: str) -> str:
        best = max((t for t in mounts if path == t or path.startswith(t.rstrip("/") + "/")), key=len)
        return mounts[best]

    exports = {target: source for s in _peakwatch_services(compose).values() for source, target in _binds(s)}
    for key in ("password_file", "acl_file"):
        path = PurePosixPath(conf[key])
        assert mount_of(str(path)) == exports[str(path.parent)], f"{key} is not where devices export writes"
    for key in ("cafile", "certfile", "keyfile"):
        assert mount_of(conf[key]) == "./certs", key
    assert mount_of(conf["persistence_location"]) in compose["volumes"]


def _mosquitto_conf() -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf.setdefault(key, value.strip())
    return conf


def _grafana_datasource_variables() -> set[str]:
    return set(
        re.findall(r"\$\{(PEAKWATCH_GRAFANA_[A-Z_]+)\}", GRAFANA_DATASOURCE.read_text(encoding="utf-8"))
    )


def _grafana_dashboards_path() -> str:
    providers = yaml.safe_load(GRAFANA_PROVIDERS.read_text(encoding="utf-8"))
    [provider] = providers["providers"]
    path: str = provider["options"]["path"]
    return path


def test_grafana_gets_its_provisioning_and_database_variables(compose: dict[str, Any]) -> None:
    [grafana] = [s for s in _services(compose).values() if _image_name(s["image"]) == "grafana/grafana"]
    mounts = {target: source for source, target in _binds(grafana)}
    assert mounts["/etc/grafana/provisioning/datasources"] == "../grafana/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "../grafana/provisioning/dashboards"
    assert mounts[_grafana_dashboards_path()] == "../grafana/dashboards"
    env = _environment(grafana)
    assert _grafana_datasource_variables() <= set(env)
    assert env["PEAKWATCH_GRAFANA_DB_USER"] in (COMPOSE_DIR / "grafana-reader.sql").read_text(
        encoding="utf-8"
    )


def test_registry_loads_and_configures_the_notifier() -> None:
    """The notifier exits when the registry has no notifications; the shipped registry has the demo
    sites so that `peakwatch simulate` can feed a new cluster."""
    registry = Registry.from_yaml(COMPOSE_DIR / "registry.yaml")
    assert registry.notifications is not None
    demo = Registry.bundled_demo()
    assert set(demo.meters) <= set(registry.meters)


def test_env_example_names_every_required_variable(compose_raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert required
    assert required <= set(_dotenv(ENV_EXAMPLE))
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()


# ------------------------------------------------------------------------------------- Docker image


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_runs_peakwatch_with_kafka_as_a_user() -> None:
    stages = _dockerfile_stages()
    for stage in stages:
        _assert_pinned("Dockerfile", stage[0][1].split()[0])
    runs = " ".join(args for stage in stages for ins, args in stage if ins == "RUN")
    assert 'pip install ".[kafka]"' in runs
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "kafka" in pyproject["project"]["optional-dependencies"]
    final = dict(stages[-1])
    user = final["USER"].split(":")[0]
    assert user.isdigit(), "a numeric USER: Kubernetes' runAsNonRoot can only check a number"
    assert int(user) != 0, "not root"
    assert json.loads(final["ENTRYPOINT"]) == ["peakwatch"]
    assert "peakwatch" in pyproject["project"]["scripts"]
    assert final["EXPOSE"] == "8000"


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides; ``!``
    re-includes; ``**`` spans directories."""

    def matches(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.fullmatch(regex, candidate) is not None

    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        if any(matches(pattern, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p for p in ROOT.iterdir() if p.is_dir() and any(fnmatch.fnmatch(p.name, i) for i in includes)]
    assert {p.name for p in packages} >= {"peakwatch", "collector", "processor", "notifier", "api", "cli"}
    for package in packages:
        needed += [str(f.relative_to(ROOT)) for f in package.rglob("*.py")]
    for package, globs in pyproject["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            needed += [str(f.relative_to(ROOT)) for f in (ROOT / package).glob(pattern) if f.is_file()]
    excluded = [path for path in needed if _dockerignore_excludes(patterns, path)]
    assert excluded == []
    assert _dockerignore_excludes(patterns, ".venv/bin/python")
    assert _dockerignore_excludes(patterns, "deploy/compose/.env")


# ------------------------------------------------------------------------------------------ Kubernetes

WORKLOADS = {"Deployment", "StatefulSet", "Job"}
API_VERSIONS = {
    "Namespace": "v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
}


def _kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def k8s_raw() -> list[dict[str, Any]]:
    """The manifests as written (what every check but the rendered ones reads)."""
    listed = [DEPLOY / path for path in _kustomization()["resources"]]
    on_disk = sorted((DEPLOY / "k8s").glob("*.yaml"))
    assert sorted(listed) == on_disk, "every manifest in deploy/k8s is listed in deploy/kustomization.yaml"
    return [doc for path in listed for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def k8s_rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize rendering is not checked")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, workload, pod template) of each workload."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc["metadata"]["name"], doc, doc["spec"]["template"]


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, _, template in _pods(docs):
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            yield name, container


def _peakwatch_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, container in _containers(docs):
        if _image_name(container["image"]) == PEAKWATCH_IMAGE:
            yield name, container


def _generated_literals(name: str) -> dict[str, str]:
    [generator] = [g for g in _kustomization()["configMapGenerator"] if g["name"] == name]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def _env_values(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain environment: envFrom of generated ConfigMaps, then env values."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(_generated_literals(source["configMapRef"]["name"]))
    for var in container.get("env", []):
        values[var["name"]] = var.get("value", f"<{var['name']} from {sorted(var.get('valueFrom', {}))}>")
    return values


def test_k8s_kinds_and_api_versions(k8s_raw: list[dict[str, Any]]) -> None:
    for doc in k8s_raw:
        assert API_VERSIONS.get(doc["kind"]) == doc["apiVersion"], f"{doc['kind']} {doc['metadata']['name']}"


def test_k8s_selectors_match_their_pods(k8s_raw: list[dict[str, Any]]) -> None:
    services = _of_kind(k8s_raw, "Service")
    templates = [template for _, _, template in _pods(k8s_raw)]
    for name, workload, template in _pods(k8s_raw):
        selector = workload["spec"].get("selector", {}).get("matchLabels")
        if workload["kind"] != "Job":
            assert selector, name
            assert selector.items() <= template["metadata"]["labels"].items(), name
        if workload["kind"] == "StatefulSet":
            service = services[workload["spec"]["serviceName"]]
            assert service["spec"].get("clusterIP") == "None", f"{name}: serviceName must be headless"
    for budget in _of_kind(k8s_raw, "PodDisruptionBudget").values():
        labels = budget["spec"]["selector"]["matchLabels"]
        assert any(labels.items() <= t["metadata"]["labels"].items() for t in templates), budget["metadata"]
    for name, service in services.items():
        selected = [
            t for t in templates if service["spec"]["selector"].items() <= t["metadata"]["labels"].items()
        ]
        assert selected, f"Service {name} selects no pod"
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for template in selected:
                ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
                assert any(target in (p.get("name"), p["containerPort"]) for p in ports), f"{name}:{target}"


def test_k8s_pods_ignore_service_links(k8s_raw: list[dict[str, Any]]) -> None:
    """Kubernetes gives every pod variables named after each Service (``PEAKWATCH_API_PORT=tcp://…`` for
    peakwatch-api, ``KAFKA_PORT`` for kafka); peakwatch reads PEAKWATCH_* as settings and the Kafka image
    turns KAFKA_* into broker settings, so either would be broken by them."""
    for name, _, template in _pods(k8s_raw):
        assert template["spec"].get("enableServiceLinks") is False, name
    assert "api_port" in Settings.model_fields  # what PEAKWATCH_API_PORT=tcp://… would collide with


def test_k8s_variable_references_are_defined_before_use(k8s_raw: list[dict[str, Any]]) -> None:
    """Kubernetes expands ``$(NAME)`` only for variables defined earlier in the list; otherwise the text
    stays as it is (a password of ``$(DB_PASSWORD)``)."""
    for name, container in _containers(k8s_raw):
        defined = set(_env_values({"envFrom": container.get("envFrom", [])}))
        for var in container.get("env", []):
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
                assert ref in defined, f"{name}: {var['name']} uses $({ref}) before it is defined"
            defined.add(var["name"])
        for arg in container.get("command", []) + container.get("args", []):
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                assert ref in defined, f"{name}: $({ref}) in its command is not defined"


def test_k8s_peakwatch_containers_set_only_known_settings(k8s_raw: list[dict[str, Any]]) -> None:
    containers = list(_peakwatch_containers(k8s_raw))
    assert containers
    for name, container in containers:
        env = _env_values(container)
        helpers = {k for k in env if not k.startswith("PEAKWATCH_")}
        unknown = sorted(set(env) - SETTINGS_ENV - helpers)
        assert unknown == [], f"{name} sets what peakwatch.config.Settings does not read: {unknown}"
        used = " ".join(env.values())
        assert all(f"$({helper})" in used for helper in helpers), f"{name}: unused variables {helpers}"
        assert "command" not in container, f"{name}: keep the image's entrypoint (peakwatch)"
        _parse_cli(container["args"], PEAKWATCH_CLI)


def test_k8s_urls_name_services_that_expose_the_port(k8s_raw: list[dict[str, Any]]) -> None:
    services = _of_kind(k8s_raw, "Service")

    def exposes(host: str, port: int) -> bool:
        service = services.get(host)
        return service is not None and any(p["port"] == port for p in service["spec"]["ports"])

    for name, container in _peakwatch_containers(k8s_raw):
        env = _env_values(container)
        database = urlsplit(env["PEAKWATCH_DATABASE_URL"])
        assert exposes(database.hostname or "", database.port or 5432), name
        for server in open_bus(env["PEAKWATCH_BUS_URL"]).options.bootstrap:  # type: ignore[attr-defined]
            host, port = server.rsplit(":", 1)
            assert exposes(host, int(port)), f"{name}: {server}"
        if "PEAKWATCH_MQTT_URL" in env:
            broker = BrokerAddress.parse(env["PEAKWATCH_MQTT_URL"])
            assert exposes(broker.host, broker.port), name


def test_k8s_collectors_have_stable_distinct_client_ids(k8s_raw: list[dict[str, Any]]) -> None:
    """A StatefulSet's pod names are stable and distinct; the client id is the pod name."""
    collectors = [(n, c) for n, c in _peakwatch_containers(k8s_raw) if c["args"][0] == "collector"]
    [(name, container)] = collectors
    workload = _of_kind(k8s_raw, "StatefulSet")[name]
    assert workload["spec"]["replicas"] == COLLECTORS
    [client_id] = [v for v in container["env"] if v["name"] == "PEAKWATCH_MQTT_CLIENT_ID"]
    assert client_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    check_mqtt_shared_group(_env_values(container)["PEAKWATCH_MQTT_SHARED_GROUP"])


def test_k8s_processors_and_partitions(k8s_raw: list[dict[str, Any]]) -> None:
    [(name, container)] = [(n, c) for n, c in _peakwatch_containers(k8s_raw) if c["args"] == ["processor"]]
    assert _of_kind(k8s_raw, "Deployment")[name]["spec"]["replicas"] == PROCESSORS
    options = open_bus(_env_values(container)["PEAKWATCH_BUS_URL"]).options  # type: ignore[attr-defined]
    assert options.partitions >= PROCESSORS
    kafka = _of_kind(k8s_raw, "StatefulSet")["kafka"]
    assert options.replication <= kafka["spec"]["replicas"]


def test_k8s_api_probes_and_port(k8s_raw: list[dict[str, Any]]) -> None:
    [container] = [c for _, c in _peakwatch_containers(k8s_raw) if c["args"][0] == "api"]
    ctx = _parse_cli(container["args"], PEAKWATCH_CLI)
    assert ctx.params["api_host"] == "0.0.0.0"
    [port] = container["ports"]
    assert port["containerPort"] == ctx.params["api_port"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}


def test_k8s_kafka_quorum_is_the_statefulset(k8s_raw: list[dict[str, Any]]) -> None:
    """The controller voters are exactly the StatefulSet's pods (node id = ordinal), reachable through
    the headless Service even before they are ready (the quorum is what makes them ready), started
    together."""
    kafka = _of_kind(k8s_raw, "StatefulSet")["kafka"]
    spec = kafka["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    headless = _of_kind(k8s_raw, "Service")[spec["serviceName"]]
    assert headless["spec"]["publishNotReadyAddresses"] is True
    [container] = spec["template"]["spec"]["containers"]
    env = _env_values(container)
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    expected = [
        f"{i}@{kafka['metadata']['name']}-{i}.{spec['serviceName']}.$(POD_NAMESPACE).svc:9093"
        for i in range(spec["replicas"])
    ]
    assert voters == expected
    assert (
        int(env["KAFKA_MIN_INSYNC_REPLICAS"])
        < int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
        <= spec["replicas"]
    )
    script = container["command"][-1]
    assert 'KAFKA_NODE_ID="${HOSTNAME##*-}"' in script
    assert f"${{HOSTNAME}}.{spec['serviceName']}.${{POD_NAMESPACE}}.svc:9092" in script


def test_k8s_mosquitto_and_grafana_mount_what_their_configuration_names(
    k8s_raw: list[dict[str, Any]],
) -> None:
    conf = _mosquitto_conf()
    mosquitto = _of_kind(k8s_raw, "StatefulSet")["mosquitto"]["spec"]["template"]["spec"]
    [container] = mosquitto["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in mosquitto["volumes"]}
    config = volumes[mounts[str(PurePosixPath(conf["password_file"]).parent)]]["projected"]["sources"]
    provided = {item["path"] for s in config for item in s.get("secret", {}).get("items", [])}
    assert {PurePosixPath(conf[k]).name for k in ("password_file", "acl_file")} <= provided
    assert any(s.get("configMap", {}).get("name") == "mosquitto-config" for s in config)
    assert str(PurePosixPath(conf["cafile"]).parent) in mounts
    assert conf["persistence_location"].rstrip("/") in mounts

    grafana = _of_kind(k8s_raw, "Deployment")["grafana"]["spec"]["template"]["spec"]
    [container] = grafana["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in grafana["volumes"]}
    assert volumes[mounts[_grafana_dashboards_path()]]["configMap"]["name"] == "grafana-dashboards"
    assert _grafana_datasource_variables() <= set(_env_values(container))


def test_k8s_generators_ship_every_dashboard() -> None:
    [generator] = [g for g in _kustomization()["configMapGenerator"] if g["name"] == "grafana-dashboards"]
    shipped = {DEPLOY / f for f in generator["files"]}
    assert shipped == set((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert set(_generated_literals("peakwatch-env")) <= SETTINGS_ENV


def test_k8s_rendered_manifests_follow_the_kubernetes_schemas(k8s_rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed"
    )
    for doc in k8s_rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_rendered_references_resolve(k8s_rendered: list[dict[str, Any]]) -> None:
    """Every image is pinned, every ConfigMap a pod uses is generated (kustomize renames the references
    to the hashed names; a misspelt one is left as written), and every Secret is one docs/deploy.md
    tells how to create, with the keys the pods read."""
    config_maps = set(_of_kind(k8s_rendered, "ConfigMap"))
    documented = DEPLOY_DOC.read_text(encoding="utf-8")
    secrets: dict[str, set[str]] = {}
    for name, _, template in _pods(k8s_rendered):
        spec = template["spec"]
        for container in spec["containers"]:
            _assert_pinned(name, container["image"])
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                elif not source["secretRef"].get("optional"):
                    secrets.setdefault(source["secretRef"]["name"], set())
            for var in container.get("env", []):
                if "secretKeyRef" in var.get("valueFrom", {}):
                    ref = var["valueFrom"]["secretKeyRef"]
                    secrets.setdefault(ref["name"], set()).add(ref["key"])
        for volume in spec.get("volumes", []):
            sources = [*volume.get("projected", {}).get("sources", []), volume]
            for source in sources:
                if "configMap" in source:
                    assert source["configMap"]["name"] in config_maps, f"{name}: {volume['name']}"
                if "secret" in source:
                    secret = source["secret"]
                    keys = {item["key"] for item in secret.get("items", [])}
                    secrets.setdefault(secret.get("secretName", secret.get("name")), set()).update(keys)
    for secret, keys in secrets.items():
        created = re.search(
            rf"create secret generic {re.escape(secret)}\b(?P<rest>(?:[^\n]*\\\n)*[^\n]*)", documented
        )
        assert created, f"docs/deploy.md does not create Secret {secret}"
        for key in keys:
            assert re.search(rf"--from-(literal|file)={re.escape(key)}\b", created.group("rest")), (
                f"{secret}/{key}"
            )


def test_deploy_doc_names_the_files_it_explains() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for path in re.findall(r"`((?:deploy|docs)/[^`\s]+)`", text):
        assert (ROOT / path.rstrip("/")).exists(), f"docs/deploy.md names {path}, which does not exist"


def _tool_cli(args: list[str]) -> tuple[list[str], Any]:
    """The command line that `peakwatch <args>` runs. ``devices``, ``users`` and ``simulate`` are parsed
    here from their own modules (``cli.main`` mounts them on the app at import), so that the test needs
    nothing of the entry point."""
    from cli.simulate import simulate
    from cli.users import users_app

    match args[0]:
        case "devices":
            return args[1:], get_command(devices_app)
        case "users":
            return args[1:], get_command(users_app)
        case "simulate":
            single = typer.Typer()
            single.command()(simulate)
            return args[1:], get_command(single)
    return args, PEAKWATCH_CLI


def test_deploy_doc_commands_parse() -> None:
    """The peakwatch command lines of docs/deploy.md (`docker compose run --rm cli …`, `kubectl exec …
    -- peakwatch …`) are commands peakwatch has, with options it takes."""
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    lines = re.findall(r"(?:docker compose run --rm cli|-- peakwatch) ([^\n`|&]+)", text)
    assert len(lines) >= 5
    for line in lines:
        args = [re.sub(r"^<.*>$", "x", a) for a in shlex.split(line.split(" #")[0])]
        rest, command = _tool_cli(args)
        _parse_cli(rest, command, args[0])
