"""The OpenAPI contract: generated, every JSON route declares its response model and its errors."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import create_app
from api.schemas.targets import SpanPublic
from peakwatch.config import Registry, Settings
from peakwatch.store import Store
from tests.support import api_routes

# Building the schema never touches the store, so a placeholder stands in for a connected one.
UNUSED_STORE = cast(Store, object())


def make_app(*, metrics: bool) -> FastAPI:
    return create_app(
        UNUSED_STORE,
        Registry.bundled_demo(),
        Settings(),
        metrics_registry=CollectorRegistry() if metrics else None,
    )


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return make_app(metrics=True)


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


EXPECTED_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/sites",
    "/api/v1/sites/{site_id}",
    "/api/v1/sites/{site_id}/kpis/latest",
    "/api/v1/sites/{site_id}/kpis",
    "/api/v1/sites/{site_id}/kpis.csv",
    "/api/v1/sites/{site_id}/kpis/{period}/{window_start}/revisions",
    "/api/v1/sites/{site_id}/meters",
    "/api/v1/sites/{site_id}/meters/{meter_id}/replacements",
    "/api/v1/sites/{site_id}/green-instruments",
    "/api/v1/sites/{site_id}/value-added",
    "/api/v1/sites/{site_id}/value-added/{month}",
    "/api/v1/sites/{site_id}/targets",
    "/api/v1/sites/{site_id}/targets/{target_id}",
    "/api/v1/sites/{site_id}/targets/progress",
    "/api/v1/factors",
    "/api/v1/factors/{factor_id}",
    "/api/v1/factor-sets",
    "/api/v1/restatements",
    "/api/v1/alerts",
    "/api/v1/dead-letters",
    "/api/v1/dead-letters/counts",
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/api/v1/auth/me",
    "/api/v1/auth/password",
    "/api/v1/tokens",
    "/api/v1/tokens/{credential_id}",
    "/api/v1/users",
    "/api/v1/users/{name}",
    "/api/v1/users/{name}/reset-password",
    "/api/v1/audit",
    "/api/v1/devices",
    "/api/v1/devices/{device_id}/rotate",
    "/api/v1/devices/{device_id}/revoke",
    "/api/v1/alerts/{alert_id}/acknowledge",
    "/api/v1/alerts/stream",
    "/api/v1/rules",
    "/api/v1/rules/{name}",
    "/api/v1/silences",
    "/api/v1/silences/{silence_id}",
    "/api/v1/notifications",
}

EXPECTED_WRITES = {
    ("post", "/api/v1/factors"): "201",
    ("post", "/api/v1/sites/{site_id}/meters/{meter_id}/replacements"): "201",
    ("post", "/api/v1/sites/{site_id}/green-instruments"): "201",
    ("put", "/api/v1/sites/{site_id}/value-added/{month}"): "200",
    ("post", "/api/v1/sites/{site_id}/targets"): "201",
    ("delete", "/api/v1/sites/{site_id}/targets/{target_id}"): "204",
    ("post", "/api/v1/auth/login"): "200",
    ("post", "/api/v1/auth/logout"): "204",
    ("post", "/api/v1/auth/password"): "204",
    ("post", "/api/v1/tokens"): "201",
    ("delete", "/api/v1/tokens/{credential_id}"): "204",
    ("post", "/api/v1/users"): "201",
    ("patch", "/api/v1/users/{name}"): "200",
    ("delete", "/api/v1/users/{name}"): "204",
    ("post", "/api/v1/users/{name}/reset-password"): "200",
    ("post", "/api/v1/devices"): "201",
    ("post", "/api/v1/devices/{device_id}/rotate"): "200",
    ("post", "/api/v1/devices/{device_id}/revoke"): "200",
    ("post", "/api/v1/alerts/{alert_id}/acknowledge"): "200",
    ("post", "/api/v1/silences"): "201",
    ("delete", "/api/v1/silences/{silence_id}"): "200",
    ("post", "/api/v1/rules"): "201",
    ("put", "/api/v1/rules/{name}"): "200",
    ("delete", "/api/v1/rules/{name}"): "204",
}

SELF_SERVICE = {"/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/auth/password"}
"""Writes that act on the caller's own session or password: authenticated (but login), audited by
their handlers, no role needed."""
OPEN = {"/healthz", "/readyz", "/metrics", "/api/v1/auth/login"}
STREAMS = {"/api/v1/alerts/stream"}
"""Server-Sent Events: ``text/event-stream``, no response model."""
DOWNLOADS = {"/api/v1/sites/{site_id}/kpis.csv"}
"""Files (``text/csv``), streamed: no response model."""


def test_schema_lists_every_route(schema: dict[str, Any]) -> None:
    assert schema["info"]["title"] == "peakwatch"
    assert set(schema["paths"]) == EXPECTED_PATHS


def test_every_json_route_declares_a_response_model(app: FastAPI) -> None:
    """A 204 has no body, hence no model."""
    missing = [
        r.path
        for r in api_routes(app)
        if r.response_model is None
        and r.status_code != 204
        and r.path not in {"/metrics", *STREAMS, *DOWNLOADS}
    ]
    assert missing == []


def test_aliased_fields_are_set_by_name_and_sent_by_alias() -> None:
    """``from`` is a keyword and ``register`` a BaseModel attribute: the models are built with ``from_``
    and ``register_`` and send ``from`` and ``register`` (pydantic >= 2.11: ``validate_by_name``,
    ``serialize_by_alias``; an older pydantic refuses ``from_``)."""
    # 60_000 ms after the epoch: 1970-01-01T00:01:00Z
    assert SpanPublic.of(0, 60_000).model_dump(mode="json") == {
        "from": "1970-01-01T00:00:00Z",
        "from_ms": 0,
        "to": "1970-01-01T00:01:00Z",
        "to_ms": 60_000,
    }


def test_writes_have_their_methods_and_success_codes(schema: dict[str, Any]) -> None:
    writes = {
        (method, path): next(code for code in op["responses"] if code.startswith("2"))
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method != "get"
    }
    assert writes == EXPECTED_WRITES


def test_writes_document_their_422(schema: dict[str, Any]) -> None:
    for method, path in EXPECTED_WRITES:
        op = schema["paths"][path][method]
        if "requestBody" in op or op.get("parameters"):  # only input can be invalid
            assert "422" in op["responses"], (method, path)


def test_kpi_windows_document_every_value(schema: dict[str, Any]) -> None:
    window = schema["components"]["schemas"]["KpiWindowPublic"]["properties"]
    for name in ("pue", "cue", "ref", "erf", "wue_l_per_kwh", "emissions_market_kg", "max_demand_kw"):
        assert window[name]["description"], name
    assert {"period", "revision", "factors_used", "components", "pue_category", "gb40879_grade"} <= set(
        window
    )


def test_every_route_documents_its_200_content(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        if "get" not in item:
            continue
        content = item["get"]["responses"]["200"]["content"]
        assert content, path
        media, body = next(iter(content.items()))
        if path == "/metrics":
            assert media.startswith("text/plain")
        elif path in STREAMS:
            assert media == "text/event-stream"
        elif path in DOWNLOADS:
            assert list(content) == ["text/csv"], path
        else:
            assert media == "application/json"
            assert "$ref" in body["schema"] or body["schema"].get("type") == "array", path


NO_DATABASE = {"/api/v1/factor-sets"}
"""Served from the running configuration alone."""


@pytest.mark.parametrize("path", sorted(p for p in EXPECTED_PATHS if p.startswith("/api/v1/sites/")))
def test_site_routes_document_unknown_site(schema: dict[str, Any], path: str) -> None:
    for method, op in schema["paths"][path].items():
        responses = op["responses"]
        assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorPublic"), (
            method
        )
        assert "422" in responses, method  # site_id and query parameters are validated


@pytest.mark.parametrize("path", sorted(p for p in EXPECTED_PATHS - NO_DATABASE if p.startswith("/api/v1/")))
def test_data_routes_document_database_down(schema: dict[str, Any], path: str) -> None:
    for method, op in schema["paths"][path].items():
        assert "503" in op["responses"], method


def test_readiness_documents_503_and_liveness_does_not(schema: dict[str, Any]) -> None:
    """A database outage makes /healthz ``degraded`` (200: restarting would not help), /readyz 503."""
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
    assert "503" not in schema["paths"]["/healthz"]["get"]["responses"]


def test_kpi_window_schema_names_units_and_interim(schema: dict[str, Any]) -> None:
    fields = set(schema["components"]["schemas"]["KpiWindowPublic"]["properties"])
    assert {
        "pue",
        "electrification_rate",
        "carbon_intensity_kg_per_kwh",
        "emissions_kg",
        "green_power_share",
        "window_start",
        "window_end",
        "window_start_ms",
        "window_end_ms",
        "completeness",
        "interim",
        "interim_note",
        "electricity_kwh",
        "facility_kwh",
        "it_kwh",
        "renewable_generation_kwh",
        "renewable_consumed_kwh",
        "grid_import_kwh",
        "grid_export_kwh",
        "electricity_kgce",
        "total_kgce",
        "flags",
    } <= fields


def test_series_query_parameters(schema: dict[str, Any]) -> None:
    params = {p["name"] for p in schema["paths"]["/api/v1/sites/{site_id}/kpis"]["get"]["parameters"]}
    assert params == {"site_id", "period", "from", "to", "limit", "include_open"}
    period = next(
        p
        for p in schema["paths"]["/api/v1/sites/{site_id}/kpis"]["get"]["parameters"]
        if p["name"] == "period"
    )
    assert period["schema"]["default"] == "1m"
    alert_params = schema["paths"]["/api/v1/alerts"]["get"]["parameters"]
    alert_state = next(p for p in alert_params if p["name"] == "state")
    assert alert_state["schema"]["anyOf"][0]["enum"] == ["pending", "firing", "resolved"]


def test_csv_export_documents_its_parameters_file_and_errors(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/v1/sites/{site_id}/kpis.csv"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"site_id", "period", "from", "to", "fields", "excel", "include_open"}  # no limit
    assert params["excel"]["schema"]["default"] is False
    assert "pue" in params["fields"]["description"]
    assert "carbon_intensity_kg_per_kwh" in params["fields"]["description"]
    ok = op["responses"]["200"]
    assert ok["content"]["text/csv"]["schema"] == {"type": "string"}
    assert "Content-Disposition" in ok["headers"]
    for code in ("401", "403", "404", "422", "503"):  # errors are JSON like everywhere else
        assert list(op["responses"][code]["content"]) == ["application/json"], code


def test_metrics_route_only_with_a_registry() -> None:
    assert "/metrics" not in make_app(metrics=False).openapi()["paths"]


def _role_dependencies(route: Any) -> list[str]:
    return [
        d.dependency.__qualname__
        for d in route.dependencies
        if d.dependency is not None and d.dependency.__qualname__.startswith("allow.")
    ]


def test_every_change_needs_a_role_and_is_audited(app: FastAPI) -> None:
    """A write route without ``allow`` would be open to any viewer and missing from the audit log."""
    unguarded = [
        (sorted(r.methods or ()), r.path)
        for r in api_routes(app)
        if (r.methods or set()) - {"GET", "HEAD"} and r.path not in SELF_SERVICE and not _role_dependencies(r)
    ]
    assert unguarded == []


def test_every_data_route_documents_401_and_403(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if path in OPEN - {"/api/v1/auth/login"}:  # login's 401 is a wrong password
                assert "401" not in op["responses"], (method, path)
            elif path in OPEN:
                continue
            else:
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_the_alert_stream_documents_its_events_and_credentials(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/v1/alerts/stream"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
    for code in ("401", "403", "404", "503"):  # errors are JSON like everywhere else
        assert list(op["responses"][code]["content"]) == ["application/json"], code
    for words in ("event: snapshot", "event: alert", ": keepalive", "EventSource", "cookie", "Bearer"):
        assert words in op["description"], words
    assert {p["name"] for p in op["parameters"]} == {"site_id"}


def test_silences_validate_their_body(schema: dict[str, Any]) -> None:
    body = schema["components"]["schemas"]["SilenceIn"]
    assert body["additionalProperties"] is False
    assert body["properties"]["matchers"]["minItems"] == 1
    assert body["properties"]["matchers"]["maxItems"] == 20
    assert body["properties"]["comment"]["maxLength"] == 500
    assert body["required"] == ["matchers"]
    listed = {p["name"] for p in schema["paths"]["/api/v1/silences"]["get"]["parameters"]}
    assert listed == {"include_expired", "limit"}
    assert "409" in schema["paths"]["/api/v1/silences/{silence_id}"]["delete"]["responses"]
