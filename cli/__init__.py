"""The composition root: the only package that imports every service (collector, processor, api,
simulators) and wires them to the core (settings, registry, bus, store, embedded servers)."""
