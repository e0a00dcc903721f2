"""Checks and conversions of single config values, each a plain function with its own messages."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import SecretStr

from exporter.config.sources import read_text

DEFAULT_PROMPT = "Tell a long story about the sea."
DEFAULT_OPTIONS: Mapping[str, Any] = {"temperature": 0, "seed": 42}
# Options the runner is started with: a value that differs from the loaded runner's makes Ollama
# evict and reload the model for every user of the server.
LOAD_TIME_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"}
)
THINK_LEVELS = ("low", "medium", "high")
# The context Ollama gives a model when nothing sets num_ctx (OLLAMA_CONTEXT_LENGTH can change
# it on the server): a longer prompt is cut to fit, and prefill is then measured on less.
DEFAULT_NUM_CTX = 4096
# Options that /v1/chat/completions takes as top-level fields; the others have no field there.
OPENAI_OPTIONS = frozenset(
    {"temperature", "seed", "top_p", "stop", "frequency_penalty", "presence_penalty"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 token: what a header name may consist of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The prober sets these itself; Accept-Encoding must stay "identity" or a compressing proxy
# batches chunks and distorts time to first token.
_RESERVED_HEADERS = frozenset({"accept-encoding", "content-length", "transfer-encoding"})
_SECRET_FORMS = "a header value is a string, {env: VAR_NAME} or {file: /path/to/secret}"

# The load in progress: the mapping ``{env: VAR}`` headers read, and the config file's folder that
# relative paths start from. BaseSettings' __init__ validates without a validation context (it is
# lost even through ``model_validate(data, context=...)``), so the loader sets this around it.
CURRENT_LOAD: ContextVar[tuple[Mapping[str, str], Path | None]] = ContextVar(
    "exporter_config_load", default=(os.environ, None)
)


def resolve_path(path: Path) -> Path:
    """Resolve ``~`` and make a relative path relative to the config file's folder."""
    path = path.expanduser()
    base = CURRENT_LOAD.get()[1]
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def existing_file(path: Path) -> Path:
    """Resolve a path as ``resolve_path`` does, and check that it names a file."""
    path = resolve_path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _split_http_url(value: str) -> SplitResult:
    """Split an http(s) URL and reject what no Ollama endpoint or proxy URL can have."""
    if any(char.isspace() for char in value):
        raise ValueError("must not contain whitespace")
    if "://" not in value:
        raise ValueError("must start with http:// or https://")
    parts = urlsplit(value)
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise ValueError(f"scheme must be http or https, got '{parts.scheme}'")
    try:
        parts.port  # noqa: B018 - evaluated for its ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"invalid port: {exc}") from None
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query (?) or fragment (#)")
    return parts


def _host(parts: SplitResult) -> str:
    hostname = parts.hostname or ""
    return f"[{hostname}]" if ":" in hostname else hostname


def _netloc(parts: SplitResult) -> str:
    return _host(parts) if parts.port is None else f"{_host(parts)}:{parts.port}"


def canonical_url(value: str) -> str:
    """Return ``scheme://host[:port][/prefix]``: lower-case, no trailing slash, prefix kept.

    One canonical form gives stable label values and lets the client append ``/api/generate``
    without doubling or losing a slash (pydantic's ``HttpUrl`` would add a trailing one).
    """
    parts = _split_http_url(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials: send them as a header (Authorization)")
    return f"{parts.scheme.lower()}://{_netloc(parts)}{parts.path.rstrip('/')}"


def default_target_name(value: str) -> str:
    """Derive ``host:port`` from a target URL, with the scheme's port when none is given."""
    parts = urlsplit(canonical_url(value))
    return f"{_host(parts)}:{parts.port or _DEFAULT_PORTS[parts.scheme]}"


def check_proxy_url(value: str) -> str:
    """Accept an explicit http(s) proxy URL; credentials are allowed (and hidden when printed)."""
    parts = _split_http_url(value)
    if parts.path not in ("", "/"):
        raise ValueError("a proxy URL has no path")
    return value


def redact_url(value: str) -> str:
    """Drop any ``user:password@`` from a URL, for summaries and logs."""
    parts = urlsplit(value)
    if parts.username is None and parts.password is None:
        return value
    return parts._replace(netloc=f"***@{_netloc(parts)}").geturl()


def check_header_name(name: str) -> str:
    """Refuse names that are not HTTP tokens or that the prober must control itself."""
    if not _HEADER_NAME_RE.fullmatch(name):
        raise ValueError("not a valid HTTP header name")
    if name.lower() in _RESERVED_HEADERS:
        raise ValueError("set by the exporter itself; it cannot be configured")
    return name


def resolve_secret(value: object) -> object:
    """Turn a header value (string, ``{env: VAR}`` or ``{file: path}``) into a ``SecretStr``.

    At load time, so that a missing variable or file, or a value no HTTP client would send, is a
    config error and not a failed probe later. No message here contains the secret itself.
    """
    if isinstance(value, SecretStr):  # already resolved, e.g. a model re-validated
        text = value.get_secret_value()
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("env", "file"):
        ((kind, ref),) = value.items()
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError(f"{kind}: must be a non-empty string")
        environ = CURRENT_LOAD.get()[0]
        if kind == "env" and ref not in environ:
            raise ValueError(f"environment variable {ref} is not set")
        text = environ[ref] if kind == "env" else read_text(resolve_path(Path(ref))).rstrip("\r\n")
    else:
        raise ValueError(_SECRET_FORMS)
    if problem := _unsendable(text):
        raise ValueError(f"header value {problem}")
    return value if isinstance(value, SecretStr) else SecretStr(text)


def _unsendable(text: str) -> str | None:
    """What makes a header value unsendable, in words that do not quote it; first match wins.

    RFC 9110 allows no whitespace at either end and no control character but an inner tab: h11
    refuses such a value on every request, quoting it in the error. httpx encodes header values
    as ASCII and fails on anything else when the client is built. Usual culprits: a token file
    saved "with BOM" or ending in a space or tab.
    """
    problems = {
        "is empty": not text,
        "must not contain a line break": "\r" in text or "\n" in text,
        "starts with a byte order mark (U+FEFF, as in a file saved as UTF-8 with BOM)": (
            text.startswith("\ufeff")
        ),
        "has leading whitespace": text[:1].isspace(),
        "has trailing whitespace": text[-1:].isspace(),
        "contains a control character": any((c < " " and c != "\t") or c == "\x7f" for c in text),
        "contains a non-ASCII character (header values are sent as ASCII)": not text.isascii(),
    }
    return next((problem for problem, found in problems.items() if found), None)


def parse_think(value: object) -> object:
    """Accept what Ollama accepts for ``think`` (and "true"/"false", for env), in one message.

    pydantic's lax union would take ``1`` or ``"yes"`` as ``True``, and report three errors.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in THINK_LEVELS:
            return word
        if word in ("true", "false"):
            return word == "true"
    raise ValueError(f"must be true, false, null, 'low', 'medium' or 'high', got {value!r}")


def check_prompt(prompt: str) -> str:
    """Refuse an empty prompt: Ollama reads it as a load-only request, which never streams."""
    if not prompt.strip():
        raise ValueError(
            "must not be empty: an empty prompt is an Ollama load-only request that never streams"
        )
    return prompt


def check_option_name(name: str) -> str:
    """Refuse ``num_predict``: the profile's ``max_tokens`` is the one source of that number."""
    if name == "num_predict":
        raise ValueError("use max_tokens instead (it is sent as options.num_predict)")
    return name


# A Go duration, as Ollama's ``keep_alive`` reads a string: "5m", "1h30m", "-1s", "500ms".
GO_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h))+|[-+]?0")
_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def check_keep_alive(value: object) -> object:
    """Accept what Ollama's ``keep_alive`` accepts, unchanged: it is sent as written.

    A number is seconds; a string is a Go duration ("5m", "-1s"); Ollama answers 400 to
    anything else (``"300"`` has no unit), so that is a config error here.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {value!r}")
        return value
    if isinstance(value, str) and GO_DURATION_RE.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(
        f'must be a number of seconds or a duration such as "5m" or "-1s", got {value!r}'
    )


def keep_alive_seconds(value: str | float) -> float:
    """Seconds of a valid ``keep_alive``, number or ``GO_DURATION_RE`` string (< 0: for ever)."""
    if not isinstance(value, str):
        return float(value)
    sign = -1.0 if value.startswith("-") else 1.0
    parts = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)", value)
    return sign * sum(float(number) * _GO_UNITS_S[unit] for number, unit in parts)


HUGE_INT = (
    "integers must be within ±(2^53-1): larger ones lose their value in JSON readers (RFC 8259 §6)"
)


def has_huge_int(value: object) -> bool:
    """Whether an option value holds an integer that a float64 JSON reader cannot keep exact."""
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 2**53 - 1
    if isinstance(value, Mapping):
        return any(has_huge_int(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_huge_int(item) for item in value)
    return False


# Durations as people write them: ``500ms``, ``30s``, ``5m``, ``1h`` or seconds (pydantic's
# ``timedelta`` reads numbers and ISO 8601), as float seconds, the unit the scheduler and
# ``asyncio.timeout`` want. At most 30 days: ``99999999999999h`` must fail here, not as an
# ``OverflowError`` in the scheduler later.
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A sign is accepted so that "-5s" is reported as "must be > 0" rather than as unparseable.
_DURATION_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)?")
_HINT = "use a number of seconds or <number>ms|s|m|h"
MAX_DURATION_S = 30 * 24 * 3600.0


def parse_duration(value: object) -> float:
    """Return ``value`` as float seconds; raise ``ValueError`` unless 0 < duration <= 30 days.

    Not a boolean, although ``True`` is an ``int``: ``interval: on`` must not mean one second.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration '{value}': {_HINT}")
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"invalid duration '{value}': {_HINT}")
        number, unit = match.groups()
        seconds = float(number) * _UNIT_SECONDS[unit or "s"]
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration '{value}': {_HINT}")
    if seconds <= 0:
        raise ValueError(f"duration must be > 0, got '{value}'")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration must be at most 720h (30 days), got '{value}'")
    return seconds


def format_duration(seconds: float) -> str:
    """Render float seconds in the shortest form ``parse_duration`` reads back (for summaries)."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    millis = seconds * 1000
    if seconds < 1 and abs(millis - round(millis)) < 1e-9:
        return f"{round(millis)}ms"
    return f"{seconds:g}s"
