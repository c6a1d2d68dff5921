"""The admin API: an aiohttp application on ``admin.listen``, JSON in and out, behind a bearer token.

``make_admin_app`` is called once per edge process that serves the admin listener; it only translates HTTP
to calls on an ``AdminOps`` (what the edge provides: bans, stores, metrics, reload) and back. Endpoints:

- ``POST /invalidations {"paths": [...]}`` → 201 + ``Location``; ``GET /invalidations/{id}`` → 200 / 404
- ``POST /purge {"tags": [...], "soft": false}`` → 200
- ``GET /healthz`` (liveness) → 200 · ``GET /readyz`` (readiness) → 200 / 503
- ``GET /stats`` → 200 · ``GET /metrics`` → Prometheus text
- ``GET /dashboard`` → the live page (or the login form, 401) · ``POST /dashboard/login`` (form ``token``)
  → 303 + cookie · ``GET /dashboard/data`` → the page's JSON (docs/operations.md)
- ``POST /reload`` → 200 / 500

Security: with a non-empty token every request (unknown paths and wrong methods included) first has to
carry ``Authorization: Bearer <token>``, else it gets 401 ``{"error": "unauthorized"}`` and nothing else.
The two probes are the exception: ``GET /healthz`` and ``GET /readyz`` answer without the token, with
their status word only (``{"status": "pass"}``); with the token they add their checks. The dashboard's
login form trades the token for an HttpOnly, SameSite=Strict cookie holding a keyed digest of it (never
the token itself); the cookie is accepted for GET and HEAD only, so it can read but never change anything.
Error bodies are fixed sentences or validation messages: no tracebacks, no exception texts, no file paths
(unexpected exceptions are logged and answered 500 ``{"error": "internal error"}``). Request bodies are
bounded; every answer says ``Server: edgeproxy`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol

from aiohttp import web

from proxy.admin.dashboard_page import LOGIN, PAGE
from proxy.admin.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from proxy.cache.bans import (
    MAX_BAN_ID_LENGTH,
    MAX_PATHS_PER_BAN,
    MAX_TAGS_PER_BAN,
    path_problem,
    tag_problem,
)

__all__ = [
    "MAX_BODY_BYTES",
    "OPERATION_TIMEOUT",
    "AdminError",
    "AdminOps",
    "Invalidation",
    "make_admin_app",
]

log = logging.getLogger("edgeproxy.admin")

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body: the biggest valid invalidation (3000 paths of 4096 characters) fits."""
OPERATION_TIMEOUT = 30.0
"""Seconds an ``AdminOps`` call may take before the API answers 504."""

JSONObject = dict[str, Any]
_ID_RE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_BAN_ID_LENGTH}}}")
_AUTH_SCHEME = "bearer"


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One path invalidation as the API shows it (CloudFront's Invalidation: id, status, time, paths).

    Returned by ``AdminOps.invalidate`` and ``get_invalidation``. ``status`` is ``"Completed"`` once every
    node will honour it (the ban is published where they read it), ``"InProgress"`` before; ``created`` is
    epoch seconds. ``id`` must be ``[A-Za-z0-9._:-]``, at most 128 characters (it goes into a URL).
    """

    id: str
    status: Literal["InProgress", "Completed"]
    created: float
    paths: tuple[str, ...]

    def to_json(self) -> JSONObject:
        """The response body: ``created`` as ISO 8601 UTC (``2024-05-01T12:00:00.250Z``)."""
        when = dt.datetime.fromtimestamp(self.created, dt.UTC)
        return {
            "id": self.id,
            "status": self.status,
            "created": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "paths": list(self.paths),
        }


class AdminError(Exception):
    """Raised by an ``AdminOps`` method for an expected failure the caller should see.

    The API answers ``status`` with ``{"error": message}``, so ``message`` must be fit for the operator
    (e.g. ``AdminError("shared tier unavailable: invalidation not published", 503)``, or a reload's config
    errors). Any other exception is logged and answered 500 ``{"error": "internal error"}``.
    """

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AdminOps(Protocol):
    """What the edge provides to the admin API. Every method is a coroutine: publishing a ban, reading
    another node's invalidation or gathering the metrics of all workers may need the shared tier or other
    processes. Inputs are already validated; methods may raise ``AdminError``."""

    async def invalidate(self, paths: list[str]) -> Invalidation:
        """Called by ``POST /invalidations`` with 1-3000 valid, distinct path patterns; must return only
        once the ban is in force for later lookups on this node (and, for a ``"Completed"`` result, on
        every node)."""
        ...

    async def get_invalidation(self, invalidation_id: str) -> Invalidation | None:
        """Called by ``GET /invalidations/{id}``; None when unknown (404)."""
        ...

    async def purge(self, tags: list[str], soft: bool) -> JSONObject:
        """Called by ``POST /purge`` with 1-3000 valid, distinct tags; ``soft`` marks stale instead of
        invalid. Same "in force on return" rule as ``invalidate``; the result is the 200 body."""
        ...

    async def stats(self) -> JSONObject:
        """Called by ``GET /stats``: entries, bytes, hit ratio, origin health…; the result is the body."""
        ...

    async def metrics(self) -> str:
        """Called by ``GET /metrics``: Prometheus text (see ``proxy.admin.metrics.render``)."""
        ...

    async def healthz(self) -> tuple[bool, JSONObject]:
        """Called by ``GET /healthz`` with the token: (healthy, details); 200 when healthy, else 503.
        (Without the token the probe answers 200 itself: the process and its event loop are alive.)"""
        ...

    async def readyz(self) -> tuple[bool, JSONObject]:
        """Called by ``GET /readyz``: (ready, checks): ready once the listeners are up on a loaded config,
        whether the shared tier answers or the edge serves degraded without it; 200 when ready, else 503.
        The checks are shown only with the token."""
        ...

    async def dashboard(self) -> JSONObject:
        """Called by ``GET /dashboard/data`` (the page polls it every second): the JSON document described
        in docs/operations.md, summed over the node's workers."""
        ...

    async def reload(self) -> JSONObject:
        """Called by ``POST /reload``: reload the configuration; the result is the 200 body. A refused
        config raises ``AdminError(message)`` (500 with the message)."""
        ...


# ------------------------------------------------------------------------------------------------ helpers


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(_jsonable(body), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return web.Response(
        status=status, text=text, content_type="application/json", charset="utf-8", headers=headers
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


class _BadRequest(Exception):
    """A request the API refuses with 400 and this message."""


def _bad(message: str) -> NoReturn:
    raise _BadRequest(message)


def _reject_constant(name: str) -> NoReturn:
    _bad(f"malformed JSON: {name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        _bad("malformed JSON: duplicate keys")
    return result


async def _read_object(request: web.Request, allowed: frozenset[str]) -> JSONObject:
    """The request body as a JSON object with only ``allowed`` keys, else 400 (413 when too large)."""
    raw = await request.read()  # raises HTTPRequestEntityTooLarge beyond client_max_size
    try:
        data = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_reject_constant
        )
    except _BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        _bad("malformed JSON")
    if not isinstance(data, dict):
        _bad("the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        _bad(f"unknown field {json.dumps(unknown[0][:64])}")
    return data


def _string_list(
    data: JSONObject, key: str, limit: int, problem: Callable[[object], str | None]
) -> list[str]:
    """``data[key]`` as a non-empty list of at most ``limit`` valid strings, duplicates removed."""
    if key not in data:
        _bad(f'"{key}" is required')
    items = data[key]
    if not isinstance(items, list):
        _bad(f'"{key}" must be a list of strings')
    if not items:
        _bad(f'"{key}" must not be empty')
    if len(items) > limit:
        _bad(f'"{key}" has {len(items)} items; at most {limit} are allowed per call')
    for index, item in enumerate(items):
        reason = problem(item)
        if reason:
            _bad(f"{key}[{index}] {reason}")
    return list(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------------ the app

_OPS = web.AppKey("admin_ops", AdminOps)
_TIMEOUT = web.AppKey("admin_timeout", float)
_TOKEN = web.AppKey("admin_token", str)

_HTTP_ERRORS = {
    400: "bad request",
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}


async def _call(request: web.Request, operation: Callable[[], Awaitable[Any]]) -> Any:
    """Run one ``AdminOps`` call under the operation timeout (504 when it runs out)."""
    try:
        async with asyncio.timeout(request.app[_TIMEOUT]):
            return await operation()
    except TimeoutError:
        raise AdminError("the operation timed out; it may still complete", 504) from None


async def _post_invalidation(request: web.Request) -> web.Response:
    data = await _read_object(request, frozenset({"paths"}))
    paths = _string_list(data, "paths", MAX_PATHS_PER_BAN, path_problem)
    ops = request.app[_OPS]
    invalidation: Invalidation = await _call(request, lambda: ops.invalidate(paths))
    return _json(invalidation.to_json(), 201, {"Location": f"/invalidations/{invalidation.id}"})


async def _get_invalidation(request: web.Request) -> web.Response:
    invalidation_id = request.match_info["id"]
    if not _ID_RE.fullmatch(invalidation_id):
        return _error(404, "not found")
    ops = request.app[_OPS]
    invalidation: Invalidation | None = await _call(request, lambda: ops.get_invalidation(invalidation_id))
    if invalidation is None:
        return _error(404, "not found")
    return _json(invalidation.to_json())


async def _post_purge(request: web.Request) -> web.Response:
    data = await _read_object(request, frozenset({"tags", "soft"}))
    tags = _string_list(data, "tags", MAX_TAGS_PER_BAN, tag_problem)
    soft = data.get("soft", False)
    if not isinstance(soft, bool):
        _bad('"soft" must be true or false')
    ops = request.app[_OPS]
    result: JSONObject = await _call(request, lambda: ops.purge(tags, soft))
    return _json(result)


_AUTHORIZED = web.RequestKey("admin_authorized", bool)
_OPEN_UNAUTHORIZED = frozenset({"/healthz", "/readyz", "/dashboard"})
"""Paths answered without the token: the orchestrators' probes, with nothing but their status, and the
dashboard, with its login form."""


async def _pass(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    return response


def _authorized(request: web.Request) -> bool:
    return bool(request.get(_AUTHORIZED, True))


async def _get_healthz(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _json({"status": "pass"})  # liveness: this process answers HTTP
    ops = request.app[_OPS]
    healthy, details = await _call(request, ops.healthz)
    return _json({"status": "pass" if healthy else "fail", "checks": details}, 200 if healthy else 503)


async def _get_readyz(request: web.Request) -> web.Response:
    ops = request.app[_OPS]
    ready, checks = await _call(request, ops.readyz)
    body: JSONObject = {"status": "pass" if ready else "fail"}
    if _authorized(request):
        body["checks"] = checks
    return _json(body, 200 if ready else 503)


async def _get_stats(request: web.Request) -> web.Response:
    return _json(await _call(request, request.app[_OPS].stats))


async def _get_metrics(request: web.Request) -> web.Response:
    text: str = await _call(request, request.app[_OPS].metrics)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": METRICS_CONTENT_TYPE})


_COOKIE = "edgeproxy_admin"
_PAGE_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _page(template: str, status: int = 200, message: str = "") -> web.Response:
    nonce = secrets.token_urlsafe(16)
    body = template.replace("{nonce}", nonce).replace("{message}", html.escape(message))
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": _PAGE_CSP.replace("{nonce}", nonce),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _get_dashboard(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _page(LOGIN, 401)
    return _page(PAGE)


async def _post_login(request: web.Request) -> web.StreamResponse:
    token = request.app[_TOKEN]
    form = await request.post()
    given = form.get("token")
    if not token:
        raise web.HTTPSeeOther("/dashboard")
    if not isinstance(given, str) or not hmac.compare_digest(_digest(given.strip()), _digest(token)):
        return _page(LOGIN, 401, "That is not the admin token.")
    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        _COOKIE, _cookie_value(token), httponly=True, samesite="Strict", path="/", max_age=12 * 3600
    )
    raise response


async def _get_dashboard_data(request: web.Request) -> web.Response:
    return _json(await _call(request, request.app[_OPS].dashboard))


async def _post_reload(request: web.Request) -> web.Response:
    return _json(await _call(request, request.app[_OPS].reload))


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _cookie_value(token: str) -> str:
    """The dashboard cookie: a keyed digest of the token (it cannot be used as a bearer token, and changes
    when the token does)."""
    return hmac.new(token.encode("utf-8", "surrogatepass"), b"edgeproxy-dashboard", "sha256").hexdigest()


def _auth_middleware(token: str) -> Any:
    """Refuse every request without the right bearer token, before routing errors can show anything."""
    expected = _digest(token)
    cookie = _digest(_cookie_value(token))
    unauthorized_headers = {"WWW-Authenticate": 'Bearer realm="edgeproxy-admin"'}

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if (
            request.method in ("GET", "HEAD")
            and _COOKIE in request.cookies
            and hmac.compare_digest(_digest(request.cookies[_COOKIE]), cookie)
        ):
            return await _pass(request, handler)
        if request.path == "/dashboard/login" and request.method == "POST":
            return await _pass(request, handler)  # checks the token itself
        values = request.headers.getall("Authorization", [])
        given = ""
        if len(values) == 1:
            scheme, _, credentials = values[0].strip().partition(" ")
            if scheme.lower() == _AUTH_SCHEME:
                given = credentials.strip()
        # Digests have a fixed length, so the comparison time says nothing about the token's length either.
        if not given or not hmac.compare_digest(_digest(given), expected):
            if request.path in _OPEN_UNAUTHORIZED and request.method in ("GET", "HEAD"):
                request[_AUTHORIZED] = False
                return await _pass(request, handler)
            return _error(401, "unauthorized", unauthorized_headers)
        response: web.StreamResponse = await handler(request)
        return response

    return authenticate


@web.middleware
async def _errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure into a JSON error without internals; the outermost middleware."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _BadRequest as exc:
        return _error(400, str(exc))
    except AdminError as exc:
        status = exc.status if 400 <= exc.status <= 599 else 500
        return _error(status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect is not an error (the dashboard login answers 303)
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = _HTTP_ERRORS.get(exc.status, "request refused" if exc.status < 500 else "internal error")
        return _error(exc.status, message, headers)
    except Exception:
        log.exception("admin API: %s %s failed", request.method, request.path)
        return _error(500, "internal error")


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "edgeproxy"
    response.headers["Cache-Control"] = "no-store"


def make_admin_app(
    admin: AdminOps,
    token: str,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    operation_timeout: float = OPERATION_TIMEOUT,
) -> web.Application:
    """Build the admin application; called once by the edge when ``admin`` is configured.

    ``token`` is ``admin.token``: non-empty → every request needs ``Authorization: Bearer <token>``;
    empty → the API is open (the settings only allow that on loopback). The caller runs the result on
    ``admin.listen`` (``web.AppRunner`` + ``web.TCPSite``) and cleans it up on shutdown.
    """
    middlewares = [_errors_middleware]
    if token:
        middlewares.append(_auth_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=max_body_bytes)
    app[_OPS] = admin
    app[_TIMEOUT] = operation_timeout
    app[_TOKEN] = token
    app.on_response_prepare.append(_server_header)
    app.router.add_post("/invalidations", _post_invalidation)
    app.router.add_get("/invalidations/{id}", _get_invalidation)
    app.router.add_post("/purge", _post_purge)
    app.router.add_get("/healthz", _get_healthz)
    app.router.add_get("/readyz", _get_readyz)
    app.router.add_get("/stats", _get_stats)
    app.router.add_get("/metrics", _get_metrics)
    app.router.add_post("/reload", _post_reload)
    app.router.add_get("/dashboard", _get_dashboard)
    app.router.add_post("/dashboard/login", _post_login)
    app.router.add_get("/dashboard/data", _get_dashboard_data)
    return app
