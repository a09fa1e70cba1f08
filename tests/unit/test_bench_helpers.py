"""The pure helpers the benches share (bench/publisher.py, bench/database.py, bench/machine.py): what
they compute decides what a bench counts, so each is checked on hand-made input."""

from __future__ import annotations

from bench.database import with_database
from bench.machine import CpuUse, cpu_used
from bench.publisher import publish_packet, read_acks, read_packets


def test_read_acks_splits_pubacks_and_connack_and_keeps_the_tail() -> None:
    # CONNACK (return code 0), PUBACK id 1, PUBACK id 258 (0x01 0x02), then 3 bytes of a PUBACK.
    buf = b"\x20\x02\x00\x00" + b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\x00"
    assert read_acks(buf) == ([1, 258], 0, 12)  # 3 packets of 4 bytes used; the 3 left wait
    assert read_acks(b"\x20\x02\x00\x05") == ([], 5, 4)  # a refused CONNECT: return code 5
    assert read_acks(b"\x40") == ([], None, 0)  # not even a length yet


def test_read_acks_skips_other_short_packets() -> None:
    # PINGRESP (0xD0, length 0) between two PUBACKs: 2 + 4 + 4 = 10 bytes.
    assert read_acks(b"\x40\x02\xff\xff\xd0\x00\x40\x02\x00\x07") == ([65535, 7], None, 10)


def test_read_packets_counts_pingresps_for_the_qos0_publisher() -> None:
    # CONNACK, PINGRESP, PUBACK id 7, PINGRESP: 4 + 2 + 4 + 2 = 12 bytes, 2 PINGRESPs.
    assert read_packets(b"\x20\x02\x00\x00\xd0\x00\x40\x02\x00\x07\xd0\x00") == ([7], 0, 2, 12)
    assert read_packets(b"\xd0") == ([], None, 0, 0)  # half a PINGRESP waits for the next read


def test_publish_packet_at_qos0_has_no_packet_id() -> None:
    # fixed header 0x30 (QoS 0), length 2 + 3 (topic) + 2 (payload) = 7; QoS 1 adds the 2-byte id.
    assert publish_packet(b"t/a", b"{}", 0) == b"\x30\x07\x00\x03t/a{}"
    assert publish_packet(b"t/a", b"{}", 258) == b"\x32\x09\x00\x03t/a\x01\x02{}"


def test_with_database_swaps_the_path_and_keeps_the_query() -> None:
    assert with_database("postgresql://u@h:5432/postgres", "b1") == "postgresql://u@h:5432/b1"
    assert with_database("postgresql://u@h/postgres?sslmode=off", "b1") == "postgresql://u@h/b1?sslmode=off"
    assert with_database("postgresql://u@h", "b1") == "postgresql://u@h/b1"  # no path: appended


def test_cpu_used_per_role_and_postgres_as_the_sum_of_its_kinds() -> None:
    before = {1: ("pipeline", 2.0), 10: ("postgres/backend", 1.0)}
    after = {1: ("pipeline", 5.0), 10: ("postgres/backend", 1.5), 11: ("postgres/walwriter", 0.25)}
    # pipeline 5 - 2 = 3; backend 1.5 - 1 = 0.5; a new process counts from 0: 0.25; postgres 0.75.
    assert cpu_used(before, after) == {
        "pipeline": 3.0,
        "postgres/backend": 0.5,
        "postgres": 0.75,
        "postgres/walwriter": 0.25,
    }


def test_other_cpu_is_the_machine_busy_time_no_bench_role_spent() -> None:
    by_role = {"pipeline": 3.0, "postgres/backend": 0.5, "postgres": 0.5}
    use = CpuUse(by_role, busy_s=5.0, core_s=4.0, wall_s=4.0)
    assert use.other_s == 1.5  # 5 - (3 + 0.5): sub-roles are already inside "postgres"
