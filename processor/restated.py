"""Restated windows on their way back through the alert rules (``RuleEngine.rejudge``).

The accountant restated a site's windows in ``[from, to)`` (``Accountant(on_restated=...)``); the
rules judge the stored windows their look-back needs again. A range goes ``unjudged`` (a failed
re-judgement stays there; the accountant's next pass tries again) -> ``judged`` (its alert changes wait
in the rule engine) -> the write of the next step, which carries them -> gone once that write
committed, back to ``unjudged`` if it failed (re-judged against the rule state then held).

``restated`` never raises: the restatement is committed and its request done, so a failure here must
not fail (and retry) the request, whose second pass restates nothing and would re-judge nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from peakwatch.domain.periods import Period
from peakwatch.errors import StoreError
from processor.ports import AccountantStore
from processor.step import StepState

log = logging.getLogger(__name__)

Range = tuple[str, int, int]
"""(site, from ms, to ms) of restated windows."""


class Rejudging:
    """The restated ranges not judged yet, and those judged whose changes are not stored yet."""

    def __init__(self, store: AccountantStore | None, state: Callable[[], StepState]) -> None:
        self._store = store
        self._state = state
        """The live state now (a hand-over replaces it)."""
        self._unjudged: list[Range] = []
        self._judged: list[Range] = []

    async def restated(self, site_id: str, from_ms: int, to_ms: int) -> None:
        self._unjudged.append((site_id, from_ms, to_ms))
        await self.judge()

    async def judge(self) -> None:
        """Re-judge the restated ranges not judged yet, oldest first; a failing one stays for later."""
        todo, self._unjudged = self._unjudged, []
        for position, (site_id, from_ms, to_ms) in enumerate(todo):
            try:
                await self._rejudge_range(site_id, from_ms, to_ms)
            except StoreError as exc:
                log.warning("re-judging restated windows of %s failed (retried later): %s", site_id, exc)
                self._unjudged[:0] = todo[position:]
                return
            self._judged.append((site_id, from_ms, to_ms))

    def take_judged(self) -> list[Range]:
        """The ranges whose changes the step just took into its batch (no await between the two)."""
        judged, self._judged = self._judged, []
        return judged

    def unstored(self, judged: list[Range]) -> None:
        """The write carrying ``judged`` failed: judge them again."""
        self._unjudged[:0] = judged

    async def _rejudge_range(self, site_id: str, from_ms: int, to_ms: int) -> None:
        rules = self._state().rules
        span = rules.rejudge_span(site_id, from_ms, to_ms)
        if span is None or self._store is None:
            return
        stored_to = min(span[1], self._state().committed_end_ms.get(site_id, span[0]))
        async with self._store.accounting("reading restated windows") as tx:
            stored = await tx.load_windows(site_id, Period.MINUTE.value, span[0], stored_to)
        rules.rejudge(site_id, from_ms, to_ms, stored, stored_to)
