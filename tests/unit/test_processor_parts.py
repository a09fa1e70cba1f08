"""The processor's smaller parts on their own: site ownership on a shared bus
(processor/ownership.py) and the rule book reloading stored rules (processor/rule_reload.py)."""

from __future__ import annotations

from typing import Any

import pytest

from peakwatch.bus import Polled
from peakwatch.domain.models import Reading, ReadingBatch
from peakwatch.errors import BusError
from peakwatch.store.records import StoredRule
from processor.ownership import SiteOwnership, owns_no_site
from processor.rule_reload import RuleBook
from tests.unit.fakes import make_registry

W0 = 1_699_999_980_000


def _polled(*sites: str) -> Polled:
    return Polled(batches=[ReadingBatch(s, [Reading(site_id=s, meter_id="m", ts_ms=W0)]) for s in sites])


def test_a_local_bus_has_no_ownership() -> None:
    ownership = SiteOwnership(shared=False)
    assert not ownership.shared
    assert ownership.owns is None
    assert ownership.fence is None
    ownership.refuse_foreign(_polled("anything"))  # every site is this processor's


def test_a_claim_names_the_assigned_sites_and_a_release_makes_it_stale() -> None:
    registry = make_registry()  # sites dc and park
    ownership = SiteOwnership(shared=True)
    assert ownership.owns is owns_no_site
    assert ownership.fence == {}
    assert ownership.claim(registry) is None
    ownership.acquired(lambda site_id: site_id == "dc")
    claim = ownership.claim(registry)
    assert claim is not None
    assert claim.sites == ["dc"]
    assert not ownership.stale(claim)
    ownership.take(claim, {"dc": 4})
    assert ownership.owns is claim.owns
    assert ownership.fence == {"dc": 4}
    ownership.releasing()  # the group moves on: the claim (had it not been taken) would be stale
    assert ownership.stale(claim)
    assert ownership.pending is None
    ownership.drop_all()
    assert ownership.owns is owns_no_site
    assert ownership.fence == {}


def test_records_of_a_site_not_owned_stop_the_step() -> None:
    ownership = SiteOwnership(shared=True)
    ownership.acquired(lambda site_id: site_id == "dc")
    claim = ownership.claim(make_registry())
    assert claim is not None
    ownership.take(claim, {"dc": 1})
    ownership.refuse_foreign(_polled("dc"))
    with pytest.raises(BusError, match="park"):
        ownership.refuse_foreign(_polled("dc", "park"))


class FakeRules:
    def __init__(self, rules: list[StoredRule]) -> None:
        self.rules = rules
        self.version_now = "v1"
        self.listed = 0

    async def version(self) -> str:
        return self.version_now

    async def list(self) -> list[StoredRule]:
        self.listed += 1
        return self.rules


def _stored(name: str, spec: dict[str, Any]) -> StoredRule:
    return StoredRule(
        name=name, spec=spec, created_by="admin", created_ms=W0, updated_by="admin", updated_ms=W0
    )


async def test_the_rule_book_adds_stored_rules_once_per_version() -> None:
    registry = make_registry()  # holds the rule pue_retrofit_line
    strict = {"name": "pue_strict", "kpi": "pue", "op": ">", "threshold": 1.3}
    store = FakeRules(
        [
            _stored("pue_strict", strict),
            _stored("pue_retrofit_line", {**strict, "name": "pue_retrofit_line"}),  # the file's wins
            _stored("broken", {"name": "broken", "kpi": "pue", "op": "~"}),  # skipped, not fatal
        ]
    )
    book = RuleBook(registry, store)
    assert book.reloads
    assert [r.name for r in book.rules] == ["pue_retrofit_line"]
    assert await book.reload()
    assert [r.name for r in book.rules] == ["pue_retrofit_line", "pue_strict"]
    assert not await book.reload()  # same version: not even listed again
    assert store.listed == 1
    store.version_now = "v2"
    store.rules = []
    assert await book.reload()
    assert [r.name for r in book.rules] == ["pue_retrofit_line"]


async def test_without_stored_rules_the_book_is_the_registry() -> None:
    book = RuleBook(make_registry(), None)
    assert not book.reloads
    assert not await book.reload()
    assert [r.name for r in book.rules] == ["pue_retrofit_line"]
