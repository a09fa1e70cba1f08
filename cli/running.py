"""The running stack's address card.

``peakwatch up`` writes it into its data directory once everything listens, and removes it when it
stops. Every other command (``users``, ``devices``, ``db …``, ``simulate``) reads it first, so that a
command typed beside a running stack talks to that stack's database and broker instead of starting
(and, worse, stopping) servers of its own. A card whose process is gone (a killed ``up``) is stale
and ignored.

The card may hold a database URL with a password (when ``up`` was given one), so it is written
readable by its owner only, like the data directory's other files.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]

CARD_NAME = "stack.json"


class StackCard(msgspec.Struct, frozen=True, kw_only=True):
    """Where the running stack's parts answer."""

    pid: int
    """The ``peakwatch up`` process."""
    started_at_ms: int
    database_url: str
    """The database the stack writes to (embedded: its own loopback port)."""
    mqtt_url: str
    """The broker devices publish to (as the stack's collector reaches it, without credentials)."""
    api_url: str
    """The API and dashboard, ``http://host:port``."""
    data_dir: str
    embedded_broker: bool = False
    """The broker is the stack's embedded one (loopback, no authentication: device credentials do not
    apply to it)."""


def card_path(data_dir: Path) -> Path:
    return data_dir.expanduser() / "run" / CARD_NAME


def write_card(card: StackCard) -> Path:
    """Publish the card atomically (a reader never sees half of it)."""
    path = card_path(Path(card.data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.encode(card))
    tmp.replace(path)
    return path


def remove_card(data_dir: Path, pid: int) -> None:
    """Remove the card if it is still ``pid``'s (a newer stack may have replaced it)."""
    card = read_card(data_dir, require_alive=False)
    if card is not None and card.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            card_path(data_dir).unlink()


def read_card(data_dir: Path, *, require_alive: bool = True) -> StackCard | None:
    """The card of the stack running from ``data_dir``; ``None`` when there is none, it cannot be
    read, or (``require_alive``) its process is gone."""
    try:
        card = msgspec.json.decode(card_path(data_dir).read_bytes(), type=StackCard)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if require_alive and not _alive(card.pid):
        return None
    return card


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a pid reused by an unrelated program is rare enough:
    a wrong guess only makes the caller fail to connect, with the URL in the message)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
