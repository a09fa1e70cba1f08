"""How a running component tells ``/healthz`` its state, without anyone reading its internals.

The type lives in the core because every side needs it and none may import another: the bus (core),
the collector, the processor and the notifier (services) each answer ``health()`` with a
``ComponentStatus``; the composition root (``cli/stack.py``) only lists those answers, and the API
(``api/health.py``) only serves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentStatus:
    """One component's state as the probe sees it right now.

    ``ok=False`` makes ``/healthz`` answer ``degraded`` (still 200: the API itself can serve data);
    ``detail`` is shown to the operator as is, so say what is wrong, e.g.
    ``"mqtt://broker:1883 connected=False"`` or ``"lag=48211"``.
    """

    name: str
    ok: bool
    detail: str = ""


class Reporting(Protocol):
    """A component that can say how it is. ``health`` is called on the event loop for every
    ``/healthz`` request: it must answer from flags and counters it already holds (no I/O, no await)."""

    def health(self) -> ComponentStatus: ...
