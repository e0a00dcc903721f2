"""CPU per streamed chunk: the exporter's prober against the loops people usually write.

Every client reads the same paced stream (``benchmarks.pacer``, one HTTP chunk per write, so
one chunk per read as from a real Ollama) in this process, while the server runs in another;
the process CPU time spent during one whole stream, divided by its chunks, is the client's
cost per chunk: HTTP framing, line splitting, JSON, bookkeeping and the event loop's wake-ups.
CPU time rather than wall time, so the numbers hold on a loaded machine; the clients take
turns within each round, so they see the same machine, and ratios are taken within a round.

- ``exporter``: ``run_probe`` with the exporter's client, as the daemon runs it;
- ``classic``: ``requests`` + ``iter_lines`` + ``json.loads`` per line, the usual
  tokens-per-second loop;
- ``plain httpx``: ``httpx.AsyncClient.stream`` + ``aiter_lines`` + ``json.loads``;
- ``floor``: the bare protocol of ``tests/support/floor.py`` (the request written on
  connect, newlines counted in ``data_received``): what receiving the bytes costs at all;
- ``lean``: a prototype, not the exporter: the floor's protocol with HTTP chunked framing
  undone by hand and the exporter's own decoder and timeline on top, i.e. what the exporter
  would cost without httpx's and httpcore's layers between the socket and the decoder.

    python -m benchmarks.cpu_per_chunk [--rounds N] [--tokens N] [--api generate|chat|openai]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests

from exporter.clock import SystemClock
from exporter.config import JobSpec
from exporter.ollama.client import OllamaClient
from exporter.ollama.payload import API_PATHS, decoder_for
from exporter.probe import run_probe
from exporter.timeline import Timeline
from tests.support.floor import floor_request
from tests.support.jobs import make_job

CLIENTS = ("exporter", "classic", "plain httpx", "floor", "lean")


@contextmanager
def pacer_process(interval: float) -> Iterator[str]:
    """The paced server in its own process; yields its base URL."""
    argv = [sys.executable, "-m", "benchmarks.pacer", "--interval", str(interval)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"pacer did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _body(api: str, tokens: int) -> dict[str, Any]:
    if api == "openai":
        return {"model": "bench:1b", "stream": True, "max_tokens": tokens,
                "messages": [{"role": "user", "content": "x"}],
                "stream_options": {"include_usage": True}}  # fmt: skip
    body: dict[str, Any] = {"model": "bench:1b", "options": {"num_predict": tokens}}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": "x"}]
    else:
        body["prompt"] = "x"
    return body


def _is_end(line: bytes, api: str) -> bool:
    """One JSON decode per line, as those loops do; True on the last event."""
    if api == "openai":
        if not line.startswith(b"data: "):
            return False
        payload = line[6:]
        if payload == b"[DONE]":
            return True
        json.loads(payload)
        return False
    return bool(json.loads(line).get("done"))


def classic(url: str, api: str, tokens: int) -> None:
    """``requests`` + ``iter_lines`` + ``json.loads``: the usual tokens-per-second loop."""
    with requests.post(url + "/" + API_PATHS[api].lstrip("/"), json=_body(api, tokens), stream=True,
                       timeout=60) as response:  # fmt: skip
        for line in response.iter_lines():
            if line and _is_end(line, api):
                return
    raise RuntimeError("classic: stream ended early")


async def plain_httpx(client: httpx.AsyncClient, url: str, api: str, tokens: int) -> None:
    async with client.stream(
        "POST", url + "/" + API_PATHS[api].lstrip("/"), json=_body(api, tokens)
    ) as response:
        async for line in response.aiter_lines():
            if line and _is_end(line.encode(), api):
                return
    raise RuntimeError("plain httpx: stream ended early")


class _Counting(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
        self._request = request
        self._done = done
        self.newlines = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.newlines += data.count(b"\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(self.newlines)


async def _exchange(
    url: str,
    api: str,
    tokens: int,
    protocol: Callable[[bytes, asyncio.Future[int]], asyncio.Protocol],
) -> None:
    """One request over a bare asyncio connection, answered by ``protocol``, which resolves
    the future when the answer is done."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    request = floor_request(url, "bench:1b", api=api, tokens=tokens)
    transport, _ = await loop.create_connection(
        lambda: protocol(request, done), parts.hostname, parts.port
    )
    try:
        await done
    finally:
        transport.close()


async def floor(url: str, api: str, tokens: int) -> None:
    """Bytes received and newlines counted, nothing else: the cost of the socket and loop."""
    await _exchange(url, api, tokens, _Counting)


class _Lean(asyncio.Protocol):
    """The floor plus chunked framing, the exporter's decoder and its timeline."""

    def __init__(self, request: bytes, done: asyncio.Future[int], job: JobSpec) -> None:
        self._request = request
        self._done = done
        self._decoder = decoder_for(job.profile)
        self._timeline = Timeline()
        self._buf = bytearray()
        self._body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        t_ns = time.monotonic_ns()
        buf = self._buf
        buf += data
        if not self._body:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[: end + 4]
            self._body = True
        while (eol := buf.find(b"\r\n")) >= 0:
            size = int(buf[:eol], 16)
            if len(buf) < eol + 2 + size + 2:
                return
            payload = bytes(buf[eol + 2 : eol + 2 + size])
            del buf[: eol + 2 + size + 2]
            for chunk in self._decoder.feed(payload):
                if chunk is not None:
                    self._timeline.observe(chunk, t_ns)
                    if chunk.done and not self._done.done():
                        self._done.set_result(self._timeline.chunks)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(RuntimeError("lean: stream ended before done"))


async def lean(url: str, job: JobSpec, api: str, tokens: int) -> None:
    await _exchange(url, api, tokens, lambda request, done: _Lean(request, done, job))


async def exporter(client: OllamaClient, job: JobSpec) -> None:
    result = await run_probe(client, job, SystemClock())
    if not result.success:
        raise RuntimeError(f"exporter probe failed: {result.reason} {result.detail}")


@dataclass
class Row:
    """µs per chunk of each client, one value per round."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLIENTS})

    def ratios(self, client: str, base: str = "classic") -> list[float]:
        return [a / b for a, b in zip(self.samples[client], self.samples[base], strict=True)]


def chunks_of(api: str, tokens: int) -> int:
    """HTTP chunks the pacer writes for one answer: text, then done (openai: finish, usage)."""
    return tokens + (2 if api == "openai" else 1)


def measure(url: str, api: str, tokens: int, rounds: int) -> Row:
    """``rounds`` rounds of one stream per client, in turn; CPU µs per chunk."""
    job = make_job(url, "bench:1b", api=api, max_tokens=tokens, timeout="120s")
    chunks = chunks_of(api, tokens)
    row = Row()
    loop = asyncio.new_event_loop()
    ours = OllamaClient(job.target)
    plain = httpx.AsyncClient(timeout=60, trust_env=False)
    runs: dict[str, Callable[[], Awaitable[None] | None]] = {
        "exporter": lambda: exporter(ours, job),
        "classic": lambda: classic(url, api, tokens),
        "plain httpx": lambda: plain_httpx(plain, url, api, tokens),
        "floor": lambda: floor(url, api, tokens),
        "lean": lambda: lean(url, job, api, tokens),
    }

    def once(name: str) -> float:
        start = time.process_time_ns()
        pending = runs[name]()
        if pending is not None:
            loop.run_until_complete(pending)
        return (time.process_time_ns() - start) / 1000 / chunks

    try:
        loop.run_until_complete(ours.version())
        for name in CLIENTS:  # warm-up: imports, first connections
            once(name)
        gc.collect()
        gc.freeze()  # as the daemon does after start-up
        for _ in range(rounds):
            for name in CLIENTS:
                row.samples[name].append(once(name))
    finally:
        loop.run_until_complete(ours.aclose())
        loop.run_until_complete(plain.aclose())
        loop.close()
    return row


def table(rows: dict[str, Row]) -> list[str]:
    """One line per wire and client: median µs per chunk and the ratio to the classic loop."""
    lines = [f"{'wire':<9}{'client':<13}{'µs/chunk':>9}{'p90':>8}{'÷ classic':>11}"]
    for api, row in rows.items():
        for name in CLIENTS:
            values = sorted(row.samples[name])
            p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
            ratio = statistics.median(row.ratios(name))
            lines.append(
                f"{api:<9}{name:<13}{statistics.median(values):>9.1f}{p90:>8.1f}{ratio:>11.2f}"
            )
    return lines


def run(rounds: int, tokens: int, apis: tuple[str, ...], interval: float) -> dict[str, Row]:
    with pacer_process(interval) as url:
        return {api: measure(url, api, tokens, rounds) for api in apis}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.0005, help="seconds between chunks")
    parser.add_argument("--api", action="append", choices=("generate", "chat", "openai"))
    args = parser.parse_args(argv)
    apis = tuple(args.api or ("generate", "chat", "openai"))
    rows = run(args.rounds, args.tokens, apis, args.interval)
    print(f"CPU per chunk, {args.tokens} chunks per stream, median of {args.rounds} rounds")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
