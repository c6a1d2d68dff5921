"""A JSON API that needs no backend: ``viewer_request`` answers ``/api/*`` itself.

``GET /api/time`` gives the edge's clock, ``GET /api/echo`` what the edge knows about the viewer (method,
path, query parameters, address, country, device, User-Agent). Anything else under ``/api/`` is a JSON
404, a method other than GET or HEAD a JSON 405. The answers carry ``Cache-Control: no-store`` (a
``viewer_request`` answer is never stored by the edge anyway; this keeps browsers and other caches from
storing it). The behaviour needs no origin: the function answers every request it gets.

    origins:
      site: {root: ./site}
    behaviours:
      - path: /api/*
        functions:
          viewer_request: examples.functions.json_api:viewer_request
      - path: "*"
        origin: site
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from proxy.functions import Response, ViewerRequest, json_response

clock: Callable[[], float] = time.time  # the edge's wall clock (tests replace it)
NO_STORE = {"Cache-Control": "no-store"}


async def viewer_request(request: ViewerRequest) -> Response | None:
    """Every request under the behaviour: answer it. None (go on to the origin) for paths outside /api/."""
    path = request.path
    if not path.startswith("/api/"):
        return None
    if request.method not in ("GET", "HEAD"):
        return json_response({"error": "method not allowed"}, 405, {**NO_STORE, "Allow": "GET, HEAD"})
    if path == "/api/time":
        now = clock()
        iso = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        return json_response({"epoch": now, "iso": iso}, headers=NO_STORE)
    if path == "/api/echo":
        params = request.query_params
        echo = {
            "method": request.method,
            "path": path,
            "query": {name: params.getall(name) for name in params},
            "client_ip": request.client_ip,
            "country": request.country,
            "device": request.device,
            "user_agent": request.headers.get("User-Agent"),
        }
        return json_response(echo, headers=NO_STORE)
    return json_response({"error": "not found", "path": path}, 404, NO_STORE)
