"""Stream processing: readings from the bus -> per-meter amounts -> 1-minute site windows -> KPIs ->
threshold alerts -> one store transaction per step. See processor/service.py for the loop and
docs/kpis.md for the rules."""

from processor.alerts import RuleEngine
from processor.meters import MeterTracker, StepOutput
from processor.metrics import ProcessorMetrics
from processor.ports import ProcessorStore
from processor.service import Processor
from processor.windows import SiteWindows

__all__ = [
    "MeterTracker",
    "Processor",
    "ProcessorMetrics",
    "ProcessorStore",
    "RuleEngine",
    "SiteWindows",
    "StepOutput",
]
