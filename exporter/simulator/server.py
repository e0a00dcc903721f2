"""The simulator's asyncio server: routing, the control API and connection lifecycle.

A connection serves requests one after another until the client or a fault ends it. Handler
tasks are tracked so ``close()`` can abort streams that are sleeping or stalled (and idle
keep-alive connections) instead of waiting for them.

The control API (not recorded in ``requests``), for tests and demos in another process:
``GET``/``DELETE /_simulator/requests``, ``GET /_simulator/models`` (every script),
``GET /_simulator/models/{name}`` (its script and state: residency, loads, requests per
API) and ``PUT /_simulator/models/{name}`` (merge fields into its script).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

from exporter.simulator import openai
from exporter.simulator.generation import respond
from exporter.simulator.http11 import (
    JSON_UTF8,
    TEXT_PLAIN,
    BadRequest,
    HttpConnection,
    RecordedRequest,
    Request,
)
from exporter.simulator.responses import (
    dumps,
    error_body,
    full_name,
    ps_body,
    show_body,
    tags_body,
)
from exporter.simulator.script import ModelScript, apply_overrides, script_to_dict
from exporter.simulator.state import ModelState
from exporter.simulator.validate import Api, Generation, Reject, parse_generation, parse_openai

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_simulator/"
_MODEL_PATH = re.compile(r"^/_simulator/models/(?P<name>.+)$")
_ROUTES: dict[str, frozenset[str]] = {
    "/": frozenset({"GET", "HEAD"}),
    "/api/version": frozenset({"GET", "HEAD"}),
    "/api/tags": frozenset({"GET", "HEAD"}),
    "/api/ps": frozenset({"GET"}),
    "/api/show": frozenset({"POST"}),
    "/api/generate": frozenset({"POST"}),
    "/api/chat": frozenset({"POST"}),
    "/v1/chat/completions": frozenset({"POST"}),
}
_GENERATION: dict[str, Api] = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/v1/chat/completions": "openai",
}
_CLOSE_TIMEOUT_S = 1.0
SIMULATOR_VERSION = "0.0.0-simulator"


class OllamaSimulator:
    """An Ollama-compatible HTTP server whose models follow ``ModelScript``s.

    Usage::

        async with OllamaSimulator({"llama3.2:1b": ModelScript(first_token_delay=0.2)}) as sim:
            ...  # point a client at sim.url; inspect sim.requests afterwards
            sim.model_state("llama3.2:1b").requests  # e.g. Counter({"generate": 1})
    """

    def __init__(
        self,
        scripts: Mapping[str, ModelScript] | None = None,
        *,
        version: str = SIMULATOR_VERSION,
    ) -> None:
        self._scripts: dict[str, ModelScript] = dict(scripts or {})
        self._states = {name: ModelState(s.loaded) for name, s in self._scripts.items()}
        self._version = version
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and start accepting; ``port=0`` picks a free port, read back from ``.port``."""
        self._server = await asyncio.start_server(self._accept, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting and abort in-flight requests, so a stalled stream cannot hang us."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _CLOSE_TIMEOUT_S)
            self._server = None

    async def wait_idle(self) -> None:
        """Wait until every connection has ended, e.g. to prove a stream stopped early."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def __aenter__(self) -> OllamaSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def set_script(self, model: str, script: ModelScript) -> None:
        """Replace (or add) a model's script; requests received afterwards use it.

        The model becomes resident or not as ``script.loaded`` says; its counters are kept.
        """
        self._scripts[model] = script
        self._state(model).reset(script.loaded)

    def script_for(self, model: str) -> ModelScript | None:
        """Return the script for ``model``, accepting ``name`` for ``name:latest`` and back."""
        key = self._key_for(model)
        return None if key is None else self._scripts[key]

    def model_state(self, model: str) -> ModelState:
        """Return a model's residency and counters (``loads``, ``requests``, ``loaded()``)."""
        key = self._key_for(model)
        if key is None:
            raise KeyError(model)
        return self._state(key)

    def _key_for(self, model: str) -> str | None:
        for candidate in (model, full_name(model), model.removesuffix(":latest")):
            if candidate in self._scripts:
                return candidate
        return None

    def _state(self, key: str) -> ModelState:
        if key not in self._states:
            self._states[key] = ModelState(self._scripts[key].loaded)
        return self._states[key]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the task is ours, so close() can cancel it and a cancelled
        # task is not reported by asyncio's client_connected_cb machinery.
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests until the connection ends; client disconnects end it quietly."""
        conn = HttpConnection(reader, writer)
        try:
            while await self._serve_one(conn):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; Ollama stops generating, and so do we
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:
            log.exception("simulator: error while handling a request")
            writer.transport.abort()
        finally:
            writer.close()
            try:
                await writer.wait_closed()  # flushes what is buffered for a slow reader
            except ConnectionError:
                pass
            except asyncio.CancelledError:
                writer.transport.abort()  # close() does not wait for a client that won't read
                raise

    async def _serve_one(self, conn: HttpConnection) -> bool:
        """Serve one request; return whether the connection can carry another."""
        try:
            request = await conn.next_request()
        except BadRequest as exc:
            await conn.refuse(exc.status, str(exc))
            return False
        received_ns = time.monotonic_ns()
        if request is None:
            return False
        if request.path.startswith(CONTROL_PREFIX):  # not recorded: it would pollute .requests
            await conn.write(self._control(conn, request))
            return conn.next_cycle()
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=request.headers,
            body=_parse_json(request.body),
            received_ns=received_ns,
        )
        self.requests.append(rec)
        await self._route(conn, request, rec)
        return conn.next_cycle()

    async def _route(self, conn: HttpConnection, request: Request, rec: RecordedRequest) -> None:
        methods = _ROUTES.get(request.path)
        if methods is None:
            data = conn.full(404, TEXT_PLAIN, b"404 page not found")
        elif request.method not in methods:
            data = conn.full(405, TEXT_PLAIN, b"405 method not allowed")
        elif request.path in _GENERATION:
            api = _GENERATION[request.path]
            try:
                gen = _parse(api, request.body, self.script_for)
            except Reject as exc:
                data = conn.full(exc.status, *_reject_body(api, exc))
            else:
                state = self.model_state(gen.model)
                state.requests[api] += 1
                await _until_client_leaves(conn, respond(conn, gen, rec, state))
                return
        else:
            status, ctype, body = self._simple(request)
            data = conn.full(status, ctype, body)
        rec.first_write_ns = await conn.write(data)

    def _simple(self, request: Request) -> tuple[int, str, bytes]:
        """Answer the instant routes (everything but generation)."""
        if request.path == "/":
            return 200, TEXT_PLAIN, b"Ollama is running"
        if request.path == "/api/version":
            return 200, JSON_UTF8, dumps({"version": self._version})
        if request.path == "/api/tags":
            return 200, JSON_UTF8, tags_body(self._scripts)
        if request.path == "/api/ps":
            return 200, JSON_UTF8, ps_body(self._loaded())
        return self._show(request.body)

    def _loaded(self) -> list[tuple[str, ModelScript, int]]:
        """Return ``(name, script, expires_at_unix_ns)`` of every resident model."""
        states = [(name, script, self._state(name)) for name, script in self._scripts.items()]
        return [(name, script, st.expires_at_ns()) for name, script, st in states if st.loaded()]

    def _show(self, raw: bytes) -> tuple[int, str, bytes]:
        body = _parse_json(raw)
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            return 400, JSON_UTF8, error_body("model is required")
        script = self.script_for(name)
        if script is None:
            return 404, JSON_UTF8, error_body(f"model '{name}' not found")
        return 200, JSON_UTF8, show_body(name, script)

    def _control(self, conn: HttpConnection, request: Request) -> bytes:
        """The simulator's own API, for tests and demos driving it from another process."""
        status, ctype, body = self._control_answer(request)
        return conn.full(status, ctype, body)

    def _control_answer(self, request: Request) -> tuple[int, str, bytes]:
        handlers: dict[str, Callable[[Request], tuple[int, str, bytes]]]
        if request.path == "/_simulator/requests":
            handlers = {"GET": self._list_requests, "DELETE": self._clear_requests}
        elif request.path == "/_simulator/models":
            handlers = {"GET": self._list_models}
        elif _MODEL_PATH.match(request.path):
            handlers = {"GET": self._get_model, "PUT": self._put_model}
        else:
            return 404, TEXT_PLAIN, b"404 page not found"
        handler = handlers.get(request.method)
        if handler is None:
            return 405, TEXT_PLAIN, b"405 method not allowed"
        return handler(request)

    def _list_requests(self, _: Request) -> tuple[int, str, bytes]:
        return 200, JSON_UTF8, dumps([rec.to_json() for rec in self.requests])

    def _clear_requests(self, _: Request) -> tuple[int, str, bytes]:
        self.requests.clear()
        return 200, JSON_UTF8, b"[]"

    def _list_models(self, _: Request) -> tuple[int, str, bytes]:
        return 200, JSON_UTF8, dumps({name: script_to_dict(s) for name, s in self._scripts.items()})

    def _get_model(self, request: Request) -> tuple[int, str, bytes]:
        """A model's script and state: residency and per-API generation request counts."""
        name = request.path.removeprefix("/_simulator/models/")
        key = self._key_for(name)
        if key is None:
            return 404, JSON_UTF8, error_body(f"model '{name}' not found")
        script = script_to_dict(self._scripts[key])
        return 200, JSON_UTF8, dumps({"script": script, "state": self._state(key).to_json()})

    def _put_model(self, request: Request) -> tuple[int, str, bytes]:
        """Merge the body's fields over the model's current script (or the defaults).

        The model's residency is reset only when the body sets ``loaded``.
        """
        name = request.path.removeprefix("/_simulator/models/")
        try:
            fields = json.loads(request.body or b"{}")
        except ValueError as exc:
            return 400, JSON_UTF8, error_body(f"invalid JSON: {exc}")
        try:
            script = apply_overrides(self._scripts.get(name, ModelScript()), fields, name)
        except ValueError as exc:
            return 400, JSON_UTF8, error_body(str(exc))
        self._scripts[name] = script
        if isinstance(fields, dict) and "loaded" in fields:
            self._state(name).reset(script.loaded)
        return 200, JSON_UTF8, dumps(script_to_dict(script))


async def _until_client_leaves(conn: HttpConnection, answer: Coroutine[Any, Any, None]) -> None:
    """Run ``answer`` but stop it if the client closes the connection first.

    Ollama stops generating when its client disconnects, and a client that leaves while
    queued gives up its place or, if nobody else waits, the model's load.
    """
    work = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(conn.client_gone())
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            task.cancel()
        await asyncio.wait({work, gone})
    if not work.cancelled():
        work.result()  # re-raise what answering raised, e.g. a write to a closed socket


def _parse(api: Api, raw: bytes, lookup: Callable[[str], ModelScript | None]) -> Generation:
    if api == "openai":
        return parse_openai(raw, lookup)
    return parse_generation(api, raw, lookup)


def _reject_body(api: Api, exc: Reject) -> tuple[str, bytes]:
    """Content type and body of a refusal, in the shape of the request's API."""
    if api != "openai":
        return JSON_UTF8, error_body(exc.message)
    body = openai.error_body(exc.status, exc.message)
    # The middleware's own refusals use gin's c.JSON; the native handler's pass through
    # the middleware's encoder, which ends with a newline and omits the charset.
    return (JSON_UTF8, body) if exc.middleware else (openai.JSON, body + b"\n")


def _parse_json(raw: bytes) -> Any:
    """Return the parsed body for the record, or None when it is empty or not JSON."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def serve_forever(
    host: str,
    port: int,
    scripts: Mapping[str, ModelScript],
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run a simulator until cancelled; ``ready`` gets its URL once it accepts connections."""
    simulator = OllamaSimulator(scripts)
    await simulator.start(host, port)
    try:
        if ready is not None:
            ready(simulator.url)
        await asyncio.Event().wait()
    finally:
        await simulator.close()
