"""Security headers on every response: HSTS, X-Content-Type-Options, Referrer-Policy and a CSP.

``viewer_response`` runs on every response the viewer gets (hits, misses and the edge's own answers), so
the headers are there even for responses an origin forgot them on. A header the origin already sent is
kept: the origin can still set a page's own CSP. (The same function in ``origin_response`` would store
the headers with each response instead, at no cost per hit, but would not cover the edge's answers.)

    origins:
      app: {url: "http://127.0.0.1:8081"}
    behaviours:
      - path: "*"
        origin: app
        functions:
          viewer_response: examples.functions.security_headers:viewer_response
"""

from __future__ import annotations

from proxy.functions import RequestInfo, Response

HEADERS = {
    # Browsers ignore HSTS on plain HTTP, so it is harmless there and right behind a TLS terminator.
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
}


async def viewer_response(request: RequestInfo, response: Response) -> None:
    """Every response: add each header the response does not have yet."""
    headers = response.headers
    for name, value in HEADERS.items():
        if name not in headers:
            headers[name] = value
