"""HTTP endpoints: ``/metrics``, ``/-/healthy``, ``POST /-/reload`` and a landing page ``/``.

- ``app``: the WSGI dispatcher over the four endpoints and the lifecycle gate;
- ``landing``: the landing page, with server-supplied text cut to size;
- ``server``: the threaded server.
"""

from exporter.web.app import LIFECYCLE_FLAG, WebHooks, make_app
from exporter.web.landing import landing_page
from exporter.web.server import WebServer

__all__ = ["LIFECYCLE_FLAG", "WebHooks", "WebServer", "landing_page", "make_app"]
