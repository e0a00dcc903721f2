"""HTTP endpoints: ``/metrics``, ``/-/healthy``, ``POST /-/reload`` and a landing page ``/``.

- ``app``: the WSGI dispatcher over the four endpoints and the lifecycle gate;
- ``landing``: the landing page, with server-supplied text cut to size;
- ``config``: the ``--web.config.file`` format (exporter-toolkit's) and its validation;
- ``source``: that file as of each connection, re-read when it changes;
- ``auth``: basic auth (bcrypt, cached) and extra headers around every route;
- ``limits``: the connection budget, the per-connection deadlines and the head's byte budget;
- ``server``: the threaded server (accept loop, TLS per connection) and its addresses.
"""

from exporter.web.app import LIFECYCLE_FLAG, WebHooks, make_app
from exporter.web.config import WebConfig, WebConfigError, load_web_config
from exporter.web.landing import landing_page
from exporter.web.limits import ServerLimits
from exporter.web.server import WebServer

__all__ = [
    "LIFECYCLE_FLAG",
    "ServerLimits",
    "WebConfig",
    "WebConfigError",
    "WebHooks",
    "WebServer",
    "landing_page",
    "load_web_config",
    "make_app",
]
