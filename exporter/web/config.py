"""The web config file (``--web.config.file``): TLS, basic auth and extra response headers.

The format is the exporter-toolkit one that Prometheus and the Go exporters share, so one file
(and one habit) serves every exporter on a host. Keys this server cannot honour are refused
rather than ignored: a ``cipher_suites`` list that silently did nothing would be worse than an
error at start-up. Every problem is reported as one line naming the file and the key.

Relative paths resolve against the folder of the web config file, as in exporter-toolkit, so
the file and its certificates can move together.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
# Python's ssl module verifies every client certificate it asks for, so "ask, but accept
# anything" cannot be expressed; refuse it instead of silently verifying or not asking.
_UNVERIFIED_CLIENT_AUTH = ("RequireAnyClientCert", "RequireClientCert")
_VERIFY_MODES = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    # The exporter never looks at a client certificate, so asking for one without verifying
    # it changes nothing; Python cannot ask without verifying, so it does not ask.
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit allows exactly these headers; a tuple lists the only values allowed.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Strict-Transport-Security": (),
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": (),
        "Content-Security-Policy": (),
    }
)
_TLS_STRINGS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
)
# prefer_server_cipher_suites is accepted and ignored, as Go itself now ignores it.
_TLS_KEYS = {*_TLS_STRINGS, "prefer_server_cipher_suites"}
_TLS_UNSUPPORTED = {
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
}
_HTTP_KEYS = {"headers", "http2"}  # http2 is accepted; this server always speaks HTTP/1
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit"}
_BCRYPT = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


class WebConfigError(Exception):
    """An unusable web config file; ``str()`` is one line naming the file and the key."""

    def __init__(self, path: Path, key: str, problem: str, files: tuple[Path, ...] = ()) -> None:
        self.path, self.key, self.problem = path, key, problem
        # The files read up to the problem (the config file first): the load's outcome
        # depends on them alone, so while none changes, loading again fails the same way.
        self.files = files or (path,)
        self.signature: tuple[bytes | None, ...] = ()  # their digests (set by the source)
        where = f"{key}: " if key else ""
        super().__init__(f"web config {path}: {where}{problem}")


@dataclass(frozen=True)
class TlsSettings:
    """``tls_server_config`` with paths resolved; ``context`` is ready for handshakes."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    client_auth_type: str
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    context: ssl.SSLContext = field(compare=False, repr=False)


@dataclass(frozen=True)
class WebConfig:
    """One valid web config. ``WebConfig()`` is the open default: plain HTTP, no auth."""

    path: Path | None = None
    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this config was built from; a change to any of them means a re-read."""
        named: list[Path] = [] if self.path is None else [self.path]
        if self.tls is not None:
            named += [self.tls.cert_file, self.tls.key_file]
            if self.tls.client_ca_file is not None:
                named.append(self.tls.client_ca_file)
        return tuple(named)


class _Reader:
    """Turns the parsed YAML into a ``WebConfig``, failing on the first problem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.absolute().parent
        self.named: list[Path] = [path]  # every file the config names, as it is read

    def fail(self, key: str, problem: str) -> WebConfigError:
        return WebConfigError(self.path, key, problem, tuple(self.named))

    def section(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def keys(
        self, data: Mapping[Any, Any], prefix: str, known: set[str], refused: set[str]
    ) -> None:
        for key in data:
            name = f"{prefix}{key}"
            if key in refused:
                raise self.fail(name, "not supported by this exporter")
            if key not in known:
                raise self.fail(name, "unknown key")

    def string(self, data: Mapping[str, Any], key: str, name: str) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {type(value).__name__}")
        return value

    def file(self, value: str, name: str) -> Path:
        path = Path(value)
        if not path.is_absolute():
            path = self.folder / path
        self.named.append(path)
        if not path.exists():
            raise self.fail(name, f"no such file: {path}")
        if not path.is_file():
            raise self.fail(name, f"not a file: {path}")
        return path

    def read(self, data: Mapping[str, Any]) -> WebConfig:
        self.keys(data, "", _TOP_KEYS, _TOP_UNSUPPORTED)
        return WebConfig(
            path=self.path,
            tls=self.tls(self.section(data, "tls_server_config")),
            users=self.users(data.get("basic_auth_users")),
            headers=self.headers(self.section(data, "http_server_config")),
        )

    def tls(self, data: dict[str, Any]) -> TlsSettings | None:
        prefix = "tls_server_config."
        self.keys(data, prefix, _TLS_KEYS, _TLS_UNSUPPORTED)
        text = {k: self.string(data, k, prefix + k) for k in _TLS_STRINGS}
        if not any(
            text[k] for k in ("cert_file", "key_file", "client_ca_file", "client_auth_type")
        ):
            return None  # no TLS keys set: plain HTTP, as in exporter-toolkit
        for key in ("cert_file", "key_file"):
            if not text[key]:
                raise self.fail(prefix + key, "required when TLS is configured")
        cert = self.file(text["cert_file"], prefix + "cert_file")
        key_file = self.file(text["key_file"], prefix + "key_file")
        ca = (
            self.file(text["client_ca_file"], prefix + "client_ca_file")
            if text["client_ca_file"]
            else None
        )
        auth = text["client_auth_type"]
        low = self.version(text["min_version"] or "TLS12", prefix + "min_version")
        high = self.version(text["max_version"] or "TLS13", prefix + "max_version")
        if low > high:
            label = {v: k for k, v in TLS_VERSIONS.items()}
            problem = f"{label[low]} is above max_version {label[high]}"
            raise self.fail(prefix + "min_version", problem)
        context = self.context(
            cert=cert, key=key_file, ca=ca, auth=auth, min_version=low, max_version=high
        )
        return TlsSettings(cert, key_file, ca, auth or "NoClientCert", low, high, context)

    def version(self, value: str, name: str) -> ssl.TLSVersion:
        if value not in TLS_VERSIONS:
            choices = ", ".join(TLS_VERSIONS)
            raise self.fail(name, f"unknown TLS version {value!r}; expected one of {choices}")
        return TLS_VERSIONS[value]

    def context(
        self,
        *,
        cert: Path,
        key: Path,
        ca: Path | None,
        auth: str,
        min_version: ssl.TLSVersion,
        max_version: ssl.TLSVersion,
    ) -> ssl.SSLContext:
        prefix = "tls_server_config."
        if auth in _UNVERIFIED_CLIENT_AUTH:
            raise self.fail(
                prefix + "client_auth_type",
                f"{auth} is not supported: Python's ssl module verifies every client "
                "certificate it requests; use RequireAndVerifyClientCert with client_ca_file",
            )
        if auth not in _VERIFY_MODES:
            raise self.fail(
                prefix + "client_auth_type",
                f"unknown value {auth!r}; expected one of {', '.join(CLIENT_AUTH_TYPES)}",
            )
        mode = _VERIFY_MODES[auth]
        if ca is not None and auth in ("", "NoClientCert"):
            raise self.fail(
                prefix + "client_ca_file",
                "set, but client_auth_type does not ask for client certificates",
            )
        if ca is None and mode != ssl.CERT_NONE:
            raise self.fail(prefix + "client_ca_file", f"required with client_auth_type {auth}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.minimum_version = min_version
            context.maximum_version = max_version
        except (ValueError, ssl.SSLError) as err:
            raise self.fail(
                prefix + "min_version", f"not available in this OpenSSL: {err}"
            ) from err
        try:
            context.load_cert_chain(certfile=cert, keyfile=key)
        except (ssl.SSLError, OSError) as err:
            raise self.fail(
                prefix + "cert_file", f"cannot load {cert} with key_file {key}: {_reason(err)}"
            ) from err
        if ca is not None:
            try:
                context.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as err:
                raise self.fail(
                    prefix + "client_ca_file",
                    f"cannot load CA certificates from {ca}: {_reason(err)}",
                ) from err
        context.verify_mode = mode
        context.set_alpn_protocols(["http/1.1"])
        return context

    def users(self, data: Any) -> Mapping[str, bytes]:
        if data is None:
            return MappingProxyType({})
        if not isinstance(data, dict):
            raise self.fail(
                "basic_auth_users",
                f"expected a mapping of user: bcrypt hash, got {type(data).__name__}",
            )
        users: dict[str, bytes] = {}
        for raw_user, hashed in data.items():
            if isinstance(raw_user, bool) or not isinstance(raw_user, str | int):
                raise self.fail("basic_auth_users", f"user name {raw_user!r} is not a string")
            user = str(raw_user)
            name = f"basic_auth_users.{user}"
            if not user or ":" in user:
                raise self.fail(name, "a user name must be non-empty and contain no ':'")
            if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
                raise self.fail(name, "not a bcrypt hash (expected $2y$<cost>$ and 53 characters)")
            users[user] = hashed.encode()
        return MappingProxyType(users)

    def headers(self, data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        self.keys(data, "http_server_config.", _HTTP_KEYS, set())
        headers = data.get("headers") or {}
        if not isinstance(headers, dict):
            raise self.fail("http_server_config.headers", "expected a mapping of header: value")
        canonical = {h.lower(): h for h in ALLOWED_HEADERS}
        out: list[tuple[str, str]] = []
        for header, value in headers.items():
            name = f"http_server_config.headers.{header}"
            known = canonical.get(str(header).lower())
            if known is None:
                raise self.fail(
                    name, f"this header cannot be configured; allowed: {', '.join(ALLOWED_HEADERS)}"
                )
            if not isinstance(value, str) or not _HEADER_VALUE.match(value):
                raise self.fail(name, "the value must be a string without control characters")
            allowed = ALLOWED_HEADERS[known]
            if allowed and value not in allowed:
                raise self.fail(
                    name, f"invalid value {value!r}; expected one of {', '.join(allowed)}"
                )
            out.append((known, value))
        return tuple(out)


def _reason(err: Exception) -> str:
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate the file, certificates and keys included; raise ``WebConfigError``."""
    path = Path(path)
    reader = _Reader(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise reader.fail("", "no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise reader.fail("", f"cannot read: {_reason(err)}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise reader.fail("", f"invalid YAML: {where}{problem}") from err
    if data is None:
        return WebConfig(path=path)
    if not isinstance(data, dict):
        raise reader.fail("", f"expected a mapping at the top, got {type(data).__name__}")
    return reader.read(data)
