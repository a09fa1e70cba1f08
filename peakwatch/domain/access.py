"""Who may do what: roles, site scopes, API token format, the login throttle. Pure, no I/O.

A *principal* is whoever makes a request: a user with a dashboard session or a script with an API
token. It has one role and a scope: the sites it may see (``None``: every site). Roles are ordered,
each including the one below:

* ``viewer``: read the sites in scope;
* ``operator``: also acknowledge alerts and silence them;
* ``admin``: also change the sites in scope (meters, accounting inputs, targets, rules, devices).

Some things belong to no site (users and tokens, the audit log, the factor library, collector
credentials, dead letters of unknown sites): only an admin whose scope is every site may change them.

Passwords are hashed by the caller (argon2, ``peakwatch.passwords``). API tokens are random and long,
so a fast digest is enough to store them: the token carries its own id, which finds the row, and the
SHA-256 of its secret, compared in constant time, proves it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

USER_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
MIN_PASSWORD_LENGTH: Final = 12
TOKEN_PREFIX: Final = "pwt"  # noqa: S105 (a prefix, not a secret)
SESSION_PREFIX: Final = "pws"
_TOKEN: Final = re.compile(r"^(pwt|pws)_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})\Z")


class AccessRole(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def includes(self, other: AccessRole) -> bool:
        return self.rank >= other.rank


_RANK: Final = {AccessRole.VIEWER: 0, AccessRole.OPERATOR: 1, AccessRole.ADMIN: 2}


class CredentialKind(enum.StrEnum):
    TOKEN = "token"  # noqa: S105 (a kind, not a secret)
    """An API token for scripts: long-lived until it expires or is revoked."""
    SESSION = "session"
    """A dashboard login: short-lived, ended by logout."""


class User(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: AccessRole
    sites: tuple[str, ...] | None
    """Sites the user may see; ``None``: every site."""
    password_hash: str
    must_change_password: bool = False
    """Set for a one-time password: until it is changed, the user may only change it."""
    created_ms: int
    disabled_ms: int | None = None


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """An API token or a session: its id (public, in the token) and its secret's digest."""

    id: str
    kind: CredentialKind
    name: str
    """What the token is for ("grafana", "billing export"); the client's address for a session."""
    user_name: str
    """Whose rights it carries (a token never has more than its user)."""
    role: AccessRole
    sites: tuple[str, ...] | None
    secret_digest: str
    created_ms: int
    expires_ms: int | None = None
    revoked_ms: int | None = None
    last_used_ms: int | None = None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The rights a request carries: the narrower of the credential's and its user's."""

    user_name: str
    role: AccessRole
    sites: frozenset[str] | None
    via: str
    """``session:<id>`` or ``token:<id>``: what the audit log records besides the user."""
    must_change_password: bool = False
    expires_ms: int | None = None
    """When the credential the request came with expires (``None``: never): a token made with it
    expires no later."""

    @classmethod
    def of(cls, user: User, via: str) -> Principal:
        """The user's own rights (a login, or the owner a token is checked against)."""
        return cls(
            user_name=user.name,
            role=user.role,
            sites=None if user.sites is None else frozenset(user.sites),
            via=via,
            must_change_password=user.must_change_password,
        )

    @property
    def global_scope(self) -> bool:
        return self.sites is None

    def sees(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def may(self, role: AccessRole, site_id: str | None = None) -> bool:
        """Whether the principal has at least ``role`` at ``site_id`` (``None``: a global resource,
        which needs every site in scope)."""
        if not self.role.includes(role):
            return False
        return self.global_scope if site_id is None else self.sees(site_id)

    def visible(self, site_ids: Iterable[str]) -> list[str]:
        return [s for s in site_ids if self.sees(s)]


def narrower(user: User, credential: Credential) -> tuple[AccessRole, frozenset[str] | None]:
    """A credential's effective rights: its own, cut down to its user's current ones (a user demoted
    after making a token does not keep the old rights through the token)."""
    role = credential.role if user.role.includes(credential.role) else user.role
    sites = _intersect(user.sites, credential.sites)
    return role, sites


def _intersect(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> frozenset[str] | None:
    if a is None:
        return None if b is None else frozenset(b)
    if b is None:
        return frozenset(a)
    return frozenset(a) & frozenset(b)


def within(role: AccessRole, sites: tuple[str, ...] | None, granter: Principal) -> str | None:
    """Why ``granter`` may not hand out ``role`` over ``sites`` (``None``: it may): nobody grants more
    than they hold."""
    if not granter.role.includes(role):
        return f"role {role.value} is above your own ({granter.role.value})"
    if granter.sites is not None:
        if sites is None:
            return "every site is beyond your scope"
        outside = sorted(set(sites) - granter.sites)
        if outside:
            return f"sites {', '.join(outside)} are beyond your scope"
    return None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def format_token(kind: CredentialKind, credential_id: str, secret: str) -> str:
    prefix = TOKEN_PREFIX if kind is CredentialKind.TOKEN else SESSION_PREFIX
    return f"{prefix}_{credential_id}_{secret}"


def parse_token(token: str) -> tuple[CredentialKind, str, str] | None:
    """``(kind, id, secret)`` of a well-formed token, else ``None``."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    kind = CredentialKind.TOKEN if match.group(1) == TOKEN_PREFIX else CredentialKind.SESSION
    return kind, match.group(2), match.group(3)


def secret_matches(secret: str, credential: Credential) -> bool:
    return hmac.compare_digest(digest(secret), credential.secret_digest)


def credential_problem(credential: Credential, now_ms: int) -> str | None:
    """Why a credential whose secret matched is still refused (``None``: it is good)."""
    if credential.revoked_ms is not None:
        return "revoked"
    if credential.expires_ms is not None and credential.expires_ms <= now_ms:
        return "expired"
    return None


def password_problem(password: str, user_name: str) -> str | None:
    """Why a password is refused (``None``: acceptable). Length is what matters (NIST SP 800-63B)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if user_name.lower() in password.lower():
        return "a password must not contain the user name"
    return None


class LoginThrottle:
    """Login attempts allowed per key (user name, client address) in a sliding window.

    Counting per user name stops guessing one account from many addresses; counting per address
    stops trying many accounts from one. ``attempt`` checks and counts in one step, before the slow
    password check, so guesses sent at the same moment are counted as they arrive; a success takes
    its attempt back (and clears the user name's count).
    """

    def __init__(self, max_failures: int = 5, window_ms: int = 300_000, max_keys: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_ms = window_ms
        self._max_keys = max_keys
        self._attempts: dict[str, deque[int]] = {}

    def attempt(self, keys: Iterable[str], now_ms: int) -> int:
        """0 and the attempt counted, or (nothing counted) how long until one may be tried."""
        keys = tuple(keys)
        wait = 0
        for key in keys:
            times = self._recent(key, now_ms)
            if times is not None and len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window_ms - now_ms)
        if wait:
            return wait
        for key in keys:
            times = self._recent(key, now_ms)
            if times is None:
                if len(self._attempts) >= self._max_keys:
                    self._forget_expired(now_ms)
                times = self._attempts[key] = deque()
            times.append(now_ms)
        return 0

    def succeeded(self, user_key: str, other_keys: Iterable[str], now_ms: int) -> None:
        """The attempt counted at ``now_ms`` was a success: forget the user name's attempts and take
        this one back from the other keys."""
        self._attempts.pop(user_key, None)
        for key in other_keys:
            times = self._attempts.get(key)
            if times is not None and now_ms in times:
                times.remove(now_ms)

    def _recent(self, key: str, now_ms: int) -> deque[int] | None:
        times = self._attempts.get(key)
        if times is None:
            return None
        while times and times[0] + self.window_ms <= now_ms:
            times.popleft()
        return times

    def _forget_expired(self, now_ms: int) -> None:
        for key in [k for k, t in self._attempts.items() if not t or t[-1] + self.window_ms <= now_ms]:
            del self._attempts[key]
        if len(self._attempts) >= self._max_keys:  # still full: under attack from many keys; keep the newest
            oldest = sorted(self._attempts, key=lambda k: self._attempts[k][-1])
            for key in oldest[: len(oldest) // 2]:
                del self._attempts[key]


SECRET_KEYS: Final = frozenset({"password", "new_password", "current_password", "secret", "token"})


def redact(value: Any) -> Any:
    """``value`` with every secret-named field replaced, for the audit log (secrets never stored), and
    made storable whatever the client sent: NUL characters escaped, NaN and infinities as text (a
    ``jsonb`` column takes neither, and an audit entry must never fail on the input it records)."""
    if isinstance(value, Mapping):
        return {
            _storable(str(k)): "***" if str(k).lower() in SECRET_KEYS else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _storable(text: str) -> str:
    return text.replace("\x00", "\\u0000")


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change: who (``actor``, through ``via``), what (``action`` and ``target``), where."""

    at_ms: int
    actor: str
    via: str
    action: str
    site_id: str | None = None
    target: str = ""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    """The request's input with secrets replaced (``redact``)."""
    client: str = ""
    outcome: str = "ok"
    """``started`` while the change runs (the entry is written first: no change without an entry), then
    ``ok`` or ``refused: <status> <reason>``."""
    id: int | None = None
