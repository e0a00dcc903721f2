"""Basic auth and the configured extra headers, wrapped around every route.

As in exporter-toolkit, basic auth covers every endpoint (404s included) and passwords are
bcrypt hashes. bcrypt is slow on purpose, 50-250 ms of CPU per check at the usual costs, and
paying that on every scrape would cost a core-minute an hour per Prometheus server, so a
*successful* check is remembered. The cache is keyed by an HMAC of user, hash and password
under a random per-process key, so it never holds a password in the clear, and a changed hash
in the file misses the cache by construction. Failures are never cached: every wrong guess pays
the full bcrypt price. Only one bcrypt check runs at a time (exporter-toolkit does the same),
so a flood of wrong passwords costs one core, not all of them.

An unknown user is checked against a real configured hash of the highest cost, so the answer
time does not tell which user names exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import bcrypt

from exporter.web.source import Snapshot
from exporter.web.wsgi import Environ, StartResponse, WsgiApp, respond

SNAPSHOT_KEY = "exporter.web.snapshot"
REALM = "ollama-probe-exporter"
CACHE_SIZE = 256


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """``(user, password)`` from an ``Authorization: Basic …`` header, else ``None``."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
        user, sep, password = raw.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


class BasicAuth:
    """Checks credentials against ``user: bcrypt hash`` maps; thread-safe."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def _cache_key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        parts = (user.encode(), hashed, password)
        message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def check(self, users: Mapping[str, bytes], header: str | None) -> bool:
        """Whether ``header`` carries a configured user and that user's password."""
        credentials = parse_basic(header)
        if credentials is None or not users:
            return False
        user, password = credentials
        known = user in users
        hashed = users[user] if known else max(users.values(), key=_cost)
        key = self._cache_key(user, hashed, password)
        if known:
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return True
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password, hashed)
            except ValueError:  # e.g. a password over bcrypt's 72-byte limit
                ok = False
        if not (ok and known):
            return False
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return True


def protect(app: WsgiApp, auth: BasicAuth) -> WsgiApp:
    """``app`` behind the connection's web config: 500 while the file is invalid, 401 without
    valid credentials when users are configured, and the extra headers on every answer."""

    def guarded(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        snapshot: Snapshot = environ[SNAPSHOT_KEY]
        extra = snapshot.config.headers

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start(status, [*headers, *extra], exc_info)

        if snapshot.error is not None:
            # The reason is in the log; an unauthenticated client learns nothing from it.
            body = "the web config file is invalid; see the exporter's log\n"
            return respond(start_with_headers, "500 Internal Server Error", body)
        users = snapshot.config.users
        if users and not auth.check(users, environ.get("HTTP_AUTHORIZATION")):
            challenge = ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
            return respond(
                start_with_headers, "401 Unauthorized", "Unauthorized\n", headers=[challenge]
            )
        return app(environ, start_with_headers)

    return guarded
