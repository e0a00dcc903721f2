"""Basic auth, extra headers and re-reading the web config, over loopback HTTP."""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from exporter.web import WebServer, make_app, source
from exporter.web.auth import BasicAuth, parse_basic
from exporter.web.config import WebConfig, load_web_config
from tests.test_web import hooks

ROUNDS = 4  # the cheapest cost bcrypt allows: the tests check logic, not hardness


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=ROUNDS)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def fetch(url: str, authorization: str | None = None) -> tuple[int, str, Any]:
    """GET with an optional Authorization header: (status, body, headers), never raising."""
    headers = {} if authorization is None else {"Authorization": authorization}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers


def replace(path: Path, text: str) -> None:
    """Write as operators should: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def users_yaml(**users: str) -> str:
    lines = "".join(f"  {u}: '{hashed(p)}'\n" for u, p in users.items())
    return (
        f"basic_auth_users:\n{lines}"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )


@pytest.fixture
def web_config(tmp_path: Path) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(users_yaml(alice="right"))
    return path


@pytest.fixture
def server(web_config: Path) -> Iterator[WebServer]:
    web = WebServer(
        "127.0.0.1", 0, make_app(CollectorRegistry(), hooks()), web_config_file=web_config
    )
    web.start()
    yield web
    web.close()


@pytest.mark.parametrize("path", ["/metrics", "/", "/-/healthy", "/nope"])
def test_every_endpoint_needs_credentials(server: WebServer, path: str) -> None:
    status, _, headers = fetch(server.url + path)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_right_password_200_wrong_401(server: WebServer) -> None:
    assert server.basic_auth
    status, body, headers = fetch(server.url + "/metrics", basic("alice", "right"))
    assert status == 200
    assert "python_info" not in body  # the test registry: empty, but served
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(server.url + "/", basic("alice", "right"))[0] == 200
    assert fetch(server.url + "/metrics", basic("alice", "wrong"))[0] == 401
    assert fetch(server.url + "/metrics", basic("bob", "right"))[0] == 401
    assert fetch(server.url + "/metrics", "Bearer abc")[0] == 401


def test_file_is_re_read_when_it_changes(
    server: WebServer, web_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new password applies to the next connection; an invalid file fails closed (500,
    one log line) until it is fixed; no restart at any point."""
    assert fetch(server.url + "/metrics", basic("alice", "right"))[0] == 200
    replace(web_config, users_yaml(alice="new"))
    assert fetch(server.url + "/metrics", basic("alice", "right"))[0] == 401
    assert fetch(server.url + "/metrics", basic("alice", "new"))[0] == 200

    caplog.set_level(logging.ERROR, logger="exporter.web.source")
    replace(web_config, "basic_auth_users:\n  alice: plaintext\n")
    status, body, _ = fetch(server.url + "/metrics", basic("alice", "new"))
    assert status == 500
    assert "web config file is invalid" in body
    assert "plaintext" not in body
    assert fetch(server.url + "/metrics")[0] == 500
    failures = [r for r in caplog.records if "re-read failed" in r.getMessage()]
    assert len(failures) == 1
    assert "basic_auth_users.alice" in failures[0].getMessage()

    replace(web_config, "")  # auth removed: open again
    assert fetch(server.url + "/metrics")[0] == 200


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


def test_an_invalid_file_is_loaded_again_only_when_a_file_it_read_changes(
    web_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the file is invalid, connections hash what the failed load read instead of
    parsing it again; editing the file, or creating a file it names, loads it again."""
    loads: list[Path] = []
    real = load_web_config

    def counting(path: str | os.PathLike[str]) -> WebConfig:
        loads.append(Path(path))
        return real(path)

    monkeypatch.setattr(source, "load_web_config", counting)
    web = source.WebConfigSource(web_config)
    replace(web_config, "basic_auth_users: [\n")  # not YAML
    for _ in range(3):
        assert web.current().error is not None
    assert len(loads) == 2  # start-up, then the first connection after the edit

    cert = web_config.parent / "later.pem"
    replace(web_config, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n")
    assert "no such file" in (web.current().error or "")
    assert "no such file" in (web.current().error or "")
    assert len(loads) == 3
    cert.write_text("not a certificate\n")  # the named file appears: loaded again
    error = web.current().error or ""
    assert len(loads) == 4
    assert "no such file" not in error

    replace(web_config, users_yaml(alice="right"))
    assert web.current().error is None
    assert len(loads) == 5
