"""An embedded Ollama-compatible server with scripted timing and faults.

Used by the ``demo`` command and by tests over real loopback HTTP: each model follows a
``ModelScript`` (first-token delay, decode rate, token counts, an optional ``Fault``), and
every request is recorded with the monotonic times its chunks were written.

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

DEFAULT_PORT = 10435

__all__ = [
    "DEFAULT_PORT",
    "DEMO_SCRIPTS",
    "Fault",
    "ModelScript",
    "OllamaSimulator",
    "RecordedRequest",
    "apply_overrides",
    "load_scripts",
    "script_to_dict",
    "serve_forever",
]
