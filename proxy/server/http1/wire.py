"""Bytes the HTTP/1.1 front writes: status lines, the cached ``Date`` field, response heads, chunk framing.

Pure helpers (the clock is passed in) called by ``proxy.server.http1.connection`` for every response. Status
lines are built once per status code and always say ``HTTP/1.1`` (RFC 9110 §6.2: a server sends its own
version, whatever the viewer's); ``Date`` is formatted once per second (RFC 9110 §6.6.1).
"""

from __future__ import annotations

from proxy.http.dates import format_http_date
from proxy.http.headers import FRAMING_FIELDS
from proxy.http.status import REASON_PHRASES, reason_phrase
from proxy.messages import Headers

__all__ = [
    "CONTINUE",
    "DateCache",
    "chunk_prefix",
    "encode_head",
    "reason_phrase",
    "status_line",
]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"

_STATUS_LINES: dict[int, bytes] = {
    status: f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii") for status, phrase in REASON_PHRASES.items()
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n`` for ``status`` (built once per code)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("ascii")
        if 100 <= status <= 999:
            _STATUS_LINES[status] = line
    return line


class DateCache:
    """The ``Date`` field value, formatted again only when the second changes."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def value(self, now: float) -> str:
        """The IMF-fixdate of ``now`` (epoch seconds)."""
        second = int(now)
        if second != self._second:
            self._value = format_http_date(second)
            self._second = second
        return self._value


def chunk_prefix(size: int) -> bytes:
    """The chunk-size line of a chunk of ``size`` bytes (RFC 9112 §7.1)."""
    return b"%x\r\n" % size


def encode_head(status: int, headers: Headers, extra: str) -> bytes:
    """The response head: status line, the fields of ``headers`` except the framing ones, then ``extra``
    (the front's own ``Content-Length``/``Transfer-Encoding``/``Connection``/``Date`` lines, each ending in
    CRLF), then the blank line. A field whose name or value holds CR or LF is dropped (response splitting)."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in FRAMING_FIELDS]
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        text = "".join(line for line in lines if line.count("\n") == 1 and line.count("\r") == 1)
    return status_line(status) + (text + extra + "\r\n").encode("utf-8", "surrogateescape")
