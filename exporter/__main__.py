"""``python -m exporter``: the same entry point as the ``ollama-probe-exporter`` script."""

import sys

from exporter.cli import main

sys.exit(main())
