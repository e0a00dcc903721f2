"""What the simulator remembers about each model between requests.

Residency (loaded or not, and until when), the one cold load that concurrent requests share,
the parallel slots, and counters a test can read to prove what a probe did
(``GET /_simulator/models/{name}``). Each request passes the model's current script, so a
script changed through the control API applies from the next request on. Times are
``time.monotonic_ns()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from exporter.result import NS_PER_S
from exporter.simulator.script import ModelScript

DEFAULT_KEEP_ALIVE_S = 300.0  # OLLAMA_KEEP_ALIVE's default, used by a load a request causes
FOREVER_NS = 2**63 - 1  # a negative keep_alive: Go's MaxInt64 duration
APIS = ("generate", "chat", "openai")


class Busy(Exception):
    """Too many requests are waiting for the model's load: Ollama answers 503 at once."""


@dataclass(frozen=True, slots=True)
class Admission:
    """When a request may start generating, and how long it waited for a load (ns)."""

    start_ns: int
    load_wait_ns: int


class ModelState:
    """One model's residency, load, slots and request counters.

    Attributes (read them, do not set them):
        loads: cold loads completed.
        requests: generation requests that named the model, by API (generate, chat, openai).
        running: requests generating now; queued: requests waiting for a slot.
    """

    def __init__(self, loaded: bool) -> None:
        self.loads = 0
        self.requests: Counter[str] = Counter()
        self.running = 0
        self.queued = 0
        self._keep_alive_s = DEFAULT_KEEP_ALIVE_S
        self._expires_ns: int | None = 0
        self._load: asyncio.Future[None] | None = None
        self._load_waiters = 0
        self._slots: asyncio.Semaphore | None = None
        self._slot_count = 0
        self.reset(loaded)

    def reset(self, loaded: bool) -> None:
        """Make the model resident for the default keep-alive, or not resident, now."""
        self._keep_alive_s = DEFAULT_KEEP_ALIVE_S
        self._expires_ns = _deadline(self._keep_alive_s) if loaded else 0

    def unload(self) -> None:
        """Drop the model as soon as no request is using it (``keep_alive: 0``)."""
        self._expires_ns = 0

    def loaded(self) -> bool:
        """Whether the model is resident: in use, or its keep-alive has not run out."""
        expires = self._expires_ns
        return self.running > 0 or expires is None or time.monotonic_ns() < expires

    def expires_at_ns(self) -> int:
        """Wall-clock (Unix ns) end of the keep-alive, as ``/api/ps`` shows it."""
        left = FOREVER_NS if self._expires_ns is None else self._expires_ns - time.monotonic_ns()
        return time.time_ns() + left  # forever: about 2318, as Go's now + MaxInt64

    def to_json(self) -> dict[str, Any]:
        """Return the counters and residency as JSON-ready data (the control API's answer)."""
        return {
            "loaded": self.loaded(),
            "loads": self.loads,
            "requests": {api: self.requests[api] for api in APIS},
            "running": self.running,
            "queued": self.queued,
            "waiting_for_load": self._load_waiters,
        }

    @contextlib.asynccontextmanager
    async def use(
        self, script: ModelScript, *, received_ns: int, keep_alive: float | None, slot: bool
    ) -> AsyncIterator[Admission]:
        """Hold the model for one request: load it if needed, then take a slot (if ``slot``).

        A request that waited for neither starts at ``received_ns``, so its schedule is
        exactly the script's. ``keep_alive`` (seconds) replaces the model's for everyone;
        the idle timer restarts when the request ends. Raises ``Busy`` if the load queue is
        full; cancelling (the client left) abandons a load nobody else waits for.
        """
        waited = False
        load_wait = 0
        if not self.loaded():
            load_wait = await self._load_once(script)
            waited = True
        if keep_alive is not None:
            self._keep_alive_s = keep_alive
        slots = self._slots_for(script.num_parallel) if slot else None
        if slots is not None:
            waited = waited or slots.locked()
            self.queued += 1
            try:
                await slots.acquire()
            finally:
                self.queued -= 1
        self.running += 1
        try:
            yield Admission(time.monotonic_ns() if waited else received_ns, load_wait)
        finally:
            self.running -= 1
            if slots is not None:
                slots.release()
            self._expires_ns = _deadline(self._keep_alive_s)

    async def _load_once(self, script: ModelScript) -> int:
        """Wait for the model's load, starting it if none is under way; return the wait."""
        if self._load is None:
            self._load = asyncio.ensure_future(asyncio.sleep(script.cold_load_delay))
        elif self._load_waiters > script.max_queue:
            raise Busy
        load = self._load
        started = time.monotonic_ns()
        self._load_waiters += 1
        try:
            await asyncio.shield(load)
        except asyncio.CancelledError:
            if self._load_waiters == 1 and not load.done():
                load.cancel()  # the last waiter left: Ollama abandons the load
                self._load = None
            raise
        finally:
            self._load_waiters -= 1
        if self._load is load:  # the first waiter to wake up records the load
            self._load = None
            self.loads += 1
            self._keep_alive_s = DEFAULT_KEEP_ALIVE_S
            self._expires_ns = _deadline(self._keep_alive_s)
        return time.monotonic_ns() - started

    def _slots_for(self, count: int) -> asyncio.Semaphore | None:
        if count == 0:
            return None
        if self._slots is None or self._slot_count != count:
            self._slots, self._slot_count = asyncio.Semaphore(count), count
        return self._slots


def _deadline(keep_alive_s: float) -> int | None:
    """Monotonic end of a keep-alive from now; None (never) for a negative one."""
    if keep_alive_s < 0:
        return None
    return time.monotonic_ns() + round(keep_alive_s * NS_PER_S)
