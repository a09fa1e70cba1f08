"""The bus moves batches of readings (keyed by site) from collectors to processors.

``Bus`` is the one interface; ``memory://`` is the in-process implementation, ``spool://`` the durable
on-disk one for a collector and processor in one process (``peakwatch up``). A Kafka implementation
(``kafka://``) plugs in behind the same interface (issue #6).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from peakwatch.bus.base import Bus, Polled
from peakwatch.bus.memory import MemoryBus
from peakwatch.bus.spool import DEFAULT_MAX_BYTES, DEFAULT_MEMORY_ITEMS, DEFAULT_SEGMENT_BYTES, SpoolBus
from peakwatch.errors import ConfigError

__all__ = ["Bus", "MemoryBus", "Polled", "SpoolBus", "open_bus"]

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
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
    """
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("spool://"):
        return _open_spool(url, default_dir)
    raise ConfigError(f"unsupported bus {url!r}: memory:// and spool://[path] are available in this build")


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
