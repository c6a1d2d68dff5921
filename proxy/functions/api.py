"""What an edge function receives and returns: small typed objects, independent of the server framework.

An edge function is named in a behaviour (``functions.viewer_request: package.module:function``) and is
called by the pipeline through ``FunctionSet`` (``proxy.functions.loader``) at one of four events:

- ``viewer_request(request)``: may change ``request.path``, ``request.query`` and ``request.headers`` (before
  the cache: the key is built from them), or return a ``Response`` that answers the viewer (never stored).
- ``origin_request(request)``: may change the origin request's ``path``, ``query`` and ``headers``, or
  return a ``Response`` that stands in for the origin's.
- ``origin_response(request, response)``: may change ``response.status``, ``response.headers`` and
  ``response.body``: what the edge stores, so the changes are cached.
- ``viewer_response(request, response)``: may change ``response.status`` and ``response.headers``, per
  viewer, never stored; ``response.body`` is read-only.

What may not be changed is refused, loudly: ``ViewerRequest.method`` (and the client's address, host,
scheme) have no setter; the ``RequestInfo`` handed to the response events is read-only (its headers are a
``CIMultiDictProxy``); setting ``response.body`` in ``viewer_response`` raises ``ReadOnlyError``. mypy flags
the first two before the code runs. Each error, like any exception a function raises, becomes a
``FunctionError`` and a 502 for that request (see ``proxy.functions.loader``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from proxy.functions.device import DEVICE_CLASSES, DEVICE_HEADER, DeviceClass, classify_device
from proxy.http.cookies import cookie_map

__all__ = [
    "COUNTRY_HEADER",
    "Event",
    "HeadersInit",
    "ReadOnlyError",
    "RequestInfo",
    "Response",
    "ViewerRequest",
    "json_response",
    "redirect",
    "respond",
]

COUNTRY_HEADER: Final = "Edge-Viewer-Country"  # set by the GeoIP guard (proxy.edge.geo), XX when unknown
REDIRECT_STATUSES: Final = frozenset((301, 302, 303, 307, 308))

HeadersInit: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | None
BodyPart: TypeAlias = bytes | memoryview

# RFC 3986 origin-form: printable ASCII without spaces; "?" and "#" belong to the query and fragment.
_PATH_RE = re.compile(r"/[\x21-\x22\x24-\x3e\x40-\x7e]*")
_QUERY_RE = re.compile(r"[\x21-\x22\x24-\x7e]*")
_LOCATION_BAD = re.compile(r"[\x00-\x20\x7f]")


class Event(StrEnum):
    """The four moments a function can run at (the keys of ``behaviours[].functions``)."""

    VIEWER_REQUEST = "viewer_request"
    ORIGIN_REQUEST = "origin_request"
    ORIGIN_RESPONSE = "origin_response"
    VIEWER_RESPONSE = "viewer_response"


class ReadOnlyError(AttributeError):
    """A function tried to change something its event does not allow (``response.body`` in
    ``viewer_response``). Raised inside the function, so it ends as a ``FunctionError`` (502)."""


def _headers_of(init: HeadersInit) -> CIMultiDict[str]:
    if init is None:
        return CIMultiDict()
    if isinstance(init, CIMultiDict):
        return init
    return CIMultiDict(init)


class _RequestFields:
    """What every request view shares: the read-only fields and the views derived from the headers."""

    __slots__ = (
        "_client_ip",
        "_cookies",
        "_cookies_of",
        "_event",
        "_headers",
        "_host",
        "_method",
        "_params",
        "_params_of",
        "_path",
        "_query",
        "_scheme",
    )

    _headers: CIMultiDict[str] | CIMultiDictProxy[str]

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: CIMultiDict[str] | CIMultiDictProxy[str],
        client_ip: str,
        host: str,
        scheme: str,
        event: Event,
    ) -> None:
        self._method = method
        self._path = path
        self._query = query
        self._headers = headers
        self._client_ip = client_ip
        self._host = host
        self._scheme = scheme
        self._event = event
        self._params: MultiDictProxy[str] | None = None
        self._params_of = ""
        self._cookies: Mapping[str, str] = MappingProxyType({})
        self._cookies_of = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._event} {self._method} {self.target}>"

    @property
    def event(self) -> Event:
        """The event this request is handed to."""
        return self._event

    @property
    def method(self) -> str:
        """The request method (upper case). Read-only: a function cannot change it."""
        return self._method

    @property
    def path(self) -> str:
        """The raw (percent-encoded) path, starting with ``/``."""
        return self._path

    @property
    def query(self) -> str:
        """The raw query string without ``?`` (empty when there is none)."""
        return self._query

    @property
    def target(self) -> str:
        """The origin-form target: path plus ``?query`` when there is one."""
        return f"{self._path}?{self._query}" if self._query else self._path

    @property
    def query_params(self) -> MultiDictProxy[str]:
        """The query's parameters, decoded (read-only; blank values kept). Follows changes to ``query``."""
        if self._params is None or self._params_of != self._query:
            self._params = MultiDictProxy(MultiDict(parse_qsl(self._query, keep_blank_values=True)))
            self._params_of = self._query
        return self._params

    @property
    def cookies(self) -> Mapping[str, str]:
        """The viewer's cookies by name, parsed from the ``Cookie`` header(s) (read-only; to change what the
        origin gets, change ``headers["Cookie"]``). Follows changes to the header."""
        value = "; ".join(self._headers.getall("Cookie", ()))
        if value != self._cookies_of:
            self._cookies = MappingProxyType(cookie_map(self._headers.getall("Cookie", ())))
            self._cookies_of = value
        return self._cookies

    @property
    def client_ip(self) -> str:
        """The viewer's address (after ``trusted_proxies``, as the edge determined it)."""
        return self._client_ip

    @property
    def host(self) -> str:
        """The host the viewer asked for (``Host`` or the absolute-form authority)."""
        return self._host

    @property
    def scheme(self) -> str:
        """``http`` or ``https``: how the viewer reached the edge."""
        return self._scheme

    @property
    def country(self) -> str | None:
        """The viewer's country (ISO 3166 alpha-2, ``XX`` when unknown) from ``Edge-Viewer-Country``, which
        the edge sets when ``geoip`` is configured; None when the header is absent."""
        value = self._headers.get(COUNTRY_HEADER)
        return value.strip() if value else None

    @property
    def device(self) -> DeviceClass:
        """``mobile``, ``tablet``, ``desktop``, ``smarttv`` or ``bot``: the ``Edge-Viewer-Device`` header the
        edge set, else classified from ``User-Agent`` (``proxy.functions.device``)."""
        value = self._headers.get(DEVICE_HEADER)
        if value is not None:
            value = value.strip().lower()
            for device in _DEVICES:
                if value == device:
                    return device
        return classify_device(self._headers.get("User-Agent"))


_DEVICES: tuple[DeviceClass, ...] = ("mobile", "tablet", "desktop", "smarttv", "bot")
assert frozenset(_DEVICES) == DEVICE_CLASSES


class ViewerRequest(_RequestFields):
    """The request handed to ``viewer_request`` and ``origin_request`` functions.

    In ``viewer_request`` it is the viewer's request as it arrived (after the edge's guards, with
    ``Edge-Viewer-Device`` / ``Edge-Viewer-Country`` set); its changes apply before the cache: the cache
    key is built from the changed path, query and headers (the behaviour is not matched again). In
    ``origin_request`` it is the request the edge is about to send to the origin (``method`` is ``GET`` on
    a cache fill, the edge's own headers such as ``X-Forwarded-For`` and ``Via`` included); its changes
    reach the origin only and do not change the cache key.

    ``path``, ``query`` and ``headers`` may be changed; ``method``, ``client_ip``, ``host`` and ``scheme``
    are read-only. ``headers``: a ``CIMultiDict`` passed in is used (and changed) as is; anything else is
    copied into a new one.
    """

    __slots__ = ()

    _headers: CIMultiDict[str]

    def __init__(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: HeadersInit = None,
        client_ip: str = "",
        host: str = "",
        scheme: str = "http",
        event: Event = Event.VIEWER_REQUEST,
    ) -> None:
        super().__init__(method.upper(), path, query, _headers_of(headers), client_ip, host, scheme, event)

    @property
    def headers(self) -> CIMultiDict[str]:
        """The request header fields, case-insensitive, several values per name allowed; change in place."""
        return self._headers

    @property
    def path(self) -> str:
        """The raw (percent-encoded) path, starting with ``/``. Settable: printable ASCII without spaces,
        ``?`` or ``#`` (put the query in ``query``); anything else raises ``ValueError``."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if not isinstance(value, str) or not _PATH_RE.fullmatch(value):
            raise ValueError(
                f"request.path must start with '/' and be printable ASCII without spaces, '?' or '#' "
                f"(percent-encode the rest, put the query in request.query), got {value!r}"
            )
        self._path = value

    @property
    def query(self) -> str:
        """The raw query string without ``?``. Settable (a leading ``?`` is dropped): printable ASCII
        without spaces or ``#`` (``urllib.parse.urlencode`` builds one); else ``ValueError``."""
        return self._query

    @query.setter
    def query(self, value: str) -> None:
        if isinstance(value, str) and value.startswith("?"):
            value = value[1:]
        if not isinstance(value, str) or not _QUERY_RE.fullmatch(value):
            raise ValueError(
                "request.query must be printable ASCII without spaces or '#' (percent-encoded), "
                f"got {value!r}"
            )
        self._query = value


class RequestInfo(_RequestFields):
    """The request, read-only, handed to ``origin_response`` and ``viewer_response`` functions with the
    response: the viewer's request as the edge handled it (after ``viewer_request`` changed it).
    ``headers`` is a ``CIMultiDictProxy``: changing it raises ``TypeError``."""

    __slots__ = ()

    _headers: CIMultiDictProxy[str]

    def __init__(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: HeadersInit | CIMultiDictProxy[str] = None,
        client_ip: str = "",
        host: str = "",
        scheme: str = "http",
        event: Event = Event.VIEWER_RESPONSE,
    ) -> None:
        view = headers if isinstance(headers, CIMultiDictProxy) else CIMultiDictProxy(_headers_of(headers))
        super().__init__(method.upper(), path, query, view, client_ip, host, scheme, event)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request header fields, read-only."""
        return self._headers


def _check_status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise ValueError(f"response.status must be an integer from 200 to 599, got {value!r}")
    return int(value)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"response.body must be bytes (or str, sent as UTF-8), got {type(value).__name__}")


class Response:
    """A response: one a function generates (``respond``, ``redirect``, ``json_response`` or
    ``Response(...)``), or the one the edge hands to ``origin_response`` / ``viewer_response``.

    ``status`` and ``headers`` may always be changed (headers in place). ``body`` is the whole body as bytes,
    or None when the edge did not hold it whole (a streamed body: larger than the edge buffers, or of
    unknown length). It may be set (bytes, or str sent as UTF-8) in a generated response and in
    ``origin_response``, where it replaces the origin's body, streamed or not; in ``viewer_response`` it is
    read-only and setting it raises ``ReadOnlyError``. Framing fields (``Content-Length``,
    ``Transfer-Encoding``) are the edge's: it recomputes them for the body it sends.
    """

    __slots__ = ("_body", "_body_replaced", "_body_writable", "_event", "_headers", "_parts", "_status")

    def __init__(self, status: int = 200, headers: HeadersInit = None, body: bytes | str = b"") -> None:
        self._status = _check_status(status)
        self._headers = _headers_of(headers)
        self._body: bytes | None = _as_bytes(body)
        self._parts: BodyPart | Sequence[BodyPart] | None = None
        self._event: Event | None = None
        self._body_writable = True
        self._body_replaced = False

    @classmethod
    def for_event(
        cls,
        event: Event,
        status: int,
        headers: CIMultiDict[str],
        body: BodyPart | Sequence[BodyPart] | None,
    ) -> Response:
        """The response handed to an ``origin_response`` or ``viewer_response`` function; called by the
        pipeline glue (``proxy.functions.bridge``). ``headers`` is used (and changed) in place; ``body`` is
        None for a streamed body, else bytes or the parts the edge will write (joined only if the function
        reads ``body``). The body is writable in ``origin_response`` only."""
        response = cls.__new__(cls)
        response._status = status
        response._headers = headers
        response._body = None
        response._parts = body
        response._event = event
        response._body_writable = event is not Event.VIEWER_RESPONSE
        response._body_replaced = False
        return response

    def __repr__(self) -> str:
        where = self._event or "generated"
        return f"<Response {where} {self._status}>"

    @property
    def event(self) -> Event | None:
        """The event this response is handed to; None for a response a function generated."""
        return self._event

    @property
    def status(self) -> int:
        """The status code (200 to 599). Settable in every event."""
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = _check_status(value)

    @property
    def headers(self) -> CIMultiDict[str]:
        """The response header fields, case-insensitive, several values per name allowed; change in place."""
        return self._headers

    @property
    def body(self) -> bytes | None:
        """The whole body, or None when the edge streams it (see the class docstring)."""
        if self._body is None and self._parts is not None:
            parts = self._parts
            if isinstance(parts, bytes):
                self._body = parts
            elif isinstance(parts, memoryview):
                self._body = parts.tobytes()
            else:
                self._body = b"".join(parts)
            self._parts = None
        return self._body

    @body.setter
    def body(self, value: bytes | str) -> None:
        if not self._body_writable:
            raise ReadOnlyError(
                f"response.body is read-only in {self._event}: a viewer_response function may change "
                "status and headers only (change the body in origin_response, where it is stored)"
            )
        self._body = _as_bytes(value)
        self._parts = None
        self._body_replaced = True

    @property
    def body_replaced(self) -> bool:
        """Whether a function assigned ``body`` (so the edge must send and store that, not the origin's)."""
        return self._body_replaced


def respond(
    status: int,
    body: bytes | str = b"",
    headers: HeadersInit = None,
    *,
    content_type: str | None = None,
) -> Response:
    """A response for a ``viewer_request`` or ``origin_request`` function to return, answering the request
    without the origin (a generated page, a block, an API answer).

    ``body`` as str is sent as UTF-8. ``Content-Type`` is ``content_type`` when given, else the one in
    ``headers``, else ``text/plain; charset=utf-8`` for a str body and ``application/octet-stream`` for a
    non-empty bytes body.
    """
    response = Response(status, headers, body)
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    elif "Content-Type" not in response.headers and body:
        default = "text/plain; charset=utf-8" if isinstance(body, str) else "application/octet-stream"
        response.headers["Content-Type"] = default
    return response


def redirect(location: str, status: int = 302, headers: HeadersInit = None) -> Response:
    """A redirect for a request function to return: ``status`` is 301, 302, 303, 307 or 308 and
    ``location`` the target (absolute URL or path, no spaces or control characters)."""
    if status not in REDIRECT_STATUSES:
        raise ValueError(f"a redirect status is one of 301, 302, 303, 307, 308, got {status!r}")
    if not isinstance(location, str) or not location or _LOCATION_BAD.search(location):
        raise ValueError(f"a redirect location must be a URL or path without spaces, got {location!r}")
    response = Response(status, headers)
    response.headers["Location"] = location
    return response


def json_response(data: object, status: int = 200, headers: HeadersInit = None) -> Response:
    """A JSON answer for a request function to return (``Content-Type: application/json``, UTF-8)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return respond(status, body, headers, content_type="application/json")
