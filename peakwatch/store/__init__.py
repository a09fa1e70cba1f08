"""The store: PostgreSQL (TimescaleDB when present) through asyncpg.

``Store`` is the only code that writes SQL. Services get a connected ``Store`` from the composition
root; the API reads through its query methods (no SQL in handlers), the processor writes one
``ProcessedBatch`` per step in a single transaction (COPY for bulk rows).
"""

from peakwatch.store.records import AlertRecord, DeadLetterRecord, MeterStatus
from peakwatch.store.store import Store
from peakwatch.store.timescale import TimescalePolicy

__all__ = ["AlertRecord", "DeadLetterRecord", "MeterStatus", "Store", "TimescalePolicy"]
