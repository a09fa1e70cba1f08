"""Test configuration. Fixtures live in tests/fixtures/<service>.py, one module per real service, and
are imported here so every test directory sees them.

Real services only: PostgreSQL (embedded by default, or ``PEAKWATCH_TEST_DATABASE_URL``), an MQTT
broker (mosquitto when installed, else the embedded amqtt broker). Each is started once per session
on free ports and never depends on services already running on the machine.
"""

from tests.fixtures.mqtt import *  # noqa: F403
from tests.fixtures.postgres import *  # noqa: F403
