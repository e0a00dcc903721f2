"""Header secrets never leave the process: a canary value in ``Authorization`` is grepped for
in every output, while a server does its best to echo it back.

The header value comes from the config inline, from ``{env: VAR}`` and from ``{file: PATH}``
(one target each), and from ``probe --header 'Authorization: env:VAR'``. The server is a raw
asyncio one of our own that quotes the request's headers wherever a server's words end up in
the exporter's output: a 401 JSON error, a 500 plain-text page, a 400 that rejects the value,
an ``{"error": …}`` line inside a 200 stream, a status line, a line that is not JSON, and a
body cut by the exporter's own quoting limits right through the value. Every output is
searched: the daemon's logs at debug level in both formats, ``/metrics``, ``/``,
``--config.check``, and ``probe --json``'s stdout and stderr.

Each echo also carries a marker that must show up, so a test cannot pass because the echo
never reached the output.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.clock import SystemClock
from exporter.ollama.client import OllamaClient
from exporter.result import ELLIPSIS, REDACTED, redact
from exporter.workload import run_streams, take_inventory
from tests.hostile.server import (
    JSON,
    HostileServer,
    Request,
    fixed,
    line,
    send,
    stream,
    text_line,
)
from tests.support.jobs import make_settings
from tests.support.processes import child_env, exporter_process, http_get

MARKER = "echo-marker"
ENV_VAR = "PROBE_TEST_TOKEN"
# Every way the echo server can fail a probe, by model name.
BEHAVIOURS = (
    "unauthorized",  # 401, Ollama-style JSON error quoting the header
    "server-error",  # 500, a plain-text page listing the request's headers
    "rejected",  # 400, the value refused and quoted back
    "stream-error",  # 200 stream, then an error line quoting the headers
    "status-line",  # the status line is the header value: the HTTP parser quotes it
    "bad-line",  # 200 stream with a line that is not JSON, cut through the value
    "cut-body",  # 500 plain text whose first 200 bytes end inside the value
)


# --- the redaction itself -------------------------------------------------------------------


def test_redact_replaces_every_form_of_the_value() -> None:
    value = 'Bearer a"b\\c'
    text = f"raw {value} json {json.dumps(value)[1:-1]} repr {value.encode()!r}"
    assert redact(text, [value]) == f"raw {REDACTED} json {REDACTED} repr b'{REDACTED}'"


def test_redact_removes_the_head_of_a_value_cut_short() -> None:
    """A quote cut inside the value (at an ellipsis, or at the very end) leaves its head."""
    value = "Bearer 0123456789abcdef"
    assert (
        redact(f"line: Bearer 0123{ELLIPSIS} more", [value]) == f"line: {REDACTED}{ELLIPSIS} more"
    )
    assert redact("HTTP 500: token Bearer 01234", [value]) == f"HTTP 500: token {REDACTED}"
    assert redact("ends with Bear", [value]) == f"ends with {REDACTED}"
    assert redact("ends with Bea", [value]) == "ends with Bea"  # too short to tell
    # The longest head there is (all but the last character), among many cuts.
    dots = ELLIPSIS * 50
    assert redact(f"{dots}{value[:-1]}{dots}", [value]) == f"{dots}{REDACTED}{dots}"
    assert redact(dots, [value]) == dots


def test_short_values_and_empty_text_are_left_alone() -> None:
    assert redact("HTTP 500: 1 of 1", ["1"]) == "HTTP 500: 1 of 1"
    assert redact("", ["secret-value"]) == ""
    assert redact("nothing here", []) == "nothing here"


# --- the echo server ------------------------------------------------------------------------


def _echo_lines(request: Request) -> list[str]:
    """The request's headers as a server would quote them, the interesting one first."""
    names = sorted(request.headers, key=lambda name: name != "authorization")
    return [f"{name}: {request.headers[name]}" for name in names]


def _json_error(status: int, message: str) -> bytes:
    return fixed(status, json.dumps({"error": message}).encode(), [JSON])


def _text(status: int, page: str) -> bytes:
    return fixed(status, page.encode(), [("Content-Type", "text/plain")])


def _stream_then(bad_line: bytes) -> bytes:
    return stream(text_line("a"), bad_line)


def echo_response(request: Request) -> bytes:
    """A failure that quotes the request's headers, chosen by the path and the model."""
    auth = request.headers.get("authorization", "")
    headers = "; ".join(_echo_lines(request))
    if request.path.endswith(("/api/version", "/api/ps")):
        return _json_error(401, f"{MARKER} unauthorized: {headers}")
    by_model = {
        "unauthorized": _json_error(401, f"{MARKER} invalid credentials {auth!r} ({headers})"),
        "server-error": _text(500, f"{MARKER}\n" + "\n".join(_echo_lines(request))),
        "rejected": _json_error(400, f"{MARKER}: header Authorization: value {auth} refused"),
        "stream-error": _stream_then(line({"error": f"{MARKER} runner crashed: {headers}"})),
        "status-line": f"{auth} {MARKER}\r\n\r\n".encode(),
        # 100 bytes of preamble: the 120-byte preview of a bad line ends 20 characters into
        # the value.
        "bad-line": _stream_then(f"{MARKER} {'x' * (99 - len(MARKER))}{auth} tail\n".encode()),
        # 200 bytes are quoted from a body that is not JSON: the cut falls 20 characters
        # into the value.
        "cut-body": _text(500, f"{MARKER} {'y' * (200 - len(MARKER) - 1 - 20)}{auth}"),
    }
    return by_model[json.loads(request.body)["model"]]


async def echo(request: Request, writer: asyncio.StreamWriter) -> None:
    await send(writer, echo_response(request))


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer(echo) as running:
        yield running


# --- where details are made ----------------------------------------------------------------


async def test_each_stream_and_the_api_ps_failure_are_scrubbed(server: HostileServer) -> None:
    """Every stream of a parallel run is scrubbed, not only the run's summary (``probe``
    prints each stream), and so is an ``/api/ps`` failure (the daemon logs it at debug)."""
    canaries = Canaries.new()
    settings = make_settings(
        server.url, ["unauthorized"], target={"headers": {"Authorization": canaries.inline}},
        parallel=2,
    )  # fmt: skip
    spec = settings.jobs()[0]
    client = OllamaClient(spec.target)
    try:
        result = await run_streams(client, spec, SystemClock())
        _, failure = await take_inventory(client, spec)
    finally:
        await client.aclose()
    assert failure is not None
    details = [stream.detail for stream in result.streams] + [failure[1]]
    assert len(details) == 3
    for detail in details:
        assert_clean("a detail", detail, canaries)
        assert MARKER in detail
        assert REDACTED in detail


# --- the daemon, --config.check and probe ---------------------------------------------------


@dataclass(frozen=True)
class Canaries:
    """One secret per source; each has a random part no output can contain by chance."""

    inline: str
    env: str
    file: str

    @classmethod
    def new(cls) -> Canaries:
        return cls(*(f"Bearer s3cr3t{kind}{secrets.token_hex(12)}" for kind in ("I", "E", "F")))

    def environ(self) -> dict[str, str]:
        """A child's environment, with the ``{env: VAR}`` value in ``ENV_VAR``."""
        return child_env({ENV_VAR: self.env})

    def needles(self) -> list[str]:
        """What must never appear: the random parts, and the prefix every value shares."""
        return ["s3cr3t", *(value[-24:] for value in (self.inline, self.env, self.file))]


def assert_clean(where: str, text: str, canaries: Canaries) -> None:
    found = [needle for needle in canaries.needles() if needle in text]
    assert not found, f"{where} shows a header value ({found}):\n{text[:4000]}"


def secret_config(tmp_path: Path, url: str, canaries: Canaries) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(canaries.file + "\n")
    models = json.dumps(list(BEHAVIOURS))

    def target(name: str, header: str) -> str:
        return textwrap.indent(
            textwrap.dedent(f"""\
                - name: {name}
                  url: {url}
                  models: {models}
                  concurrency: {len(BEHAVIOURS)}
                  headers:
                    Authorization: {header}
                """),
            "  ",
        )

    config = tmp_path / "config.yml"
    config.write_text(
        "targets:\n"
        + target("inline", json.dumps(canaries.inline))
        + target("env", f"{{env: {ENV_VAR}}}")
        + target("file", f"{{file: {token_file}}}")
        + "probes:\n  - {name: short, max_tokens: 4, interval: 1h, timeout: 20s, stall_timeout: 10s}\n"
    )
    return config


def wait_for_every_job(url: str) -> str:
    """Until every job has run once; returns the last /metrics body."""
    deadline = time.monotonic() + 60
    want = len(BEHAVIOURS) * 3
    while True:
        body = http_get(url + "/metrics")[1]
        ran = [x for x in body.splitlines() if x.startswith("ollama_probe_runs_total{")]
        if len(ran) == want and all(not x.endswith(" 0.0") for x in ran):
            return body
        assert time.monotonic() < deadline, f"jobs did not all run:\n{body[-3000:]}"
        time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_the_daemon_never_shows_a_header_value(
    tmp_path: Path, server: HostileServer, log_format: str
) -> None:
    """Every job fails with its headers echoed; the values are in no log line (debug level),
    not on /metrics, not on the landing page. The echo itself does reach log and page."""
    canaries = Canaries.new()
    config = secret_config(tmp_path, server.url, canaries)
    args = ("--log.level", "debug", "--log.format", log_format)
    with exporter_process(config, *args, env=canaries.environ()) as exporter:
        metrics = wait_for_every_job(exporter.url)
        page = http_get(exporter.url + "/")[1]
    seen = [r.headers.get("authorization") for r in server.requests]
    assert {canaries.inline, canaries.env, canaries.file} <= set(seen)  # the values were sent
    log = exporter.log()
    assert_clean("/metrics", metrics, canaries)
    assert_clean("the landing page", page, canaries)
    assert_clean(f"the {log_format} log", log, canaries)
    assert MARKER in page
    assert MARKER in log
    assert REDACTED in log
    assert log.count("probe failed") == len(BEHAVIOURS) * 3
    assert "target not reachable at start-up" in log  # the warm-up's 401 echo, scrubbed


@pytest.mark.e2e
def test_config_check_never_shows_a_header_value(tmp_path: Path, server: HostileServer) -> None:
    canaries = Canaries.new()
    config = secret_config(tmp_path, server.url, canaries)
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--config.check"],
        capture_output=True, text=True, timeout=60, check=False, env=canaries.environ(),
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "Authorization" in check.stdout
    assert_clean("--config.check", check.stdout + check.stderr, canaries)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_probe_never_shows_a_header_value(server: HostileServer, behaviour: str) -> None:
    """``probe --json --header 'Authorization: env:VAR'`` against each failure: the value is
    neither in the JSON nor on stderr (debug logs included), the echo is."""
    canaries = Canaries.new()
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "probe", "--url", server.url, "--model", behaviour,
         "--json", "--timeout", "20s", "--stall-timeout", "10s", "--log.level", "debug",
         "--header", f"Authorization: env:{ENV_VAR}"],
        capture_output=True, text=True, timeout=60, check=False, env=canaries.environ(),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_clean("probe --json", proc.stdout, canaries)
    assert_clean("probe's stderr", proc.stderr, canaries)
    result = json.loads(proc.stdout)
    assert result["success"] is False
    assert MARKER in result["detail"], result["detail"]
    assert canaries.env in [r.headers.get("authorization") for r in server.requests]
