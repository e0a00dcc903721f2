"""The web config as of each new connection: re-read when its file, or a file it names, changes.

exporter-toolkit re-reads the web config on every connection; that is what lets cert-manager
or certbot replace a certificate, or an operator revoke a user, without restarting anything.
Parsing YAML and loading keys for every connection is needless work, so per connection the
files are only read and hashed (a few kilobytes, microseconds), and parsed again when a digest
changed. Contents, not modification times: two writes within one clock tick of the file
system, with the same size, would look unchanged to ``stat()``.

A file that turns invalid fails closed, as in exporter-toolkit: handshakes keep the last good
certificate, but every request is answered 500 until the file is fixed. Carrying on with the
old users would silently keep a user someone just meant to revoke. Switching TLS on or off
needs a restart (the listener's scheme is fixed), so such an edit also counts as invalid.
An invalid file is not parsed again per connection either: only once a file the failed load
read (the config file, or a certificate it names) changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from exporter.web.config import WebConfig, WebConfigError, load_web_config

log = logging.getLogger(__name__)

Signature = tuple[bytes | None, ...]


@dataclass(frozen=True)
class Snapshot:
    """What one connection is served with; ``error`` set means "answer 500, file invalid"."""

    config: WebConfig
    error: str | None = None


def _signature(paths: tuple[Path, ...]) -> Signature:
    """A digest of each file's content (``None`` for a file that cannot be read)."""
    digests: list[bytes | None] = []
    for path in paths:
        try:
            digests.append(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digests.append(None)
    return tuple(digests)


def _load(path: Path) -> tuple[WebConfig, Signature]:
    """The config in ``path`` and the signature of every file it was built from. The config
    file is hashed before it is parsed, so an edit landing during the parse shows next time.
    A ``WebConfigError`` carries the signature of the files read up to the problem."""
    before = _signature((path,))
    try:
        config = load_web_config(path)
    except WebConfigError as err:
        err.signature = before + _signature(err.files[1:])
        raise
    return config, before + _signature(config.files[1:])


class WebConfigSource:
    """Loads the file once at start-up (raising ``WebConfigError``), then per ``current()``."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._logged_error: str | None = None
        self._signature: Signature = ()
        # While the file is invalid: what the failed load read, and its signature then. Each
        # connection hashes them and loads again only when one changed: an invalid file
        # costs a client no more than a valid one (no YAML, no key loading per connection).
        self._failed: tuple[tuple[Path, ...], Signature] = ((), ())
        if self.path is None:
            self._snapshot = Snapshot(WebConfig())
        else:
            config, self._signature = _load(self.path)
            self._snapshot = Snapshot(config)
        self.initial = self._snapshot.config

    @property
    def initial_tls(self) -> bool:
        """Whether the listener speaks TLS (fixed for the life of the server)."""
        return self.initial.tls is not None

    def current(self) -> Snapshot:
        """The snapshot for a new connection, re-reading the files first if any changed."""
        if self.path is None:
            return self._snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot.error is None and _signature(snapshot.config.files) == self._signature:
                return snapshot
            failed_files, failed_signature = self._failed
            if snapshot.error is not None and _signature(failed_files) == failed_signature:
                return snapshot
            try:
                config, signature = _load(self.path)
                if (config.tls is not None) != self.initial_tls:
                    err = WebConfigError(
                        self.path, "tls_server_config", "turning TLS on or off needs a restart",
                        config.files,
                    )  # fmt: skip
                    err.signature = signature
                    raise err
            except WebConfigError as err:
                # Keep the last good config for TLS handshakes; requests get 500.
                self._failed = (err.files, err.signature)
                self._snapshot = Snapshot(snapshot.config, error=str(err))
                if str(err) != self._logged_error:
                    self._logged_error = str(err)
                    log.error("web config re-read failed, answering 500 until fixed: %s", err)
                return self._snapshot
            self._snapshot = Snapshot(config)
            self._signature = signature
            self._logged_error = None
            log.info(
                "web config re-read",
                extra={"fields": {"file": str(self.path), "users": len(config.users)}},
            )
            return self._snapshot
