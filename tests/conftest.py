"""Test configuration. Fixtures live in tests/fixtures/<service>.py, one module per real service, and
are imported here so every test directory sees them.

Real services only: PostgreSQL (embedded by default, or ``PEAKWATCH_TEST_DATABASE_URL``), an MQTT
broker (mosquitto when installed, else the embedded amqtt broker), a Kafka-protocol broker (tansu, or
``PEAKWATCH_TEST_KAFKA``). Each is started once per session
on free ports and never depends on services already running on the machine.
"""

import os

import pytest

from tests.fixtures.kafka import *  # noqa: F403
from tests.fixtures.mqtt import *  # noqa: F403
from tests.fixtures.postgres import *  # noqa: F403
from tests.fixtures.receivers import *  # noqa: F403

# peakwatch reads PEAKWATCH_* from the environment (pydantic-settings). A developer's own settings,
# e.g. PEAKWATCH_DATABASE_URL pointing at the machine's PostgreSQL, must not leak into the tests, which
# start their own servers. Only the test switches (PEAKWATCH_TEST_*: DATABASE_URL, FUZZ_EXAMPLES,
# SCHEMATHESIS_EXAMPLES, DB_OUTAGE_S) survive.
for _name in [n for n in os.environ if n.startswith("PEAKWATCH_") and not n.startswith("PEAKWATCH_TEST_")]:
    del os.environ[_name]


@pytest.fixture(scope="session", autouse=True)
def _hypothesis_regex_imported() -> None:
    """hypothesis imports its regex strategies lazily, on the first ``st.from_regex``, and pytest
    rewrites the module as it is imported. Inside a hypothesis test late in a session that import can
    hit a CPython 3.11.7 fault ("SystemError: AST constructor recursion depth mismatch", seen when
    tests/integration/test_notifier_races.py ran first); importing it once before the first test
    avoids it."""
    import hypothesis.strategies._internal.regex  # noqa: F401
