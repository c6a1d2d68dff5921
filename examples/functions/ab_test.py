"""A/B testing by cookie: each viewer is put in bucket ``a`` or ``b`` once, and stays there.

``viewer_request`` reads the ``ab-bucket`` cookie; a viewer without a valid one is given a bucket at
random. The path is then prefixed with the bucket (``/pricing`` → ``/a/pricing``), so the origin serves
each variant under its own prefix and the cache keeps one copy per variant: the key is built after
``viewer_request``, so nothing has to key on the cookie. ``viewer_response`` sets the cookie on the
response of the request that chose the bucket; it runs per viewer, so the ``Set-Cookie`` is never stored
and never sent to another viewer.

    origins:
      app: {url: "http://127.0.0.1:8081"}   # serves /a/... and /b/...
    behaviours:
      - path: "*"
        origin: app
        functions:
          viewer_request: examples.functions.ab_test:viewer_request
          viewer_response: examples.functions.ab_test:viewer_response
"""

from __future__ import annotations

import random

from proxy.functions import RequestInfo, Response, ViewerRequest

COOKIE = "ab-bucket"
BUCKETS = ("a", "b")
MAX_AGE = 30 * 24 * 3600  # the cookie keeps a viewer in its bucket for 30 days
BUCKET_HEADER = "X-AB-Bucket"  # the viewer's bucket, for the origin (and the logs)
ASSIGNED_HEADER = "X-AB-Assigned"  # set when this request chose the bucket: viewer_response sets the cookie


async def viewer_request(request: ViewerRequest) -> None:
    """Every request: find or choose the bucket, then route to its prefix."""
    request.headers.popall(ASSIGNED_HEADER, None)  # only this function may say a bucket was just chosen
    bucket = request.cookies.get(COOKIE)
    if bucket not in BUCKETS:
        bucket = random.choice(BUCKETS)
        request.headers[ASSIGNED_HEADER] = bucket
    request.headers[BUCKET_HEADER] = bucket
    request.path = f"/{bucket}{request.path}"


async def viewer_response(request: RequestInfo, response: Response) -> None:
    """Every response: give the cookie to a viewer whose bucket was chosen by this request."""
    bucket = request.headers.get(ASSIGNED_HEADER)
    if bucket is not None:
        cookie = f"{COOKIE}={bucket}; Path=/; Max-Age={MAX_AGE}; SameSite=Lax"
        response.headers.add("Set-Cookie", cookie)
