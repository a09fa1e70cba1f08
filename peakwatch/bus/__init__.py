"""The bus moves batches of readings (keyed by site) from collectors to processors.

``Bus`` is the one interface; ``memory://`` is the in-process implementation, ``spool://`` the durable
on-disk one for a collector and processor in one process (``peakwatch up``), ``kafka://`` the shared one
for collectors and processors on many machines (``peakwatch.bus.kafka``, needs the ``kafka`` extra).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from peakwatch.bus.base import Bus, Ownership, Polled
from peakwatch.bus.memory import MemoryBus
from peakwatch.bus.spool import DEFAULT_MAX_BYTES, DEFAULT_MEMORY_ITEMS, DEFAULT_SEGMENT_BYTES, SpoolBus
from peakwatch.errors import ConfigError

__all__ = ["Bus", "MemoryBus", "Ownership", "Polled", "SpoolBus", "open_bus"]

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*\Z", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def open_bus(url: str, *, default_dir: Path | None = None) -> Bus:
    """The bus named by ``url``.

    ``memory://``: in-process, not durable. ``spool:///abs/dir``, ``spool://relative/dir`` or just
    ``spool://`` (then ``default_dir``): the on-disk spool, with query options ``max_bytes`` and
    ``segment_bytes`` (bytes, or with a KiB/MiB/GiB/TiB suffix), ``fsync`` (1/0, true/false, yes/no,
    on/off) and ``memory_items``, e.g. ``spool:///var/lib/peakwatch/spool?max_bytes=2GiB&fsync=1``.
    Opening a spool recovers its directory (blocking file I/O: call at start-up).

    ``kafka://host:9092[,host2:9092]``: Kafka, with query options ``prefix`` (topic and group names,
    default ``peakwatch``), ``partitions`` and ``replication`` (of topics peakwatch creates; default 12
    and 1), ``session_timeout_ms`` (how soon a dead processor's sites move; default 10000) and
    ``client_id``. Nothing connects until ``Bus.start``.
    """
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("spool://"):
        return _open_spool(url, default_dir)
    if url.startswith("kafka://"):
        return _open_kafka(url)
    raise ConfigError(f"unsupported bus {url!r}: use memory://, spool://[path] or kafka://host:port")


_KAFKA_INTS = {"partitions": (1, 10_000), "replication": (1, 100), "session_timeout_ms": (1_000, 3_600_000)}
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\Z")


def _open_kafka(url: str) -> Bus:
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(
            f"bus {url!r}: a Kafka URL names brokers only (kafka://host:9092,host2:9092?options)"
        )
    bootstrap = tuple(h.strip() for h in parts.netloc.split(",") if h.strip())
    if not bootstrap:
        raise ConfigError(f"bus {url!r} names no broker (kafka://host:9092)")
    for host in bootstrap:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bus {url!r}: broker {host!r} is not host:port")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in options:
            raise ConfigError(f"bus {url!r}: option {name!r} given twice")
        if name in _KAFKA_INTS:
            low, high = _KAFKA_INTS[name]
            if not value.strip().isdigit() or not low <= int(value) <= high:
                raise ConfigError(
                    f"bus {url!r}: option {name}={value!r} must be a whole number {low}..{high}"
                )
            options[name] = int(value)
        elif name in ("prefix", "client_id"):
            if not _NAME.match(value):
                raise ConfigError(
                    f"bus {url!r}: option {name}={value!r} may hold only letters, digits, '.', '_' and '-'"
                )
            options[name] = value
        else:
            raise ConfigError(
                f"bus {url!r}: unknown option {name!r} "
                "(known: prefix, partitions, replication, session_timeout_ms, client_id)"
            )
    try:
        from peakwatch.bus.kafka import KafkaBus, KafkaOptions
    except ImportError as exc:
        raise ConfigError(
            f"bus {url!r} needs aiokafka: install peakwatch with the kafka extra "
            "(pip install 'peakwatch[kafka]')"
        ) from exc
    return KafkaBus(KafkaOptions(bootstrap=bootstrap, **options))


def _open_spool(url: str, default_dir: Path | None) -> SpoolBus:
    parts = urlsplit(url)
    if parts.fragment:
        raise ConfigError(f"bus {url!r}: a spool URL takes no #fragment")
    raw = unquote(parts.netloc + parts.path)
    if raw:
        directory = Path(raw).expanduser()
    elif default_dir is not None:
        directory = default_dir
    else:
        raise ConfigError(f"bus {url!r} names no directory (spool:///abs/path or spool://relative/path)")
    seen: set[str] = set()
    sizes = {"max_bytes": DEFAULT_MAX_BYTES, "segment_bytes": DEFAULT_SEGMENT_BYTES}
    fsync = False
    memory_items = DEFAULT_MEMORY_ITEMS
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in seen:
            raise ConfigError(f"bus {url!r}: option {name!r} given twice")
        seen.add(name)
        if name in sizes:
            sizes[name] = _size(url, name, value)
        elif name == "memory_items":
            if not value.strip().isdigit():
                raise ConfigError(f"bus {url!r}: option memory_items={value!r} is not a whole number")
            memory_items = int(value)
        elif name == "fsync":
            flag = value.strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigError(
                    f"bus {url!r}: option fsync={value!r} is not one of 1/0, true/false, yes/no, on/off"
                )
            fsync = flag in _TRUE
        else:
            raise ConfigError(
                f"bus {url!r}: unknown option {name!r} (known: max_bytes, segment_bytes, fsync, memory_items)"
            )
    return SpoolBus(
        directory,
        max_bytes=sizes["max_bytes"],
        segment_bytes=sizes["segment_bytes"],
        fsync=fsync,
        memory_items=memory_items,
    )


def _size(url: str, name: str, value: str) -> int:
    match = _SIZE.match(value)
    if match is None:
        raise ConfigError(
            f"bus {url!r}: option {name}={value!r} is not a size (bytes, or a number with KiB, MiB, GiB, TiB)"
        )
    size = int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]
    if size < 1:
        raise ConfigError(f"bus {url!r}: option {name} must be at least 1 byte")
    return size
