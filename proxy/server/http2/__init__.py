"""The edge's HTTP/2 viewer front (RFC 9113) on the sans-IO ``h2`` library: the same pipeline as HTTP/1.1.

``dispatch`` (ALPN on the TLS listener, the prior-knowledge preface with ``server.h2c``) → ``connection``
(one HTTP/2 connection: streams, flow control, limits, graceful GOAWAY). Field rules live in
``proxy.http.h2_fields``, flood budgets in ``proxy.edge.h2_floods``. See docs/protocols.md.
"""

from proxy.server.http2.connection import H2ViewerConnection
from proxy.server.http2.dispatch import enable_http2

__all__ = ["H2ViewerConnection", "enable_http2"]
