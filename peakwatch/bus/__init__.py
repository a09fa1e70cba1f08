"""The bus moves batches of readings (keyed by site) from collectors to processors.

``Bus`` is the one interface; ``memory://`` is the in-process implementation. A Kafka implementation
(``kafka://``) plugs in behind the same interface (issue #6).
"""

from peakwatch.bus.base import Bus, Polled
from peakwatch.bus.memory import MemoryBus

__all__ = ["Bus", "MemoryBus", "Polled", "open_bus"]


def open_bus(url: str) -> Bus:
    """The bus named by ``url`` (``memory://``)."""
    if url.startswith("memory://"):
        return MemoryBus()
    from peakwatch.errors import ConfigError

    raise ConfigError(f"unsupported bus {url!r}: only memory:// is available in this build")
