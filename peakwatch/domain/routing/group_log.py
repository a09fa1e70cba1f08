"""The per-group notification log: what one channel was told about one group at one escalation level.
It is the notifier's only state (persisted in ``notify_logs``), so a restart neither repeats nor forgets
a message; ``after_failure`` is how a failed send is remembered and retried."""

from __future__ import annotations

import msgspec


def log_id(key: str, channel: str, escalation: int) -> str:
    return f"{key}|{channel}|{escalation}"


class GroupLog(msgspec.Struct, frozen=True, kw_only=True):
    """What one channel was told about one group at one escalation level: the notifier's only state."""

    key: str
    channel: str
    receiver: str
    escalation: int
    group_labels: dict[str, str]
    created_ms: int
    """When the group first had something to send (group_wait counts from here)."""
    sent_ms: int | None = None
    """Last successful message."""
    flushed_ms: int | None = None
    """Last group_interval tick at which a message went out (``sent_ms`` for now)."""
    firing: tuple[int, ...] = ()
    """Alert ids the last message reported as firing (sorted): their resolutions are owed."""
    muted: tuple[int, ...] = ()
    """Alert ids a message reported as firing that are muted since and still firing (sorted): their
    resolutions are owed too, and when they come back unmuted they are news again."""
    failures: int = 0
    retry_ms: int | None = None
    """After a failed delivery: no new attempt before this."""

    @property
    def id(self) -> str:
        return log_id(self.key, self.channel, self.escalation)

    @property
    def owed(self) -> frozenset[int]:
        """Alerts this channel was told are firing (muted since, or not): their resolution is owed, so
        the notifier must pass them to ``plan`` whatever their state."""
        return frozenset(self.firing) | frozenset(self.muted)

    @property
    def finished(self) -> bool:
        """Nothing left to resolve: after a successful send the notifier deletes the log."""
        return not self.owed


def after_failure(log: GroupLog, now_ms: int, base_ms: int = 1_000, cap_ms: int = 300_000) -> GroupLog:
    """The log to persist when a send failed: ``log`` must be the log as it was BEFORE the send
    (``Plan.before[id]``), so the next plan sends the same message again; exponential backoff (base,
    2x base, 4x base ... capped) keeps a dead endpoint from being hammered."""
    backoff = cap_ms if log.failures >= 62 else min(cap_ms, base_ms * 2**log.failures)
    return msgspec.structs.replace(log, failures=log.failures + 1, retry_ms=now_ms + backoff)
