"""Meter simulators: physically consistent telemetry for the demo, tests and benchmarks.

Layers, each usable on its own:

* physics (``weather``, ``park``, ``datacentre``, ``synthetic``): deterministic site models stepped
  with event time in epoch ms; no clock, no network, no global randomness.
* ``fleet``: N sites built from the two templates, and the registry YAML that matches them.
* ``encoding`` and ``faults``: readings -> MQTT messages, and seeded fault injection on that stream.
* ``options``: what a run is asked to do (``SimulationOptions``) and what it did (``SimStats``).
* ``pacing`` and ``publisher``: event time -> wall clock, and publishing over MQTT with back-pressure
  (``run_simulation``).

Nothing here imports the collector, processor or API: the simulators only speak the payload contract
(``peakwatch.domain.units.PAYLOAD_FIELDS``) and the registry schema (``peakwatch.config``).
"""
