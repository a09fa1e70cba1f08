"""What a simulation run is asked to do (``SimulationOptions``) and what it did (``SimStats``).

Plain values, no I/O, so the CLI, ``peakwatch up`` and benchmarks can build options without importing
the MQTT client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from simulators.faults import FaultConfig
from simulators.fleet import FleetSpec, site_infos, template_position
from simulators.pacing import REALTIME, Speed

DEMO_BACKFILL_MS = 10 * 60_000


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    sites: int = 2
    """Sites in the fleet (see ``simulators.fleet`` for their ids)."""
    synthetic_meters: int = 0
    """> 0: synthetic load sites with this many flat-load meters each, instead of the templates."""
    site_ids: tuple[str, ...] | None = None
    """Simulate only these sites of the fleet (``None``: all of them)."""
    seed: int = 0
    speed: Speed = REALTIME
    step_ms: int = 10_000
    """Simulated time between two readings of a meter."""
    start_ms: int | None = None
    """Event time of the first step; ``None`` starts now (minus ``backfill_ms``)."""
    backfill_ms: int = 0
    """Simulated time before now published as fast as possible before continuing at ``speed``."""
    duration_ms: int | None = None
    """Simulated time to cover from the first step (backfill included); ``None``: no limit."""
    count: int | None = None
    """Number of steps to run; ``None``: no limit."""
    batch_size: int = 1
    """Readings per message (consecutive readings of one meter, sent as a JSON array)."""
    qos: int = 1
    topic_prefix: str = "telemetry"
    faults: FaultConfig = field(default_factory=FaultConfig)
    max_inflight: int = 1000
    """Upper bound of QoS 1/2 messages awaiting acknowledgement (the broker may impose a lower one)."""
    resume_registers: tuple[tuple[str, str, float], ...] = ()
    """``(site_id, meter_id, value)``: start these registers from the given values (``peakwatch up``
    passes what the store last holds, so restarting the demo does not look like a counter reset)."""
    client_id: str | None = None
    connect_timeout_s: float = 15.0
    stall_timeout_s: float = 60.0
    """Give up when no acknowledgement arrived for this long while the in-flight window is full."""
    drain_timeout_s: float = 30.0
    """At the end, how long to wait for outstanding acknowledgements before disconnecting."""
    progress_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if self.batch_size < 1 or self.max_inflight < 1 or self.sites < 1 or self.synthetic_meters < 0:
            raise ValueError("batch_size, max_inflight and sites must be >= 1, synthetic_meters >= 0")
        if self.step_ms <= 0:
            raise ValueError("step_ms must be > 0")
        if self.start_ms is not None and self.backfill_ms:
            raise ValueError("give either a start time or a backfill, not both")
        if self.backfill_ms < 0 or (self.duration_ms is not None and self.duration_ms < 0):
            raise ValueError("backfill and duration must be >= 0")

    @property
    def fleet_spec(self) -> FleetSpec:
        return FleetSpec(sites=self.sites, synthetic_meters=self.synthetic_meters, seed=self.seed)

    @classmethod
    def demo(cls, registry_sites: Iterable[str] | None = None, **overrides: Any) -> SimulationOptions:
        """The ``peakwatch up`` demo feed: 10 minutes of backfill (so KPIs appear at once), then real time.

        With ``registry_sites`` (the ids in the running registry), only the template sites that the
        registry knows are fed: a user registry without the demo sites gets no demo traffic (the run
        then ends at once) instead of a stream of unknown-site dead letters.
        """
        base = cls(sites=2, backfill_ms=DEMO_BACKFILL_MS)
        if registry_sites is not None:
            positions = sorted({p for p in map(template_position, registry_sites) if p is not None})
            infos = site_infos(FleetSpec(sites=max(positions, default=1) + 1))
            base = replace(base, sites=len(infos), site_ids=tuple(infos[p].id for p in positions))
        return replace(base, **overrides) if overrides else base


@dataclass(slots=True)
class SimStats:
    messages: int = 0
    """Messages produced, duplicates included (``published + faults['dropped']``, once finished)."""
    published: int = 0
    """Messages handed to the broker."""
    readings: int = 0
    """Readings the models produced."""
    readings_published: int = 0
    """Readings inside published messages (duplicates counted twice, malformed ones included)."""
    malformed_published: int = 0
    """Published messages whose payload was corrupted on purpose (duplicates counted twice)."""
    malformed_readings_published: int = 0
    steps: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    unacknowledged: int = 0
    """QoS 1/2 messages still unacknowledged when the run ended (0 unless the drain timed out)."""
    inflight_lost: int = 0
    """QoS 1/2 messages in flight when the connection dropped and the broker kept no session: they
    may or may not have been delivered (0 unless the broker went away during the run)."""
    faults: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def messages_per_s(self) -> float:
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings_published / self.elapsed_s if self.elapsed_s > 0 else 0.0
