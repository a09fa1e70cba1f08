"""The spool's gauges: its depth against its bound, read at scrape time (nothing on the hot path)."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge


class SpoolDepth(Protocol):
    """What the gauges read of the spool (``SpoolBus``), so this room needs none above it."""

    @property
    def depth_bytes(self) -> int: ...
    @property
    def depth_items(self) -> int: ...
    @property
    def capacity_bytes(self) -> int: ...
    @property
    def full(self) -> bool: ...


def register_spool_metrics(bus: SpoolDepth, registry: CollectorRegistry) -> None:
    Gauge("peakwatch_spool_bytes", "Uncommitted bytes in the on-disk spool.", registry=registry).set_function(
        lambda: bus.depth_bytes
    )
    Gauge(
        "peakwatch_spool_items", "Uncommitted batches in the on-disk spool.", registry=registry
    ).set_function(lambda: bus.depth_items)
    Gauge("peakwatch_spool_capacity_bytes", "The spool's bound (max_bytes).", registry=registry).set_function(
        lambda: bus.capacity_bytes
    )
    Gauge(
        "peakwatch_spool_full",
        "1 while the spool is full and the collector stops acknowledging (back-pressure).",
        registry=registry,
    ).set_function(lambda: int(bus.full))
