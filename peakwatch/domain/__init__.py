"""Pure domain code: no I/O. Everything here is deterministic and tested with hand-computed vectors."""
