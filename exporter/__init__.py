"""ollama-probe-exporter: scheduled streaming probes against Ollama, exported to Prometheus."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollama-probe-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
