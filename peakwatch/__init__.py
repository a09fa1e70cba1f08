"""peakwatch core: the domain (pure), configuration, the bus and the store shared by every service.

Layering (enforced by tests/unit/test_layering.py):

* ``peakwatch.domain`` is pure: no I/O, no asyncpg, no MQTT, no FastAPI. Energy deltas, windows,
  KPIs, factors and rule evaluation live here and are tested with hand-computed vectors.
* ``peakwatch.config``, ``peakwatch.bus``, ``peakwatch.store``, ``peakwatch.embedded`` are the shared
  edges the services use.
* The services (``collector``, ``processor``, ``api``, ``simulators``) import the core, never each
  other; only the composition root (``cli``) imports them all.
"""

__version__ = "0.1.0"
