"""Prometheus metrics of the processor, registered on the registry the caller passes (never the global one).

Counters are incremented once per step with the step's totals, not per reading, to keep the hot path
free of metric calls.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.readings_processed = Counter(
            "peakwatch_processor_readings_processed_total",
            "Readings taken from the bus and accounted.",
            registry=registry,
        )
        self.readings_duplicate = Counter(
            "peakwatch_processor_readings_duplicate_total",
            "Readings dropped as duplicates of one already seen.",
            registry=registry,
        )
        self.meter_events = Counter(
            "peakwatch_processor_meter_events_total",
            "Meter events written (aggregated per meter and step).",
            ["kind"],
            registry=registry,
        )
        self.windows_closed = Counter(
            "peakwatch_processor_windows_closed_total", "KPI windows closed and written.", registry=registry
        )
        self.alert_changes = Counter(
            "peakwatch_processor_alert_changes_total",
            "Alert state changes written.",
            ["state"],
            registry=registry,
        )
        self.store_write_seconds = Histogram(
            "peakwatch_processor_store_write_seconds",
            "Duration of one successful Store.write (one step).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.store_errors = Counter(
            "peakwatch_processor_store_errors_total",
            "Failed Store.write attempts.",
            ["retryable"],
            registry=registry,
        )
        self.last_window_end = Gauge(
            "peakwatch_processor_last_window_end_timestamp_seconds",
            "End (event time, epoch seconds) of the most recent KPI window written.",
            registry=registry,
        )
        self.step_seconds = Histogram(
            "peakwatch_processor_step_seconds",
            "CPU-bound part of one step (accounting, windows, rules).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
