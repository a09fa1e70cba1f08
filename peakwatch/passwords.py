"""Password hashing for dashboard users: argon2id with argon2-cffi's defaults (RFC 9106's second
recommended profile), so the cost follows the library as it is raised over the years.

Only user passwords come here. API tokens are long random secrets and are stored as a SHA-256 digest
(``peakwatch.domain.access``); device secrets use the broker's own format (``peakwatch.domain.devices``).
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check; a malformed stored hash is a mismatch, not an error."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (re-hash at the next login)."""
    return _HASHER.check_needs_rehash(password_hash)


def new_password() -> str:
    """A generated password (one-time passwords, ``peakwatch users add`` without ``--password``)."""
    return secrets.token_urlsafe(18)
