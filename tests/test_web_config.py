"""The web config file: one clear line per problem, and nothing bound when the file is bad.

Checks that need real certificates live in test_web_tls.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.web import WebConfigError, WebServer, load_web_config, make_app
from exporter.web import server as server_module
from tests.test_web import hooks

# bcrypt of "secret" at cost 4, fixed so test ids are the same in every process.
HASH = "$2b$04$bYjrsbx6I0rErGg5M.LoWueTVsd6WOHtGY4pf07Lad6GP8eUuSgNG"


def write(tmp_path: Path, text: str, name: str = "web.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problem(path: Path) -> str:
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"web config {path}: ")
    return message.removeprefix(f"web config {path}: ")


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config.tls is None
    assert not config.users
    assert config.headers == ()


def test_missing_cert_file_names_key_and_resolved_path(tmp_path: Path) -> None:
    """Relative paths resolve against the config file's folder, not the working directory."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder, "tls_server_config:\n  cert_file: certs/a.pem\n  key_file: certs/a.key\n")
    assert problem(path) == f"tls_server_config.cert_file: no such file: {folder / 'certs/a.pem'}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  key_file: a.key\n", "tls_server_config.cert_file: required"),
        (
            "tls_server_config:\n  cipher_suites: [x]\n",
            "tls_server_config.cipher_suites: not supported",
        ),
        ("tls_server_config:\n  cert_fil: a\n", "tls_server_config.cert_fil: unknown key"),
        ("tls_server_config: [1]\n", "tls_server_config: expected a mapping"),
        ("rate_limit: {burst: 1}\n", "rate_limit: not supported"),
        ("basic_auth_user: {}\n", "basic_auth_user: unknown key"),
        ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
        (f"basic_auth_users:\n  'a:b': '{HASH}'\n", "basic_auth_users.a:b: a user name must"),
        ("basic_auth_users: [alice]\n", "basic_auth_users: expected a mapping"),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "http_server_config.headers.Server: this header cannot be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options: invalid value 'allow'",
        ),
        (
            "http_server_config:\n  headers:\n    Content-Security-Policy: 1\n",
            "http_server_config.headers.Content-Security-Policy: the value must be a string",
        ),
        ("http_server_config:\n  http3: true\n", "http_server_config.http3: unknown key"),
        ("a: [\n", "invalid YAML: line 2"),
        ("- 1\n", "expected a mapping at the top"),
    ],
)
def test_problems_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert problem(write(tmp_path, text)).startswith(expected)


def test_missing_file(tmp_path: Path) -> None:
    assert problem(tmp_path / "absent.yml") == "no such file"


def test_accepted_settings(tmp_path: Path) -> None:
    """Users (numeric names too), allowed headers in any case, http2 accepted and ignored."""
    path = write(
        tmp_path,
        f"basic_auth_users:\n  alice: '{HASH}'\n  123: '{HASH}'\n"
        "http_server_config:\n  http2: false\n  headers:\n"
        "    x-frame-options: deny\n    Strict-Transport-Security: max-age=31536000\n",
    )
    config = load_web_config(path)
    assert set(config.users) == {"alice", "123"}
    assert config.users["alice"] == HASH.encode()
    assert config.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert config.files == (path,)


def test_bad_file_never_binds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation happens before the listener exists: binding would be a test failure."""

    def no_bind(self: object) -> None:
        raise AssertionError("bound a port with an invalid web config")

    monkeypatch.setattr(server_module._BoundedServer, "server_bind", no_bind)
    bad = write(tmp_path, "basic_auth_users:\n  alice: plaintext\n")
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.alice"):
        WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks()), web_config_file=bad)
