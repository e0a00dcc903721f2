"""Basic auth: bcrypt checks, the cache of successful ones, header parsing."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from exporter.web.auth import BasicAuth, parse_basic

ROUNDS = 4  # the cheapest cost bcrypt allows: the tests check logic, not hardness


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=ROUNDS)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_successful_checks_are_cached_failures_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """bcrypt runs once for a user's right password, and every time for a wrong one."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(hashed_password)
        return real(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    users = {"alice": hashed("right").encode()}
    auth = BasicAuth()
    assert auth.check(users, basic("alice", "right"))
    assert auth.check(users, basic("alice", "right"))
    assert len(calls) == 1
    assert not auth.check(users, basic("alice", "wrong"))
    assert not auth.check(users, basic("alice", "wrong"))
    assert len(calls) == 3
    # A new hash for the same user and password misses the cache.
    assert auth.check({"alice": hashed("right").encode()}, basic("alice", "right"))
    assert len(calls) == 4


def test_unknown_user_pays_for_a_real_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown user is checked against a configured hash, so timing hides who exists."""
    seen: list[bytes] = []

    def says_yes(password: bytes, hashed_password: bytes) -> bool:
        seen.append(hashed_password)
        return True

    monkeypatch.setattr(bcrypt, "checkpw", says_yes)
    cheap = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4))
    costly = bcrypt.hashpw(b"y", bcrypt.gensalt(rounds=5))
    users = {"a": cheap, "b": costly}
    assert not BasicAuth().check(users, basic("mallory", "y"))  # even though checkpw said yes
    assert seen == [costly]


def test_cache_is_bounded() -> None:
    users = {f"u{i}": hashed("pw").encode() for i in range(4)}
    auth = BasicAuth(cache_size=2)
    for user in users:
        assert auth.check(users, basic(user, "pw"))
    assert len(auth._cache) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("alice", "p:w"), ("alice", b"p:w")),
        ("basic " + base64.b64encode(b"a:").decode(), ("a", b"")),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
        ("Digest abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_basic(header: str | None, expected: tuple[str, bytes] | None) -> None:
    assert parse_basic(header) == expected


def test_long_password_is_refused_not_an_error() -> None:
    """bcrypt 5 raises on passwords over 72 bytes; that is a wrong password, not a 500."""
    users = {"alice": hashed("right").encode()}
    assert not BasicAuth().check(users, basic("alice", "x" * 100))
