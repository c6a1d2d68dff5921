"""Device-based origin choice: mobile viewers get the mobile site, TVs the TV site, from one origin.

The edge sets ``Edge-Viewer-Device`` (``mobile | tablet | desktop | smarttv | bot``) on every request, from
the User-Agent. ``origin_request`` prefixes the path the origin sees per device class (``/news`` →
``/m/news`` for a phone); the viewer's URL does not change. Because ``origin_request`` runs after the
cache lookup, the cache key must tell the classes apart: ``cache_key.headers: [Edge-Viewer-Device]``
keeps one copy per device class (five at most), instead of one per User-Agent.

This is a plain ``def``: it runs in the edge's function threads (a plain function may block, within the
time bound). It runs on misses only, so the thread hop is cheap here.

    origins:
      app: {url: "http://127.0.0.1:8081"}   # serves /..., /m/... and /tv/...
    behaviours:
      - path: "*"
        origin: app
        cache_key: {headers: [Edge-Viewer-Device]}
        functions:
          origin_request: examples.functions.device_origin:origin_request
"""

from __future__ import annotations

from proxy.functions import ViewerRequest

# Path prefix per device class; tablets, desktops and crawlers get the default site (no prefix).
PREFIXES = {"mobile": "/m", "smarttv": "/tv"}


def origin_request(request: ViewerRequest) -> None:
    """Each origin request: prefix the path for the viewer's device class."""
    prefix = PREFIXES.get(request.device)
    if prefix is not None:
        request.path = prefix + request.path
