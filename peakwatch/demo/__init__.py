"""The bundled demo registry (two sites) used by ``peakwatch up`` when no config file is given."""
