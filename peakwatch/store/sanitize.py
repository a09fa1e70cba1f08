"""KPI windows to and from their stored form, and reading back numbers written before the numeric
bounds existed.

Components are stored flat (``peakwatch.domain.components.encode_components``), in ``kpi_windows`` and
in the ``previous`` document of ``kpi_revisions``; every stored window is read through ``kpi_window``
or ``kpi_revision``, and a revision's document is made by ``window_document``.

Issue 15: a database may hold ``±Infinity``/``NaN`` amounts in ``meter_intervals`` and ``null``
components in ``kpi_windows`` (JSON has no infinity). Such a row must not make the API answer 500 or the
processor's restore crash, so it is made finite on read (``peakwatch.domain.kpis.finite_window``: flagged
``not_computable``) or, for a ledger amount, skipped, and each time the log says which row."""

from __future__ import annotations

import logging
import math
from typing import Any

import asyncpg
import msgspec

from peakwatch.domain.components import decode_components, encode_components
from peakwatch.domain.kpis import finite_window
from peakwatch.domain.models import Components, KpiWindow
from peakwatch.store.records import KpiRevision

log = logging.getLogger(__name__)


def _numbers(values: Any, replacement: float | None) -> Any:
    if isinstance(values, dict) and any(v is None for v in values.values()):
        return {k: replacement if v is None else v for k, v in values.items()}
    return values


def kpi_window(row: asyncpg.Record) -> KpiWindow:
    """A stored window as a finite ``KpiWindow`` (a poisoned one is flagged ``not_computable``)."""
    data = dict(row)
    data["components"] = decode_components(_numbers(data.get("components"), math.nan))
    stored = msgspec.convert(data, KpiWindow)
    window = finite_window(stored)
    if window is not stored:
        log.warning(
            "stored KPI window %s %s at %s holds values that are not finite: shown as 0 or absent, "
            "flagged not_computable (restate the site to recompute it)",
            window.site_id,
            window.period,
            window.start_ms,
        )
    return window


def kpi_revision(row: asyncpg.Record) -> KpiRevision:
    """A stored revision; its ``previous`` window as it was written (``window_document``)."""
    data = dict(row)
    previous = dict(data["previous"])
    previous["components"] = decode_components(previous.get("components", {}))
    data["previous"] = msgspec.convert(previous, KpiWindow)
    return msgspec.convert(data, KpiRevision)


def window_document(window: KpiWindow) -> dict[str, Any]:
    """A window as the JSON document a revision keeps (``kpi_revisions.previous``)."""
    document: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(window, components=Components()))
    document["components"] = encode_components(window.components)
    return document


def finite_amount(site_id: str, meter_id: str, window_start_ms: int, amount: float) -> bool:
    """Whether a stored ledger amount is usable; a non-finite one is logged (and then left out)."""
    if math.isfinite(amount):
        return True
    log.warning(
        "meter %s/%s: stored amount %r for the window at %s is not finite: left out "
        "(restate the meter to re-derive it from its readings)",
        site_id,
        meter_id,
        amount,
        window_start_ms,
    )
    return False
