"""What the API needs to know about the rest of the process to answer ``/healthz``.

The API cannot see the collector, the bus or the processor (services never import each other), so
the composition root implements ``HealthProbe`` and passes it to ``create_app``. Without a probe,
``/healthz`` reports the database only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentStatus:
    """One component's state as the probe sees it right now.

    ``ok=False`` makes ``/healthz`` answer ``degraded`` (still 200: the API itself can serve data);
    ``detail`` is shown to the operator as is, so say what is wrong and since when, e.g.
    ``"not connected to mqtt://broker:1883 since 12:03:10Z"`` or ``"bus lag 48211 readings"``.
    """

    name: str
    ok: bool
    detail: str = ""


class HealthProbe(Protocol):
    """Reports the state of the components running next to the API (collector connected to the
    broker, bus lag, time of the processor's last write ...).

    Called once per ``/healthz`` request, concurrently with other requests, on the API's event loop:
    it must answer fast and must not block (read flags and counters, do not dial out for long). An
    exception it raises is reported as a failed ``health_probe`` component, never as a 500.
    """

    async def components(self) -> Sequence[ComponentStatus]: ...
