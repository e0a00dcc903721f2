"""An embedded Ollama-compatible server with scripted timing and faults.

Used by the ``demo`` command and by tests over real loopback HTTP: each model follows a
``ModelScript`` (first-token delay, decode rate, token counts, an optional ``Fault``), and
every request is recorded with the monotonic times its chunks were written.
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

__all__ = [
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
