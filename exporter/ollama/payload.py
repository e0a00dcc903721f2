"""The request a probe sends: deterministic, except for a nonce that defeats the prompt cache.

Ollama caches the KV state of a repeated prompt, which would turn prefill into a no-op and
make prompt tokens/s meaningless. A short random nonce at the *start* of the prompt changes
the first tokens, so the cache cannot match past the chat template's fixed prefix. Everything
else (options, ``num_predict``, ``think``) is fixed by the profile so runs are comparable.
``keep_alive`` is never sent: it would replace the model's keep-alive for every user.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from exporter.config import ProbeProfile

API_PATHS = {"generate": "api/generate", "chat": "api/chat"}


def new_nonce() -> str:
    """Eight hex digits: unique enough that consecutive probes never share a prompt."""
    return secrets.token_hex(4)


def request_body(profile: ProbeProfile, model: str, nonce: str) -> dict[str, Any]:
    """The JSON object for ``/api/generate`` or ``/api/chat`` with ``stream: true``."""
    prompt = f"[{nonce}] {profile.prompt}"
    body: dict[str, Any] = {"model": model}
    if profile.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body["stream"] = True
    body["options"] = {**profile.options, "num_predict": profile.max_tokens}
    if profile.think is not None:
        body["think"] = profile.think
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
