"""A paced streaming server for the CPU benchmark: Ollama's chunks, one HTTP chunk per write.

The simulator spins through the last 1.5 ms before each chunk to write it on time, which
would spend a core next to the client being measured; this server only needs the client to
receive one chunk per read, as from a real Ollama, so it sleeps ``interval`` between writes
and spends almost nothing. The bytes are the simulator's own (``exporter.simulator``), so
the client parses what Ollama sends: ``/api/generate`` and ``/api/chat`` NDJSON, and
``/v1/chat/completions`` server-sent events with ``usage`` and ``[DONE]``.

    python -m benchmarks.pacer [--interval S]   # prints "PORT <n>" once listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from exporter.simulator.openai import DONE_FRAME, Envelope, sse
from exporter.simulator.responses import (
    Endpoint,
    Metrics,
    done_body,
    done_metrics,
    dumps,
    text_line,
)

INTERVAL_S = 0.0005
MODEL = "bench:1b"


def _tokens(body: dict[str, object]) -> int:
    options = body.get("options")
    if isinstance(options, dict) and isinstance(options.get("num_predict"), int):
        return int(options["num_predict"])
    value = body.get("max_tokens")
    return int(value) if isinstance(value, int) else 16


def _stream(path: str, tokens: int) -> list[bytes]:
    """Every payload of one answer, built before the first write."""
    if path.startswith("/v1/"):
        env = Envelope(MODEL, int(time.time()))
        frames = [sse(env.chunk(f" tok{i}")) for i in range(tokens)]
        frames.append(sse(env.chunk("", finish_reason="length")))
        frames.append(sse(env.usage_chunk(20, tokens)) + DONE_FRAME)
        return frames
    endpoint: Endpoint = "chat" if path == "/api/chat" else "generate"
    lines = [text_line(endpoint, MODEL, i, 0) for i in range(tokens)]
    metrics = Metrics(
        total_duration=10**9, load_duration=10**6, prompt_eval_count=20,
        prompt_eval_duration=10**7, eval_count=tokens, eval_duration=9 * 10**8,
    )  # fmt: skip
    done = done_body(endpoint, MODEL, "length", done_metrics(metrics))
    return [*lines, done + b"\n"]


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *headers = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        length = 0
        for header in headers:
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = json.loads(await reader.readexactly(length)) if length else {}
        if method == "GET":
            data = dumps({"version": "0.0.0-pacer"})
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(data), data)
            )
            await writer.drain()
            return
        ctype = b"text/event-stream" if path.startswith("/v1/") else b"application/x-ndjson"
        payloads = _stream(path, _tokens(body))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %b\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" % ctype
        )
        for payload in payloads:
            await asyncio.sleep(INTERVAL_S)
            writer.write(_chunk(payload))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def _serve(interval: float) -> None:
    global INTERVAL_S  # noqa: PLW0603  # one server per process
    INTERVAL_S = interval
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=INTERVAL_S)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
