"""Map an HTTP error response to exactly one ``Reason``: pure, so every case is unit-tested.

Ollama answers handler errors as ``{"error": "..."}`` JSON. A reverse proxy's own 404 (wrong
base path, unknown route) is plain text, and only Ollama's JSON "model … not found" means the
model is missing; everything else non-2xx except 503 is a generic ``http_error``.
"""

from __future__ import annotations

from exporter.ollama.decoding import InvalidLine, load_object, message_of
from exporter.result import Reason

# How much of an error response is read: enough for any Ollama error object (a llama-server
# error quoted inside it included); the rest is never read, let alone kept.
ERROR_BODY_LIMIT = 16 * 1024


def error_message(body: bytes) -> str | None:
    """The ``error`` string of an Ollama JSON error body, or None if the body is not one."""
    try:
        obj = load_object(body)  # bounded like a stream line: nesting too deep is not JSON
    except InvalidLine:
        return None
    return message_of(obj.get("error"))


def classify_status(status: int, body: bytes) -> tuple[Reason, str]:
    """Reason and a detail for a non-2xx response with (the first ``ERROR_BODY_LIMIT`` bytes of)
    ``body``; the detail is cut short where the ProbeResult is built."""
    message = error_message(body)
    shown = message if message is not None else body[:200].decode("utf-8", "replace").strip()
    detail = f"HTTP {status}: {shown}" if shown else f"HTTP {status}"
    if status == 404 and message is not None and "not found" in message:
        return Reason.MODEL_NOT_FOUND, detail
    if status == 503:
        return Reason.SERVER_BUSY, detail
    return Reason.HTTP_ERROR, detail
