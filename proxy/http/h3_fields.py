"""HTTP/3 field sections as the edge reads and writes them (RFC 9114 §4.2 - §4.3), pure functions.

``request_head(fields)`` is called by ``proxy.server.http3`` for each request's HEADERS frame, once aioquic
decoded it with QPACK and checked its syntax (lower-case names, pseudo-header order and presence,
connection-specific fields, ``content-length`` a number: a malformed section never gets here, aioquic
closes the connection with H3_MESSAGE_ERROR). It turns the section into what the HTTP/1.1 front would have
parsed: method, origin-form target, a ``Host`` field from ``:authority`` and the request's fields, so the
same screening (``proxy.edge.hardening``) and pipeline serve it.

``response_fields(...)`` is called for each response: the ``:status`` pseudo-header, then the response's
fields without the connection-specific ones HTTP/3 forbids (RFC 9114 §4.2: a message carrying them is
malformed) and without ``Content-Length``, which the front sets from the body it sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from multidict import CIMultiDict

from proxy.http.headers import FRAMING_FIELDS, HOP_BY_HOP, parse_list_header
from proxy.messages import Headers

__all__ = ["H3RequestHead", "alt_svc_value", "request_head", "response_fields"]

Fields = Sequence[tuple[bytes, bytes]]

_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


@dataclass(frozen=True, slots=True)
class H3RequestHead:
    """A request's HEADERS frame, in the terms of an HTTP/1.1 request head: ``target`` is ``:path``
    (origin-form, or ``*`` for ``OPTIONS``; empty for ``CONNECT``), ``headers`` hold ``Host`` (from
    ``:authority``), ``raw`` the regular fields as received (for the head size limit)."""

    method: str
    target: str
    headers: CIMultiDict[str]
    raw: tuple[tuple[bytes, bytes], ...]
    content_length: int | None
    bad: bool = False  # a field the edge cannot accept although aioquic let it through (answered 400)


def request_head(fields: Fields) -> H3RequestHead:
    """The request head of a decoded, syntax-checked HTTP/3 request field section (never raises)."""
    method = target = authority = ""
    headers: CIMultiDict[str] = CIMultiDict()
    raw: list[tuple[bytes, bytes]] = []
    cookies: list[str] = []
    bad = False
    for name, value in fields:
        if name[:1] == b":":
            if name not in _PSEUDO:
                bad = True
                continue
            text = value.decode("utf-8", "surrogateescape")
            if name == b":method":
                method = text
            elif name == b":path":
                target = text
            elif name == b":authority":
                authority = text
            continue
        raw.append((name, value))
        key = name.decode("ascii", "replace")
        text = value.decode("utf-8", "surrogateescape")
        if name == b"cookie":
            # RFC 9114 §4.2.1: split cookie fields are joined with "; " before HTTP/1.1 semantics apply.
            cookies.append(text)
            continue
        headers.add(key, text)
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    hosts = headers.getall("host", ())
    if authority:
        # RFC 9114 §4.3.1: when both are present they must be the same value; :authority stands for Host.
        if any(host != authority for host in hosts):
            bad = True
        headers["Host"] = authority
    elif len(hosts) > 1:
        bad = True
    lengths = headers.getall("content-length", ())
    content_length: int | None = None
    if lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            bad = True
        else:
            content_length = int(lengths[0])
    if not method or (method != "CONNECT" and not target):
        bad = True
    return H3RequestHead(method, target, headers, tuple(raw), content_length, bad)


def response_fields(
    status: int,
    headers: Headers,
    head: Iterable[bytes] | None,
    extra: Iterable[tuple[str, str]],
) -> list[tuple[bytes, bytes]]:
    """``:status`` then the response fields to send over HTTP/3: those of ``headers`` (or, for a
    pre-encoded hit, of its ``Name: value`` CRLF lines in ``head``) lower-cased, less the hop-by-hop and
    connection-specific fields (RFC 9114 §4.2), the fields ``Connection`` names (RFC 9110 §7.6.1),
    ``Content-Length`` and any field whose name or value holds CR, LF or NUL; then the front's ``extra``
    fields (``content-length``, ``date`` …)."""
    pairs: list[tuple[str, str]]
    if head is not None:
        pairs = []
        for line in b"".join(head).split(b"\r\n"):
            raw_name, sep, raw_value = line.partition(b":")
            if sep:
                text = raw_value.strip().decode("utf-8", "surrogateescape")
                pairs.append((raw_name.decode("ascii", "replace"), text))
    else:
        pairs = list(headers.items())
    dropped = set(FRAMING_FIELDS) | HOP_BY_HOP
    for name, value in pairs:
        if name.lower() == "connection":
            dropped.update(option.lower() for option in parse_list_header([value]))
    fields = [(b":status", str(status).encode("ascii"))]
    for name, value in pairs:
        lower = name.lower()
        if lower not in dropped and _sendable(lower, value):
            fields.append((lower.encode("ascii", "replace"), value.encode("utf-8", "surrogateescape")))
    for name, value in extra:
        fields.append((name.lower().encode("ascii"), value.encode("ascii")))
    return fields


def _sendable(name: str, value: str) -> bool:
    """A field name aioquic accepts (RFC 9114 §4.2: lower-case token, no pseudo-header) and a value with no
    CR, LF or NUL (RFC 9110 §5.5)."""
    return (
        bool(name)
        and name[0] != ":"
        and not any(c in name for c in " \t\r\n\0:")
        and not any(c in value for c in "\r\n\0")
    )


def alt_svc_value(port: int, max_age: int = 86400) -> str:
    """The ``Alt-Svc`` field value advertising HTTP/3 on ``port`` of the same host (RFC 7838 §3, RFC 9114
    §3.1.1): ``h3=":PORT"; ma=SECONDS``."""
    return f'h3=":{port}"; ma={max_age}'
