"""Reading viewer requests off the wire: llhttp (through ``httptools``) plus the edge's own limits.

``RequestReader`` is sans-IO: the connection calls ``feed(data)`` with what the socket delivered and the
reader reports, in order, to its ``RequestSink``: ``on_head`` once a request head is complete (a
``RequestHead``), ``on_body`` for each piece of its body, ``on_end`` when the message is complete, and
``on_error`` once when the bytes cannot be a request (then the reader stops for good). The sink's
``on_head`` returns False to stop reading (a refused request: nothing after it on the connection is read).

Limits enforced here, on top of llhttp's strict grammar (no obsolete line folding, no bare LF, no
``Content-Length`` with ``Transfer-Encoding``, no duplicate ``Content-Length``, a final ``chunked``):
the request head (line and fields, counted as ``RequestPolicy.screen`` counts them) at most
``max_header_bytes`` and at most ``MAX_FIELDS`` fields → 431; a version llhttp refuses → 505; an unknown
method token → 501, other bad bytes → 400. Reading stops after a message that does not keep the connection
alive (HTTP/1.0 without ``Connection: keep-alive``, ``Connection: close``) and after an upgrade request:
what follows is never read as another request (after an upgrade request it is left in ``upgrade_rest``).
"""

from __future__ import annotations

from typing import Protocol

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["MAX_FIELDS", "RequestHead", "RequestReader", "RequestSink"]

MAX_FIELDS = 128  # fields per request head (aiohttp's limit; nginx has none but bounds the bytes)

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0), "0.9": (0, 9), "2.0": (2, 0)}


class RequestHead:
    """One parsed request head. ``target`` is the raw request target; ``headers`` keep the viewer's order
    and duplicates, minus ``Expect`` (the edge answers it: ``expect_continue``); ``raw_headers`` are all
    fields as received; ``has_body`` says whether body bytes follow (a positive ``Content-Length`` or
    ``Transfer-Encoding``)."""

    __slots__ = (
        "content_length",
        "expect_continue",
        "has_body",
        "headers",
        "keep_alive",
        "method",
        "raw_headers",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: tuple[int, int],
        headers: CIMultiDictProxy[str],
        raw_headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        has_body: bool,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.has_body = has_body
        self.expect_continue = expect_continue
        self.upgrade = upgrade


class RequestSink(Protocol):
    """Where a ``RequestReader`` reports what it read."""

    def on_head(self, head: RequestHead) -> bool:
        """A complete request head; False stops the reader (nothing after it is read)."""

    def on_body(self, chunk: bytes) -> None:
        """A piece of the current request's body (never empty)."""

    def on_end(self) -> None:
        """The current request's message is complete."""

    def on_error(self, status: int) -> None:
        """The bytes are not a request the edge reads (``status``: 400, 431, 501 or 505); reading stopped."""


class _Stop(Exception):
    """Raised inside a parser callback to stop llhttp at once."""


class _Refuse(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _text(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


class RequestReader:
    """Parses the requests of one connection (``max_header_bytes``: the head limit, as in
    ``server.limits``)."""

    __slots__ = (
        "_after_head",
        "_fields",
        "_head_bytes",
        "_line",
        "_max_header_bytes",
        "_parser",
        "_sink",
        "_url",
        "in_message",
        "stopped",
        "upgrade_rest",
    )

    def __init__(self, sink: RequestSink, max_header_bytes: int) -> None:
        self._sink = sink
        self._max_header_bytes = max_header_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._after_head = False  # between the end of the head and the end of the message
        self._line: bytearray | None = bytearray()  # bytes since a message boundary, for the 501 test
        self.in_message = False  # a message has begun and is not complete
        self.stopped = False
        self.upgrade_rest = b""  # bytes fed after an upgrade request's head (the new protocol's, if any)

    @property
    def in_body(self) -> bool:
        """Whether the current message's head is complete and its body is still being read."""
        return self._after_head

    def stop(self) -> None:
        """Read nothing more (what is fed from now on is dropped)."""
        self.stopped = True

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (the next bytes from the viewer), reporting to the sink as it goes."""
        if self.stopped:
            return
        if not self.in_message:
            self._line = bytearray()  # the data starts a new message
        line = self._line
        if line is not None and len(line) < 64:
            line += data[:64]
        head_before = self.in_message and not self._after_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # An upgrade (or CONNECT) request is complete; what follows is not HTTP/1.1 we read. It is kept
            # for the connection: a WebSocket tunnel forwards it to the origin.
            self.stopped = True
            if exc.args and isinstance(exc.args[0], int):
                self.upgrade_rest = data[exc.args[0] :]
            return
        except httptools.HttpParserInvalidMethodError:
            self._fail(self._method_status())
            return
        except httptools.HttpParserCallbackError as exc:
            if self.stopped:
                return
            cause = exc.__context__
            self._fail(cause.status if isinstance(cause, _Refuse) else 400)
            return
        except httptools.HttpParserError as exc:
            if self.stopped:
                return
            self._fail(505 if "HTTP version" in str(exc) else 400)
            return
        if self.stopped:
            return
        if head_before and self.in_message and not self._after_head:
            # A head still incomplete after more bytes: bound what llhttp buffers for a partial field.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_header_bytes:
                self._fail(431)

    def _fail(self, status: int) -> None:
        self.stopped = True
        self.in_message = False
        self._after_head = False
        self._sink.on_error(status)

    def _method_status(self) -> int:
        """501 for a method token llhttp does not know (RFC 9110 §9.1), 400 for bytes that are no token."""
        line = bytes(self._line or b"")
        method, space, _ = line.partition(b" ")
        if space and method and all(byte in _TCHAR for byte in method):
            return 501
        return 400

    # ---- llhttp callbacks ----
    def on_message_begin(self) -> None:
        self.in_message = True
        self._url = b""
        self._fields = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            raise _Refuse(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._after_head:  # a trailer field (RFC 9112 §7.1.2): bounded, then dropped
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > self._max_header_bytes:
                raise _Refuse(400)
            return
        self._fields.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_header_bytes or len(self._fields) > MAX_FIELDS:
            raise _Refuse(431)

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._line = None
        method = parser.get_method().decode("ascii")
        version = _VERSIONS.get(parser.get_http_version(), (0, 0))
        headers: CIMultiDict[str] = CIMultiDict()
        content_length: int | None = None
        chunked = False
        expect_continue = False
        for raw_name, raw_value in self._fields:
            name = _text(raw_name)
            value = _text(raw_value)
            lowered = name.lower()
            if lowered == "content-length":
                content_length = int(value)  # llhttp accepted digits only, and only one field
            elif lowered == "transfer-encoding":
                chunked = True
            elif lowered == "expect":
                # RFC 9110 §10.1.1: the edge answers 100-continue itself (never for HTTP/1.0 viewers).
                expect_continue = expect_continue or (
                    value.strip().lower() == "100-continue" and version >= (1, 1)
                )
                continue
            headers.add(name, value)
        keep_alive = parser.should_keep_alive()
        upgrade = parser.should_upgrade()
        has_body = chunked or bool(content_length)
        if upgrade and has_body:
            # llhttp reads no body for an upgrade (it would be the new protocol's bytes), and the edge does
            # not switch protocols here: a body on such a request cannot be framed, refuse it.
            raise _Refuse(400)
        head = RequestHead(
            method,
            _text(self._url),
            version,
            CIMultiDictProxy(headers),
            self._fields,
            keep_alive,
            content_length,
            has_body,
            expect_continue,
            upgrade,
        )
        self._after_head = True
        self._head_bytes = 0  # now counts trailer fields
        if not self._sink.on_head(head):
            self.stopped = True
            raise _Stop

    def on_body(self, body: bytes) -> None:
        if body:
            self._sink.on_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._after_head = False
        keep_alive = self._parser.should_keep_alive()
        self._line = None  # the next message may begin inside this chunk: its first bytes are unknown
        self._sink.on_end()
        if not keep_alive or self.stopped:
            self.stopped = True
            raise _Stop
