"""Which sites this processor owns on a shared bus (Kafka), and the epochs that fence its writes.

The bus calls ``Processor.released`` when a rebalance begins and ``Processor.acquired`` with the new
assignment; the processor claims those sites in the store (``site_owners``: each site's epoch + 1)
before its next step, and every write then carries the epochs (``fence``), so a stalled former owner
cannot write any more. This object holds that state and its rules; the processor orders the waiting
(writes in flight, the accountant's pass) around it.

On a local bus there is no ownership: ``owns`` and ``fence`` are ``None`` and every site is this
processor's.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from peakwatch.bus import Polled
from peakwatch.config import Registry
from peakwatch.errors import BusError


def owns_no_site(_site_id: str) -> bool:
    """Ownership before the shared bus's first assignment, and after a release."""
    return False


@dataclass(frozen=True, slots=True)
class Claim:
    """Sites the bus gave this processor, to be claimed in the store and restored."""

    owns: Callable[[str], bool]
    sites: list[str]
    releases: int
    """``SiteOwnership.releases`` when the claim was made: a release since makes it stale."""


class SiteOwnership:
    """The sites this processor owns now, those it was given and has not claimed yet, and the fence."""

    def __init__(self, shared: bool) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """This processor's name in ``site_owners``."""
        self.owns: Callable[[str], bool] | None = owns_no_site if shared else None
        """Whether this processor owns a site now (``None``: a local bus, every site)."""
        self.fence: dict[str, int] | None = {} if shared else None
        self.pending: Callable[[str], bool] | None = None
        """Sites the bus gave this processor that it has not claimed and restored yet."""
        self.releases = 0
        """Counts releases: a claim that a release overtook gives up (it would be stale)."""
        self.lock = asyncio.Lock()
        """Held while a release or a claim is under way."""

    @property
    def shared(self) -> bool:
        return self.owns is not None

    def acquired(self, owns: Callable[[str], bool]) -> None:
        self.pending = owns

    def releasing(self) -> None:
        """A release begins: a claim under way or pending is stale now."""
        self.releases += 1
        self.pending = None

    def drop_all(self) -> None:
        """Every site is gone (the processor then forgets them)."""
        self.owns, self.fence = owns_no_site, {}

    def claim(self, registry: Registry) -> Claim | None:
        """The sites of the pending assignment (``None``: nothing pending)."""
        owns = self.pending
        if owns is None:
            return None
        return Claim(owns, sorted(s for s in registry.sites if owns(s)), self.releases)

    def stale(self, claim: Claim) -> bool:
        """The group moved on since ``claim`` was made (while the database was away, say)."""
        return self.releases != claim.releases

    def take(self, claim: Claim, fence: dict[str, int]) -> None:
        """The store gave ``fence`` for the claimed sites: they are this processor's now."""
        self.owns, self.fence = claim.owns, fence

    def refuse_foreign(self, polled: Polled) -> None:
        """A record of a site this processor does not own would become an ``unknown_site`` dead letter
        and be committed, i.e. lost for its owner: stop instead (nothing of this poll is committed)."""
        owns = self.owns
        if owns is None:
            return
        foreign = sorted({batch.site_id for batch in polled.batches if not owns(batch.site_id)})
        if foreign:
            raise BusError(
                f"the bus delivered readings of site(s) {', '.join(foreign[:5])} that this processor does "
                "not own (were the topic's partitions changed?); nothing of them is committed"
            )
