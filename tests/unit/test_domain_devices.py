"""Device credentials: Mosquitto's hash format, topic rights, the rendered broker files."""

from __future__ import annotations

import pytest

from peakwatch.domain.devices import (
    Device,
    DeviceKind,
    acl_file,
    mosquitto_hash,
    password_file,
    topics,
    verify,
)

# made by `mosquitto_passwd -c -b pwtest alice s3cret` (mosquitto 2.0.11)
MOSQUITTO_MADE = (
    "$7$101$5dE4nLyujDftatCV$"
    "nMhSObZdNSKI1aVz5tonwnfqJdxYvr/pfH6eUB6XFkVh5xV2LKxPGakfvagBkNbsdFMKmgWWhGU1GF8Hc2HE+g=="
)


def device(device_id: str, **kw: object) -> Device:
    fields: dict[str, object] = {
        "kind": DeviceKind.DEVICE,
        "site_id": "site-a",
        "password_hash": "$7$h",
        "created_ms": 0,
    }
    fields.update(kw)
    return Device(id=device_id, **fields)  # type: ignore[arg-type]


def test_hash_is_mosquittos_own_format() -> None:
    assert verify("s3cret", MOSQUITTO_MADE)
    assert not verify("wrong", MOSQUITTO_MADE)
    salt = bytes(range(12))
    made = mosquitto_hash("s3cret", salt, iterations=101)
    assert made.startswith("$7$101$AAECAwQFBgcICQoL$")
    assert verify("s3cret", made)
    assert verify("s3cret", mosquitto_hash("s3cret", salt))  # the stronger default count


@pytest.mark.parametrize("broken", ["", "plain", "$6$101$x$y", "$7$x$y$z", "$7$101$!!$??"])
def test_verify_refuses_malformed_hashes(broken: str) -> None:
    assert not verify("s3cret", broken)


def test_topic_rights() -> None:
    assert topics(device("gw")) == ["telemetry/site-a/+"]
    assert topics(device("m", meters=("m1", "m2"))) == ["telemetry/site-a/m1", "telemetry/site-a/m2"]
    collector = device("c", kind=DeviceKind.COLLECTOR, site_id=None)
    assert topics(collector, prefix="plant") == ["plant/#"]


def test_files_leave_out_revoked_credentials() -> None:
    devices = [
        device("gw-b", password_hash="$7$b"),
        device("gw-a", password_hash="$7$a", meters=("m1",)),
        device("old", password_hash="$7$o", revoked_ms=5),
        device("c", kind=DeviceKind.COLLECTOR, site_id=None, password_hash="$7$c"),
    ]
    assert password_file(devices) == "c:$7$c\ngw-a:$7$a\ngw-b:$7$b\n"
    acl = acl_file(devices)
    assert "user old" not in acl
    assert acl.endswith(
        "\nuser c\ntopic read telemetry/#\n"
        "\nuser gw-a\ntopic write telemetry/site-a/m1\n"
        "\nuser gw-b\ntopic write telemetry/site-a/+\n"
    )
