"""The edge's own HTTP/1.1 viewer front on uvloop: ``httptools`` (llhttp) parses, an ``asyncio.Protocol``
per connection hands ``EdgeRequest``s to the pipeline and writes its ``EdgeResponse``s.

``parse`` (sans-IO parsing and head limits) → ``connection`` (one viewer connection: ordering, framing,
backpressure, timeouts) → ``server`` (listeners, connection bound, graceful stop); ``wire`` holds the
bytes written; ``body`` the request body iterator.
"""

from proxy.server.http1.body import ViewerBodyError
from proxy.server.http1.server import H1Server, default_max_connections, make_server

__all__ = ["H1Server", "ViewerBodyError", "default_max_connections", "make_server"]
