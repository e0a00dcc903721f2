"""Tests for HttpConnection: what it reads from a client while a response is under way."""

from __future__ import annotations

import asyncio
from typing import cast

from exporter.simulator.http11 import MAX_HEAD_BYTES, HttpConnection


class TestClientGone:
    async def test_returns_when_the_client_closes(self) -> None:
        """A close with a little pipelined data before it ends the wait."""
        reader = asyncio.StreamReader()
        conn = HttpConnection(reader, cast(asyncio.StreamWriter, None))
        reader.feed_data(b"GET / HTTP/1.1\r\n")
        reader.feed_eof()
        await asyncio.wait_for(conn.client_gone(), timeout=5)
        assert reader.at_eof()

    async def test_stops_reading_past_a_head_of_pipelined_bytes(self) -> None:
        """A client that keeps sending is not read beyond MAX_HEAD_BYTES: the rest stays unread."""
        reader = asyncio.StreamReader()
        conn = HttpConnection(reader, cast(asyncio.StreamWriter, None))
        reader.feed_data(b"x" * (8 * MAX_HEAD_BYTES))
        reader.feed_eof()
        gone = asyncio.create_task(conn.client_gone())
        # Buffered bytes are read without suspending: one turn of the loop reads all it will.
        await asyncio.sleep(0)
        try:
            assert not gone.done()
            assert not reader.at_eof()  # bytes are left in the reader, not copied into h11
        finally:
            gone.cancel()
