"""Roles, scopes, token format and the login throttle, with hand-made vectors (no I/OP)."""

from __future__ import annotations

import pytest

from peakwatch.domain.access import (
    AccessRole,
    Credential,
    CredentialKind,
    LoginThrottle,
    Principal,
    User,
    credential_problem,
    digest,
    format_token,
    narrower,
    parse_token,
    password_problem,
    redact,
    secret_matches,
    within,
)

V, OP, A = AccessRole.VIEWER, AccessRole.OPERATOR, AccessRole.ADMIN


def principal(role: AccessRole, sites: set[str] | None) -> Principal:
    return Principal(
        user_name="u", role=role, sites=None if sites is None else frozenset(sites), via="token:x"
    )


def user(role: AccessRole, sites: tuple[str, ...] | None) -> User:
    return User(name="u", role=role, sites=sites, password_hash="h", created_ms=0)


def credential(role: AccessRole, sites: tuple[str, ...] | None, **kw: int | None) -> Credential:
    return Credential(
        id="0123456789abcdef",
        kind=CredentialKind.TOKEN,
        name="t",
        user_name="u",
        role=role,
        sites=sites,
        secret_digest=digest("s" * 30),
        created_ms=0,
        **kw,  # type: ignore[arg-type]
    )


def test_roles_include_the_ones_below() -> None:
    assert A.includes(OP)
    assert A.includes(V)
    assert OP.includes(V)
    assert not V.includes(OP)
    assert not OP.includes(A)


@pytest.mark.parametrize(
    ("role", "sites", "need", "site", "allowed"),
    [
        (V, None, V, "a", True),
        (V, {"a"}, V, "b", False),
        (OP, {"a"}, OP, "a", True),
        (OP, {"a"}, A, "a", False),
        (A, {"a"}, A, "a", True),
        (A, {"a"}, A, None, False),  # a global resource needs every site
        (A, None, A, None, True),
        (V, None, V, None, True),
    ],
)
def test_may(
    role: AccessRole, sites: set[str] | None, need: AccessRole, site: str | None, allowed: bool
) -> None:
    assert principal(role, sites).may(need, site) is allowed


def test_a_token_is_cut_down_to_its_user() -> None:
    # admin token of a user since demoted to viewer of site a only
    assert narrower(user(V, ("a",)), credential(A, None)) == (V, frozenset({"a"}))
    assert narrower(user(A, None), credential(OP, ("b", "c"))) == (OP, frozenset({"b", "c"}))
    assert narrower(user(A, ("a", "b")), credential(A, ("b", "c"))) == (A, frozenset({"b"}))
    assert narrower(user(A, None), credential(A, None)) == (A, None)


def test_nobody_grants_more_than_they_hold() -> None:
    granter = principal(OP, {"a", "b"})
    assert within(V, ("a",), granter) is None
    assert within(OP, ("a", "b"), granter) is None
    assert within(A, ("a",), granter) == "role admin is above your own (operator)"
    assert within(V, ("a", "c"), granter) == "sites c are beyond your scope"
    assert within(V, None, granter) == "every site is beyond your scope"
    assert within(A, None, principal(A, None)) is None


def test_token_round_trip_and_malformed_tokens() -> None:
    token = format_token(CredentialKind.TOKEN, "0123456789abcdef", "s" * 30)
    assert token == "pwt_0123456789abcdef_" + "s" * 30
    assert parse_token(token) == (CredentialKind.TOKEN, "0123456789abcdef", "s" * 30)
    assert parse_token("pws_0123456789abcdef_" + "s" * 30) == (
        CredentialKind.SESSION,
        "0123456789abcdef",
        "s" * 30,
    )
    for bad in ("", "pwt_0123_" + "s" * 30, "pwx_0123456789abcdef_" + "s" * 30, "pwt_0123456789abcdef_short"):
        assert parse_token(bad) is None
    assert secret_matches("s" * 30, credential(V, None))
    assert not secret_matches("t" * 30, credential(V, None))


def test_credential_problems() -> None:
    assert credential_problem(credential(V, None), 10) is None
    assert credential_problem(credential(V, None, expires_ms=10), 10) == "expired"
    assert credential_problem(credential(V, None, expires_ms=11), 10) is None
    assert credential_problem(credential(V, None, revoked_ms=5), 10) == "revoked"


def test_password_rules() -> None:
    assert password_problem("short", "ann") == "a password needs at least 12 characters"
    assert password_problem("my name is ANN!", "ann") == "a password must not contain the user name"
    assert password_problem("correct horse battery", "ann") is None


def test_throttle_counts_attempts_per_key_in_a_sliding_window() -> None:
    throttle = LoginThrottle(max_failures=3, window_ms=1000)
    keys = ("user:ann", "client:10.0.0.1")
    assert [throttle.attempt(keys, t) for t in (0, 100, 200)] == [0, 0, 0]
    assert throttle.attempt(keys, 300) == 700  # refused, and not counted: the first expires at 1000
    assert throttle.attempt(("user:bob", "client:10.0.0.1"), 300) == 700  # the same address
    assert throttle.attempt(("user:bob", "client:10.0.0.2"), 300) == 0
    assert throttle.attempt(keys, 1000) == 0  # the attempt at 0 left the window


def test_a_success_takes_its_attempt_back() -> None:
    throttle = LoginThrottle(max_failures=2, window_ms=1000)
    for t in (0, 1):
        throttle.attempt(("user:ann", "client:a"), t)
    throttle.succeeded("user:ann", ("client:a",), 1)
    assert throttle.attempt(("user:ann", "client:a"), 2) == 0  # user cleared, client back to one attempt
    assert throttle.attempt(("user:zed", "client:a"), 3) == 997


def test_attempts_at_the_same_moment_are_counted_as_they_arrive() -> None:
    throttle = LoginThrottle(max_failures=5, window_ms=1000)
    answers = [throttle.attempt(("user:ann", "client:a"), 0) for _ in range(40)]
    assert answers.count(0) == 5


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=2, window_ms=1000, max_keys=100)
    for i in range(1000):
        throttle.attempt((f"user:{i}",), i)
    assert len(throttle._attempts) <= 100


def test_redact_makes_any_input_storable() -> None:
    assert redact({"q": "a\x00b", "n": float("nan"), "i": float("-inf")}) == {
        "q": "a\\u0000b",
        "n": "nan",
        "i": "-inf",
    }


def test_redact_replaces_secret_fields_at_any_depth() -> None:
    body = {"name": "ann", "password": "p", "nested": [{"Token": "t", "x": 1}], "secret": None}
    assert redact(body) == {
        "name": "ann",
        "password": "***",
        "nested": [{"Token": "***", "x": 1}],
        "secret": "***",
    }
