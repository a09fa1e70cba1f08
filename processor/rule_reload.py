"""The alert rules running now: the registry's, then those made through the API, reloaded when the
stored ones change (the store's rules version).

A stored rule that no longer parses (an older peakwatch wrote it) is skipped with a warning rather than
stopping every other rule; one that the registry file also names is skipped too (the file wins).
"""

from __future__ import annotations

import logging

from peakwatch.config import Registry, Rule, parse_rule
from peakwatch.errors import ConfigError
from processor.ports import RuleStore

log = logging.getLogger(__name__)


class RuleBook:
    """The rule list and the stored rules' version it was made from."""

    def __init__(self, registry: Registry, store: RuleStore | None) -> None:
        self._registry = registry
        self._store = store
        self._version: str | None = None
        self.rules: tuple[Rule, ...] = (*registry.rules, *registry.staleness_rules)
        """The rules running now (a fresh rule engine starts with them)."""

    @property
    def reloads(self) -> bool:
        """Whether there are stored rules to watch."""
        return self._store is not None

    async def reload(self) -> bool:
        """Read the stored rules if their version changed; ``True`` when ``rules`` is new."""
        if self._store is None:
            return False
        version = await self._store.version()
        if version == self._version:
            return False
        registry = self._registry
        in_file = {r.name for r in registry.rules} | {r.name for r in registry.staleness_rules}
        stored: list[Rule] = []
        for rule in await self._store.list():
            if rule.name in in_file:
                log.warning(
                    "alert rule %s made through the API is skipped: the registry file has one", rule.name
                )
                continue
            try:
                stored.append(parse_rule(rule.spec, "stored rule"))
            except ConfigError as exc:
                log.warning("alert rule %s is skipped: %s", rule.name, exc)
        self.rules = (*registry.rules, *registry.staleness_rules, *stored)
        if self._version is not None:
            log.info(
                "alert rules reloaded: %d from the registry, %d made through the API",
                len(registry.rules) + len(registry.staleness_rules),
                len(stored),
            )
        self._version = version
        return True
