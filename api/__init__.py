"""The HTTP API: views over the store for park energy operators and their scripts, and the accounting
inputs they enter (factors, meter replacements, green certificates, value added, targets).

Built by ``create_app`` from objects the composition root already owns (store, registry, settings),
so importing this package creates nothing. Every read goes through ``peakwatch.store.Store`` query
methods; handlers hold no SQL.
"""

from api.app import create_app
from api.health import ComponentStatus, HealthProbe

__all__ = ["ComponentStatus", "HealthProbe", "create_app"]
