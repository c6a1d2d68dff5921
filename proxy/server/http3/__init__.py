"""The HTTP/3 viewer front (``server.http3: true``): QUIC and HTTP/3 framing by aioquic, each request
stream through the same pipeline as the HTTP/1.1 front.

``connection`` (one QUIC connection: request streams, flow control, limits, GOAWAY) → ``server`` (UDP
listener, certificate, graceful stop); field sections are read and written by ``proxy.http.h3_fields``.
"""

from proxy.server.http3.server import H3Server, make_h3_server

__all__ = ["H3Server", "make_h3_server"]
