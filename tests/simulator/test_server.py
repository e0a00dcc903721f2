"""Tests for OllamaSimulator: routes, the control API, framing and lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from exporter import __version__
from exporter.simulator import DEFAULT_PORT, ModelScript, OllamaSimulator, serve_forever
from tests.simulator.clients import decode_chunks, http_client, raw_exchange, raw_post

FAST = ModelScript(first_token_delay=0.0, tokens_per_second=1000.0, tokens=3)
SCRIPTS = {"llama3.2:1b": FAST, "qwen3:0.6b": ModelScript(thinking_tokens=2)}
SERVER = f"ollama-probe-exporter-simulator/{__version__}"


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator(SCRIPTS) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: OllamaSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(sim.url) as http:
        yield http


class TestLifecycle:
    async def test_binds_loopback_and_reports_url(self, sim: OllamaSimulator) -> None:
        """The simulator binds 127.0.0.1 on a free port and reports it in .url."""
        assert sim.port > 0
        assert f"http://127.0.0.1:{sim.port}" == sim.url

    async def test_close_stops_accepting(self) -> None:
        """After close() the port refuses connections."""
        sim = OllamaSimulator(SCRIPTS)
        await sim.start()
        await sim.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", sim.port)

    async def test_serve_forever_runs_until_cancelled(self) -> None:
        """serve_forever reports its URL via ready, serves, and closes when cancelled."""
        urls: list[str] = []
        started = asyncio.Event()

        def ready(url: str) -> None:
            urls.append(url)
            started.set()

        task = asyncio.create_task(serve_forever("127.0.0.1", 0, SCRIPTS, ready))
        await asyncio.wait_for(started.wait(), timeout=5)
        async with http_client() as http:
            response = await http.get(f"{urls[0]}/api/version")
            assert response.json() == {"version": "0.0.0-simulator"}
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{urls[0]}/api/version")

    async def test_client_disconnect_mid_stream_is_quiet(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client leaving mid-stream stops generation without logging or raising."""
        caplog.set_level(logging.WARNING)
        # 10 s of output: if leaving did not stop it, wait_idle would time out.
        slow = ModelScript(first_token_delay=0.0, tokens_per_second=100.0, tokens=1000)
        async with OllamaSimulator({"m": slow}) as sim:
            async with (
                http_client(sim.url) as http,
                http.stream("POST", "/api/generate", json={"model": "m", "prompt": "x"}) as r,
            ):
                async for _ in r.aiter_raw():
                    break
            await asyncio.wait_for(sim.wait_idle(), timeout=5)
            assert len(sim.requests[0].text_write_ns) < 1000
            assert sim.requests[0].done_write_ns is None
        assert [rec.getMessage() for rec in caplog.records] == []


class TestOllamaRoutes:
    async def test_root(self, client: httpx.AsyncClient) -> None:
        """GET / says Ollama is running, as plain text with no newline."""
        response = await client.get("/")
        assert (
            response.status_code,
            response.headers["content-type"],
            response.content,
        ) == (200, "text/plain; charset=utf-8", b"Ollama is running")

    @pytest.mark.parametrize("path", ["/", "/api/version", "/api/tags"])
    async def test_head(self, client: httpx.AsyncClient, path: str) -> None:
        """HEAD answers 200 with a Content-Length and no body."""
        response = await client.head(path)
        assert response.status_code == 200
        assert int(response.headers["content-length"]) > 0
        assert response.content == b""

    async def test_version_says_simulator(self, client: httpx.AsyncClient) -> None:
        """/api/version names the simulator, so nobody mistakes it for a real Ollama."""
        response = await client.get("/api/version")
        assert response.content == b'{"version":"0.0.0-simulator"}'

    async def test_custom_version(self) -> None:
        """The version string is a constructor argument (to mimic a given Ollama release)."""
        async with OllamaSimulator(version="0.15.2") as sim, http_client(sim.url) as http:
            response = await http.get("/api/version")
        assert response.json() == {"version": "0.15.2"}

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/"),
            ("GET", "/metrics"),
            ("POST", "/api/generate"),
            ("GET", "/_simulator/models"),
        ],
    )
    async def test_every_response_names_the_simulator(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """Every answer, errors and the control API included, carries the Server header."""
        body = {"model": "llama3.2:1b", "prompt": "x"}
        response = await client.request(method, path, json=body if method == "POST" else None)
        assert response.headers["server"] == SERVER

    async def test_malformed_request_names_the_simulator(self, sim: OllamaSimulator) -> None:
        """Even the answer to a request that could not be parsed carries the Server header."""
        data = await raw_exchange(sim.port, b"NONSENSE\r\n\r\n")
        assert f"\r\nServer: {SERVER}\r\n".encode() in data

    def test_default_port_is_not_ollamas(self) -> None:
        """The simulator's default port differs from Ollama's 11434."""
        assert DEFAULT_PORT == 10435

    async def test_tags(self, client: httpx.AsyncClient) -> None:
        """/api/tags lists every scripted model with Ollama's fields."""
        models = (await client.get("/api/tags")).json()["models"]
        assert [m["name"] for m in models] == ["llama3.2:1b", "qwen3:0.6b"]
        first = models[0]
        assert list(first) == ["name", "model", "modified_at", "size", "digest", "details"]
        assert datetime.fromisoformat(first["modified_at"]).utcoffset() is not None
        assert re.fullmatch(r"[0-9a-f]{64}", first["digest"])
        assert first["details"]["parameter_size"] == "1B"

    async def test_ps(self, client: httpx.AsyncClient) -> None:
        """/api/ps shows every scripted model loaded fully in VRAM."""
        models = (await client.get("/api/ps")).json()["models"]
        assert len(models) == 2
        assert all(m["size_vram"] == m["size"] > 0 for m in models)
        assert datetime.fromisoformat(models[0]["expires_at"]).utcoffset() is not None

    async def test_show_capabilities(self, client: httpx.AsyncClient) -> None:
        """/api/show lists thinking only for models that think."""
        thinker = (await client.post("/api/show", json={"model": "qwen3:0.6b"})).json()
        plain = (await client.post("/api/show", json={"model": "llama3.2:1b"})).json()
        missing = await client.post("/api/show", json={"model": "nope"})
        assert thinker["capabilities"] == ["completion", "thinking"]
        assert plain["capabilities"] == ["completion"]
        assert missing.status_code == 404

    @pytest.mark.parametrize("path", ["/metrics", "/v2/api/tags", "/api/nothing"])
    async def test_unknown_route_is_plain_404(self, client: httpx.AsyncClient, path: str) -> None:
        """Unknown routes get Go's plain-text 404, not a JSON error."""
        response = await client.get(path)
        assert (
            response.status_code,
            response.headers["content-type"],
            response.content,
        ) == (404, "text/plain; charset=utf-8", b"404 page not found")

    @pytest.mark.parametrize(("method", "path"), [("GET", "/api/chat"), ("POST", "/api/tags")])
    async def test_wrong_method_is_405(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """A known route with the wrong method gets 405 method not allowed."""
        response = await client.request(method, path)
        assert (response.status_code, response.content) == (405, b"405 method not allowed")

    async def test_requests_are_recorded(
        self, sim: OllamaSimulator, client: httpx.AsyncClient
    ) -> None:
        """Every Ollama request is recorded in order with lower-cased headers and parsed body."""
        await client.get("/api/version")
        body = {"model": "llama3.2:1b", "prompt": "x"}
        await client.post("/api/generate", json=body, headers={"X-Probe": "1"})
        assert [(r.method, r.path) for r in sim.requests] == [
            ("GET", "/api/version"),
            ("POST", "/api/generate"),
        ]
        rec = sim.requests[1]
        assert ("1", body, 3) == (rec.headers["x-probe"], rec.body, len(rec.text_write_ns))


class TestFraming:
    async def test_each_line_is_one_chunk(self, sim: OllamaSimulator) -> None:
        """Every NDJSON line is its own HTTP chunk and the body ends with the 0-length chunk."""
        request = raw_post("/api/generate", {"model": "llama3.2:1b", "prompt": "x"})
        data = await raw_exchange(sim.port, request)
        head, _, payload = data.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked\r\n" in head
        chunks = decode_chunks(payload)
        assert len(chunks) == 4
        assert all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in chunks)

    async def test_chunked_request_body(self, sim: OllamaSimulator) -> None:
        """A chunked request body is accepted (curl and some clients send one)."""
        body = json.dumps({"model": "llama3.2:1b", "prompt": "x", "stream": False}).encode()
        request = (
            b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        )
        data = await raw_exchange(sim.port, request)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'"done":true' in data

    async def test_expect_100_continue(self, sim: OllamaSimulator) -> None:
        """Expect: 100-continue gets the interim response before the body is sent (curl)."""
        body = json.dumps({"model": "llama3.2:1b", "prompt": "x", "stream": False}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(
            b"POST /api/generate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        writer.write(body)
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        await writer.wait_closed()
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")

    async def test_tls_handshake_fails_at_once(self, sim: OllamaSimulator) -> None:
        """An https:// URL gets a 400 to its ClientHello and fails fast, not by timeout."""
        url = sim.url.replace("http://", "https://")
        async with http_client(timeout=5) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{url}/api/version")

    @pytest.mark.parametrize(
        "request_bytes",
        [
            b"NONSENSE\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host, which Go refuses too
        ],
    )
    async def test_malformed_request_is_400(
        self, sim: OllamaSimulator, request_bytes: bytes
    ) -> None:
        """A request the parser cannot frame gets a 400 and the connection closes."""
        data = await raw_exchange(sim.port, request_bytes)
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")

    async def test_oversized_head_is_431(self, sim: OllamaSimulator) -> None:
        """A request head that goes on past 64 KiB is refused, as Go caps header bytes."""
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        data = await raw_exchange(sim.port, request)
        assert data.startswith(b"HTTP/1.1 431 ")

    async def test_keep_alive_serves_requests_in_turn(self, sim: OllamaSimulator) -> None:
        """One connection carries a stream and then another request, as with real Ollama."""
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        try:
            writer.write(
                raw_post("/api/generate", {"model": "llama3.2:1b", "prompt": "x"}, close=False)
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            assert b"Connection: close" not in head
            await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), timeout=5)
            writer.write(b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            rest = await asyncio.wait_for(reader.read(), timeout=5)
        finally:
            writer.close()
            await writer.wait_closed()
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
        assert rest.endswith(b'{"version":"0.0.0-simulator"}')
        assert [r.path for r in sim.requests] == ["/api/generate", "/api/version"]

    async def test_http10_stream_is_delimited_by_close(self, sim: OllamaSimulator) -> None:
        """An HTTP/1.0 client gets the stream unchunked, ended by the server closing."""
        request = raw_post("/api/generate", {"model": "llama3.2:1b", "prompt": "x"})
        data = await raw_exchange(sim.port, request.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        head, _, payload = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"chunked" not in head
        assert [json.loads(line)["done"] for line in payload.splitlines()] == [False] * 3 + [True]


class TestControlApi:
    async def test_put_creates_a_model_from_defaults(
        self, sim: OllamaSimulator, client: httpx.AsyncClient
    ) -> None:
        """PUT on a new (URL-encoded) name creates it from the default script plus the fields."""
        response = await client.put("/_simulator/models/new%3A7b", json={"tokens": 2})
        assert response.status_code == 200
        assert response.json()["tokens"] == 2
        assert ModelScript(tokens=2) == sim.script_for("new:7b")

    async def test_put_merges_over_the_current_script(
        self, sim: OllamaSimulator, client: httpx.AsyncClient
    ) -> None:
        """PUT changes only the given fields and the next request follows the new script."""
        response = await client.put(
            "/_simulator/models/llama3.2:1b", json={"tokens": 2, "fault": "busy"}
        )
        assert response.json()["fault"] == "busy"
        assert response.json()["tokens_per_second"] == 1000.0
        generated = await client.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "x"})
        assert generated.status_code == 503

    @pytest.mark.parametrize("fields", [{"tokenz": 1}, {"tokens": "x"}, [1]])
    async def test_put_rejects_bad_fields(self, client: httpx.AsyncClient, fields: object) -> None:
        """An unknown field, a wrong type or a non-object body is a 400."""
        response = await client.put("/_simulator/models/llama3.2:1b", json=fields)
        assert response.status_code == 400
        assert "llama3.2:1b" in response.json()["error"]

    async def test_get_requests_lists_recorded_timings(self, client: httpx.AsyncClient) -> None:
        """GET /_simulator/requests returns recorded requests with timings, not itself."""
        await client.post("/api/chat", json={"model": "llama3.2:1b", "messages": [{}]})
        records = (await client.get("/_simulator/requests")).json()
        assert len(records) == 1
        record = records[0]
        assert (record["method"], record["path"]) == ("POST", "/api/chat")
        assert len(record["text_write_ns"]) == 3
        assert record["received_ns"] <= record["first_write_ns"] <= record["done_write_ns"]

    async def test_delete_requests_clears(
        self, sim: OllamaSimulator, client: httpx.AsyncClient
    ) -> None:
        """DELETE /_simulator/requests empties the record."""
        await client.get("/api/version")
        await client.delete("/_simulator/requests")
        assert sim.requests == []

    async def test_get_models(self, client: httpx.AsyncClient) -> None:
        """GET /_simulator/models returns every script by name."""
        models = (await client.get("/_simulator/models")).json()
        assert list(models) == ["llama3.2:1b", "qwen3:0.6b"]
        assert models["qwen3:0.6b"]["thinking_tokens"] == 2
