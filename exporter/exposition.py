"""Pre-rendered exposition: scrapes that copy bytes instead of formatting samples.

prometheus-client formats every sample at every scrape, about 10 µs each: at fleet size
(2,000 jobs, some 300,000 samples) a scrape took seconds and held the interpreter, so probe
timings on the event loop suffered. Here a collector keeps its families' text as bytes,
rendered once per change, one block per family and owner (a job), and a scrape joins the
blocks. The few collectors that stay dynamic (process, platform, GC, the exporter's own
gauges) are rendered by prometheus-client as before.

- ``Prerendered``: a collector that can also hand over its families as bytes;
- ``Registry``: a ``CollectorRegistry`` that remembers its collectors in order, so the
  renderer can tell the pre-rendered one from the rest without private API;
- ``Exposition``: one scrape's body, plain text or OpenMetrics, identity or gzip.

Gzip: the pre-rendered part is deflated once per change and cached, as a non-final deflate
block ending on a byte boundary (``Z_SYNC_FLUSH``); each scrape deflates only the small
dynamic part and ends the stream, and the CRC continues over both. The result is one
ordinary gzip member. Level 1: this text compresses ~28-fold at level 1, ~35-fold at level 6
for four times the work. With results arriving between scrapes (a fleet's steady state)
every gzip scrape deflates the whole text, 44 MB at 2,000 jobs: the standard library's zlib
takes ~75 ms for that, ISA-L (``isal``, same ratio) ~10 ms, and both leave the interpreter
lock to the probes meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

try:
    from isal import isal_zlib as deflate
except ImportError:  # a platform without an isal wheel: the standard library, slower
    import zlib as deflate  # type: ignore[no-redef]

GZIP_LEVEL = 1
RAW_DEFLATE = -15  # wbits: a bare deflate stream, no zlib or gzip framing
# Socket writes and deflate calls take the text in pieces of this size: big enough that a
# scrape needs the interpreter lock only a few dozen times (while results are being
# recorded, each time can mean waiting out a 5 ms switch interval), small enough that
# malloc reuses the same memory for each (pieces of 4 MiB were mapped and unmapped every
# time, and their page faults doubled a scrape's time).
BATCH_BYTES = 1024 * 1024
# A gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@runtime_checkable
class Prerendered(Protocol):
    """A collector whose families also exist as exposition bytes."""

    def exposition(self, openmetrics: bool) -> Rendered:
        """Its families as text (no ``# EOF``), with their deflated form; thread-safe."""
        ...


class Rendered:
    """Exposition text of some families as the blocks it is made of, never joined: at fleet
    size it is tens of MB, and a joined copy per scrape (and per format) would double the
    memory. Its deflate stream is computed on first use, once.

    The deflate stream is left open (sync-flushed, not final), so that more data can
    follow it in the same gzip member.
    """

    __slots__ = ("_deflated", "_lock", "length", "parts")

    def __init__(self, parts: list[bytes], length: int | None = None) -> None:
        self.parts = parts
        self.length = sum(map(len, parts)) if length is None else length
        self._deflated: tuple[bytes, int] | None = None
        self._lock = threading.Lock()

    @property
    def text(self) -> bytes:
        """The whole text at once (tests and the slow path only)."""
        return b"".join(self.parts)

    def deflated(self) -> tuple[bytes, int]:
        """(open raw deflate stream, CRC-32) of the text; computed once, by one thread."""
        with self._lock:
            if self._deflated is None:
                compressor = deflate.compressobj(GZIP_LEVEL, deflate.DEFLATED, RAW_DEFLATE)
                stream: list[bytes] = []
                crc = 0
                for batch in batches(self.parts, BATCH_BYTES):
                    stream.append(compressor.compress(batch))  # the lock released inside
                    crc = deflate.crc32(batch, crc)
                stream.append(compressor.flush(deflate.Z_SYNC_FLUSH))
                self._deflated = (b"".join(stream), crc)
            return self._deflated


def batches(parts: Iterable[bytes], size: int = BATCH_BYTES) -> Iterator[bytes]:
    """``parts`` joined into pieces of about ``size`` bytes: few socket writes and zlib
    calls, and never the whole text in memory at once."""
    pending: list[bytes] = []
    held = 0
    for part in parts:
        pending.append(part)
        held += len(part)
        if held >= size:
            yield b"".join(pending)
            pending.clear()
            held = 0
    if pending:
        yield b"".join(pending)


class Registry(CollectorRegistry):
    """A registry that remembers its collectors in registration order, at most one of them
    pre-rendered: a scrape serves that one's cached deflate stream as it is, and a second
    would need its CRC joined to the first's over tens of MB per scrape."""

    def __init__(self) -> None:
        super().__init__()
        self._ordered: list[Collector] = []
        self._order_lock = threading.Lock()

    def register(self, collector: Collector) -> None:
        with self._order_lock:
            if isinstance(collector, Prerendered) and any(
                isinstance(c, Prerendered) for c in self._ordered
            ):
                raise ValueError("a registry serves one pre-rendered collector at most")
            super().register(collector)
            self._ordered.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._order_lock:
            self._ordered.remove(collector)

    def collectors(self) -> list[Collector]:
        with self._order_lock:
            return list(self._ordered)


class _Group:
    """Some collectors seen as one, for prometheus-client's encoders."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


@dataclass(frozen=True)
class Exposition:
    """One scrape's answer: content type, the body in pieces and its length, and whether
    the body is gzip."""

    content_type: str
    body: Iterable[bytes]
    length: int
    gzipped: bool


def render(registry: Registry, accept: str | None, accept_encoding: str | None) -> Exposition:
    """The whole registry in the format ``accept`` asks for, negotiated as prometheus-client
    negotiates it (``choose_encoder``, ``gzip_accepted``), pre-rendered families included."""
    encoder, content_type = exposition.choose_encoder(accept or "")
    is_openmetrics = content_type.startswith("application/openmetrics-text")
    static: Rendered | None = None
    dynamic: list[Collector] = []
    for collector in registry.collectors():
        if isinstance(collector, Prerendered):
            static = collector.exposition(is_openmetrics)
        else:
            dynamic.append(collector)
    tail = encoder(_Group(dynamic))
    if static is None:
        static = Rendered([])
    if not exposition.gzip_accepted(accept_encoding or ""):
        body = batches([*static.parts, tail])
        return Exposition(content_type, body, static.length + len(tail), gzipped=False)
    stream, crc = static.deflated() if static.length else (b"", 0)
    compressor = deflate.compressobj(GZIP_LEVEL, deflate.DEFLATED, RAW_DEFLATE)
    crc = deflate.crc32(tail, crc)
    size = static.length + len(tail)
    # Pieces, not joined: the cached stream is megabytes at fleet size.
    parts = [
        _GZIP_HEADER,
        stream,
        compressor.compress(tail),
        compressor.flush(deflate.Z_FINISH),
        (crc & 0xFFFFFFFF).to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"),
    ]
    return Exposition(content_type, parts, sum(map(len, parts)), gzipped=True)
