"""Schemathesis against the API's own OpenAPI document (issue #7): generated requests, valid and
invalid, to every operation of ``peakwatch api`` running as a process on a real database. No 500s, and
every response matches the documented status codes, content types and schemas.

CI runs ``PEAKWATCH_TEST_SCHEMATHESIS_EXAMPLES`` (default 10) examples per operation; the longer run in
docs/operations.md raises it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi.checks import RejectedPositiveData

from peakwatch.net import free_port

EXAMPLES = int(os.environ.get("PEAKWATCH_TEST_SCHEMATHESIS_EXAMPLES", "10"))
pytestmark = [pytest.mark.integration, pytest.mark.timeout(max(300, 2 * EXAMPLES))]
"""The long run (1000 examples per operation) takes about 6 minutes."""
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]
"""Every default check but ``positive_data_acceptance``: the API refuses some schema-valid requests on
purpose, with a clear 422, because OpenAPI cannot express the rule (a range longer than the period's
limit, `to` before `from`, a timestamp string that is not a timestamp or not a window start, a month
outside 1973..2099)."""


def _cli(database_url: str, *args: str, stdin: str = "") -> str:
    """``peakwatch <args>`` on the test database; its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args, "--database-url", database_url],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def admin_headers(module_database_url: str) -> dict[str, str]:
    """A global admin's token, made with the CLI as an operator would: every operation is reachable
    (schemathesis also sends requests without it, through the documented security schemes)."""
    _cli(
        module_database_url,
        "users",
        "add",
        "fuzz-admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin="x" * 16,
    )
    token = _cli(module_database_url, "users", "token", "fuzz-admin", "--name", "schemathesis").strip()
    assert token.startswith("pwt_")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api_url(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``peakwatch api`` on the demo registry, over a migrated test database."""
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEAKWATCH_")}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cli.main import main; main()",
                "api",
                "--database-url",
                module_database_url,
                "--api-port",
                str(port),
            ],
            stdout=out,
            stderr=out,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"peakwatch api did not start: {Path(log).read_text()[-2000:]}")
            time.sleep(0.2)  # a process we do not own: polling is the only way to see it listen
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


ENDLESS = {"GET /api/v1/alerts/stream"}
"""Responses that never end (an event stream): schemathesis reads each for 10 s, about 70 s per run of
10 examples. tests/integration/test_api_alert_stream.py covers the stream's events, 401, 403 and 404;
``PEAKWATCH_TEST_SCHEMATHESIS_ONLY="GET /api/v1/alerts/stream"`` fuzzes it on demand."""


def test_every_operation_keeps_its_contract(api_url: str, admin_headers: dict[str, str]) -> None:
    """Each operation gets its own hypothesis run (schemathesis's pytest plugin does not load on this
    pytest), and every failure is collected, so one run reports all of them."""
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = 0
    only = os.environ.get("PEAKWATCH_TEST_SCHEMATHESIS_ONLY")  # e.g. "DELETE /api/v1/users/{name}"
    for result in schema.get_all_operations():
        operation = result.ok()
        if only and operation.label != only:
            continue
        if operation.label in ENDLESS and not only:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=admin_headers)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:
                # Recorded, not raised: many operations change state (a user made, then "exists"), so
                # hypothesis replaying a failing example would see another answer and report the run
                # as flaky instead of the failure itself.
                if not _only_deliberate_rejections(exc) and case.operation.label not in failures:
                    failures[case.operation.label] = f"{case.method} {case.formatted_path}: {_describe(exc)}"[
                        :3000
                    ]

        check()
    assert operations >= (1 if only else 40), operations
    # the token reached the operations: most answers are successes or refusals of the input itself
    assert statuses[401] < sum(statuses.values()) / 10, statuses
    assert only or sum(n for code, n in statuses.items() if code < 300) > 0, statuses
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def _describe(exc: BaseException) -> str:
    """The failure and, for a group (hypothesis's FlakyFailure), each of its members."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        text += "".join(f"\n  - {_describe(e)}" for e in exc.exceptions)
    return text


def _only_deliberate_rejections(exc: BaseException) -> bool:
    """Whether every failure is a schema-valid request refused with 422 (see ``CHECKS``): schemathesis
    4.32 runs that check even when it is not in ``checks``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_deliberate_rejections(e) for e in exc.exceptions)
    return isinstance(exc, RejectedPositiveData)
