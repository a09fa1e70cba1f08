"""A durable, bounded bus in one directory: what ``peakwatch up`` needs to survive a SIGKILL and a
database outage without losing or dropping readings (issue #7).

Layout of the directory (created 0700)::

    00000000000000000000.seg   segments of one append-only log, each named by the logical byte
    00000000000067108912.seg   offset of its first record (Kafka style); a position is such an offset
    committed                  the position up to which the processor committed (text, replaced atomically)
    lock                       flock()ed while a process has the spool open
    *.seg.corrupt              a segment in which recovery found a damaged record (kept for inspection)

A record is an 8-byte header (little-endian body length, CRC32 of the body) and a body of one tag
byte (batch or dead letters) and the msgpack of the ``ReadingBatch`` or ``list[DeadLetter]``.

Durability. ``publish`` returns once ``os.write`` put the record into the page cache, so a process
crash (SIGKILL, OOM kill) loses nothing that was acknowledged. A machine crash or power cut can lose
the last seconds the kernel had not written back; ``fsync=True`` closes that too by fsyncing each
record (in a worker thread) before ``publish`` returns, at the cost of one disk flush per batch (see
``bench/spool.py`` for the figures). Commits are written to a small file that replaces the previous
one atomically (fsynced with ``fsync=True``).

Bounded. Bytes published but not committed may not exceed ``max_bytes``: a publisher waits until
commits free space. That wait is the back-pressure that makes the collector stop acknowledging MQTT
messages (the broker keeps them), so nothing is ever dropped silently. Disk use is at most about
``max_bytes + segment_bytes``: committed segments are deleted, except the one being written.

Reading. Records published while the reader is caught up are also kept, decoded, in a small bounded
in-memory queue (``memory_items``, ``memory_bytes``) and handed out from there without touching the
disk; anything else (a backlog during a database outage, everything after a restart) is read back
from the segments in a worker thread, ``max_readings`` at a time, so a spool of gigabytes never sits
in memory.

Recovery (opening). Reading starts at the committed position, so what was polled but not committed
is delivered again (at-least-once; the store's idempotent writes make results exact). Every record
after it is checked (length and CRC): a torn tail of the last segment, a write the crash interrupted
and never acknowledged, is truncated with a warning; a damaged record in an earlier segment renames
that segment to ``*.corrupt`` (logged as an error with the lost byte range; the records before the
damage are still delivered) and reading goes on with the next segment. Nothing is skipped silently.

One process at a time: the spool is for a collector and a processor in the same process (``peakwatch
up``); a second process opening the same directory gets a ``BusError``. ``close`` releases the lock
(so the directory can be opened again at once) but still records the processor's last commits, which
come after the bus closed.

Modules: ``bus`` (``SpoolBus``: publish, poll, commit, close), ``records`` (the record format, checking
and reading segments), ``files`` (segments, descriptors, the commit file, fsyncs), ``recovery`` (opening
a directory after a crash). Only ``SpoolBus`` and the defaults are public.
"""

from peakwatch.bus.spool.bus import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_MEMORY_ITEMS,
    DEFAULT_SEGMENT_BYTES,
    SpoolBus,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_MEMORY_ITEMS",
    "DEFAULT_SEGMENT_BYTES",
    "SpoolBus",
]
