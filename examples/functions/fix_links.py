"""Fix links before storing: rewrite ``http://`` links to the site's own host as ``https://`` in HTML.

``origin_response`` runs on a miss, after the origin answered and before the response is stored, so the
rewritten page is what the cache keeps: the work is done once per fill, not once per viewer. Bodies larger
than the object size limit stream through untouched (``response.body`` is None then).

    behaviours:
      - path: "*"
        origin: app
        functions:
          origin_response: examples.functions.fix_links:origin_response
"""

from __future__ import annotations

from proxy.functions import RequestInfo, Response


async def origin_response(request: RequestInfo, response: Response) -> None:
    """HTML from the origin: upgrade absolute links to this host to https."""
    if response.body is None or not response.headers.get("Content-Type", "").startswith("text/html"):
        return
    host = request.host.encode()
    if not host:
        return
    response.body = response.body.replace(b"http://" + host, b"https://" + host)
