"""What the API needs to know about the rest of the process to answer ``/healthz``.

The API cannot see the collector, the bus or the processor (services never import each other), so
the composition root passes a ``HealthProbe`` to ``create_app``. Without one, ``/healthz`` reports
the database only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import Protocol

from peakwatch.health import ComponentStatus

__all__ = ["ComponentStatus", "HealthProbe", "probe_components"]


class HealthProbe(Protocol):
    """Reports the components running next to the API (collector connected to the broker, bus lag,
    processor's last write ...). Any zero-argument callable fits: a plain function, a bound method,
    or a coroutine function when answering needs to await something.

    Called once per ``/healthz`` request on the API's event loop, concurrently with other requests:
    it must answer fast and must not block (read flags and counters; do not dial out). An exception
    it raises is reported as a failed ``health_probe`` component, never as a 500.
    """

    def __call__(self) -> Sequence[ComponentStatus] | Awaitable[Sequence[ComponentStatus]]: ...


async def probe_components(probe: HealthProbe) -> list[ComponentStatus]:
    """Call a sync or async probe; its failure becomes a component status."""
    try:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        return list(result)
    except Exception as exc:  # a broken probe is reported, not raised
        return [ComponentStatus(name="health_probe", ok=False, detail=f"{type(exc).__name__}: {exc}")]
