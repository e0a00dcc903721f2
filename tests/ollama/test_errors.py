"""Classification of HTTP error responses into reasons."""

from __future__ import annotations

import pytest

from exporter.ollama.errors import classify_status
from exporter.result import Reason


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, b'{"error":"model \'llama3.2:3b\' not found"}', Reason.MODEL_NOT_FOUND),
        (404, b'{"error":"model \\"x\\" not found, try pulling it first"}', Reason.MODEL_NOT_FOUND),
        (404, b"404 page not found", Reason.HTTP_ERROR),
        (404, b"<html>nginx</html>", Reason.HTTP_ERROR),
        (
            503,
            b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
            Reason.SERVER_BUSY,
        ),
        (503, b"<html>Service Unavailable</html>", Reason.SERVER_BUSY),
        (500, b'{"error":"llama-server process has terminated: exit status 2"}', Reason.HTTP_ERROR),
        (400, b'{"error":"\\"m\\" does not support thinking"}', Reason.HTTP_ERROR),
        (403, b"", Reason.HTTP_ERROR),
        (429, b'{"error":"too many"}', Reason.HTTP_ERROR),
        (503, b"[" * 16_000, Reason.SERVER_BUSY),  # deeper than the JSON decoder goes
        (404, b'["model not found"]', Reason.HTTP_ERROR),
    ],
)
def test_classify_status(status: int, body: bytes, reason: Reason) -> None:
    """Only a JSON "not found" 404 is model_not_found; any 503 is server_busy; rest http_error."""
    got, detail = classify_status(status, body)
    assert got is reason
    assert detail.startswith(f"HTTP {status}")


def test_detail_quotes_the_server_error() -> None:
    """The detail (for logs) carries Ollama's error text, not the JSON wrapper."""
    _, detail = classify_status(500, b'{"error":"boom"}')
    assert detail == "HTTP 500: boom"
