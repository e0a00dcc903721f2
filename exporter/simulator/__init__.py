"""An embedded Ollama-compatible server with scripted timing and faults.

Used by the ``demo`` command and by tests over real loopback HTTP: each model follows a
``ModelScript`` (first-token delay, decode rate, token counts, prefill rate, residency and
load delay, parallel slots, an optional ``Fault``) on ``/api/generate``, ``/api/chat`` and
``/v1/chat/completions``; every request is recorded with the monotonic times its chunks
were written, and each model's ``ModelState`` counts its loads and requests.

It says what it is (``/api/version`` answers ``0.0.0-simulator``, every response carries
``Server: ollama-probe-exporter-simulator/<version>``) and listens on its own default port,
``DEFAULT_PORT``, so nobody mistakes it for a real Ollama on 11434.
"""

from exporter.simulator.http11 import RecordedRequest
from exporter.simulator.script import (
    DEMO_SCRIPTS,
    Fault,
    ModelScript,
    apply_overrides,
    load_scripts,
    script_to_dict,
)
from exporter.simulator.server import OllamaSimulator, serve_forever
from exporter.simulator.state import ModelState

DEFAULT_PORT = 10435

__all__ = [
    "DEFAULT_PORT",
    "DEMO_SCRIPTS",
    "Fault",
    "ModelScript",
    "ModelState",
    "OllamaSimulator",
    "RecordedRequest",
    "apply_overrides",
    "load_scripts",
    "script_to_dict",
    "serve_forever",
]
