"""WSGI types and the one helper every endpoint uses to answer with a small text body.

Kept apart so the dispatcher, the landing page and the auth layer share one definition of a
response without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def respond(
    start: StartResponse,
    status: str,
    body: str,
    ctype: str = "text/plain",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    """Send ``body`` with an explicit length, so the client never waits for the close."""
    data = body.encode()
    start(
        status,
        [
            ("Content-Type", f"{ctype}; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers,
        ],
    )
    return [data]
