"""The watchdog of an embedded PostgreSQL server: stops it once the process that owns it is gone.

Spawned by ``ownership.claim`` as ``python -m peakwatch.embedded.watchdog PGDATA TOKEN`` in a session
of its own; why a watchdog, and how ownership passes between processes: ``ownership``'s docstring.
It writes to ``watchdog.log`` in the cluster's directory only when it acts.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

from peakwatch.embedded import ownership
from peakwatch.embedded.postgres import EmbeddedPostgres


def watch(data_dir: Path, token: str) -> None:
    """Return when this watchdog's ownership ends: handed over or released (nothing to do), or its
    owner gone (the server is stopped first)."""
    while True:
        owner = ownership.read_owner(data_dir)
        if owner is None or owner.token != token:
            return
        if not ownership.alive(owner):
            # The port is not needed to stop the server.
            EmbeddedPostgres(data_dir, port=0).stop_for_gone_owner(token)
            return
        time.sleep(ownership.POLL_S)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m peakwatch.embedded.watchdog PGDATA TOKEN", file=sys.stderr)
        return 2
    # Its owner's Ctrl-C or closed terminal must not end the watchdog before the owner is gone.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s watchdog[%(process)d] %(levelname)s %(message)s"
    )
    try:
        watch(Path(argv[0]), argv[1])
    except Exception:
        logging.getLogger(__name__).exception("the watchdog of %s failed", argv[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
