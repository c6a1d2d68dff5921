"""HTTP/2 field rules (RFC 9113 §8.2, §8.3): checking a request's field block, writing a response's.

``check_request`` is called by the HTTP/2 front (``proxy.server.http2``) for every request HEADERS block,
once HPACK decoded it and before anything else reads it. It is pure (the decoded fields in, a decision out)
and never raises: it returns an ``H2Request`` (the pseudo-header values and the regular fields as the
HTTP/1.1 semantics the pipeline speaks) or a ``Malformed`` naming the rule broken, which the front answers
with a stream error (RST_STREAM PROTOCOL_ERROR, §8.1.1) without running the pipeline.

``response_fields`` is called for every response the front sends: it turns the pipeline's fields (a header
multidict, or a pre-encoded HTTP/1.1 head of the hit fast path) into an HTTP/2 field list: lower-case names,
``:status`` first, connection-specific fields never sent (§8.2.2), no field whose value could not be
encoded (CR, LF, NUL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy.http.headers import CONNECTION_FIELDS, parse_list_header

__all__ = ["H2Request", "Malformed", "check_request", "head_fields", "response_fields"]

Field = tuple[bytes, bytes]

# RFC 9113 §8.3.1: the request pseudo-header fields.
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
# RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2 (TE is allowed with "trailers" only).
_CONNECTION_SPECIFIC = frozenset(name.encode() for name in CONNECTION_FIELDS) - {b"te", b"trailer"}
# What the front never sends in a response: the connection-specific fields (§8.2.2), the framing fields the
# front writes itself (content-length) and Trailer (trailers are dropped, so announcing them would lie).
_NOT_SENT = CONNECTION_FIELDS | {"content-length", "proxy-connection"}
# §8.2.1: a field name holds no control or space characters, no upper-case letters, nothing above 0x7e.
_BAD_NAME_BYTES = frozenset(range(0x21)) | frozenset(range(0x41, 0x5B)) | frozenset(range(0x7F, 0x100))


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request that breaks RFC 9113 §8.2/§8.3: ``reason`` says which rule (for the debug log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class H2Request:
    """A well-formed request's parts: ``authority`` is ``:authority`` (or Host when it is absent, §8.3.1),
    ``fields`` the regular fields as (name, value) strings, cookie crumbs joined into one (§8.2.3)."""

    method: str
    scheme: str
    authority: str
    path: str
    fields: tuple[tuple[str, str], ...]
    content_length: int | None


def _bad_name(name: bytes) -> bool:
    return not name or any(byte in _BAD_NAME_BYTES for byte in name)


def _bad_value(value: bytes) -> bool:
    # §8.2.1: no NUL, CR or LF anywhere; no leading or trailing SP / HTAB.
    if b"\x00" in value or b"\r" in value or b"\n" in value:
        return True
    return bool(value) and (value[0] in b" \t" or value[-1] in b" \t")


def check_request(block: Sequence[Field]) -> H2Request | Malformed:
    """Check one decoded request field block (RFC 9113 §8.2, §8.3.1); see the module docstring."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[str, str]] = []
    cookies: list[str] = []
    lengths: set[bytes] = set()
    regular = False
    host: bytes | None = None
    for name, value in block:
        if name.startswith(b":"):
            # §8.3: pseudo-headers come first, once each, and only the defined ones.
            if regular:
                return Malformed("pseudo-header field after a regular field")
            if name not in _REQUEST_PSEUDO:
                return Malformed(f"pseudo-header {name!r} is not a request pseudo-header")
            if name in pseudo:
                return Malformed(f"pseudo-header {name!r} appears twice")
            if _bad_value(value):
                return Malformed(f"invalid value of {name!r}")
            pseudo[name] = value
            continue
        regular = True
        if _bad_name(name):
            return Malformed(f"invalid field name {name!r} (upper case or forbidden characters)")
        if _bad_value(value):
            return Malformed(f"invalid value of field {name!r}")
        if name in _CONNECTION_SPECIFIC:
            return Malformed(f"connection-specific field {name!r}")
        if name == b"te" and value.strip().lower() != b"trailers":
            return Malformed("TE other than 'trailers'")
        text = value.decode("latin-1")
        if name == b"cookie":
            cookies.append(text)  # §8.2.3: crumbs are joined with "; " below
            continue
        if name == b"content-length":
            lengths.add(value.strip())
        elif name == b"host":
            if host is not None:
                return Malformed("several host fields")
            host = value
        fields.append((name.decode("latin-1"), text))
    method = pseudo.get(b":method")
    if not method:
        return Malformed("no :method")
    if method == b"CONNECT":
        # §8.5: CONNECT carries :authority only (the edge refuses it afterwards, as over HTTP/1.1).
        if b":scheme" in pseudo or b":path" in pseudo or b":authority" not in pseudo:
            return Malformed("CONNECT with :scheme or :path, or without :authority")
    else:
        scheme = pseudo.get(b":scheme")
        path = pseudo.get(b":path")
        if not scheme or not path:
            return Malformed("no :scheme or :path")
        if not (path.startswith(b"/") or (path == b"*" and method == b"OPTIONS")):
            return Malformed(":path is neither origin-form nor '*' for OPTIONS")
    authority = pseudo.get(b":authority")
    if authority is not None and host is not None and host.lower() != authority.lower():
        return Malformed("host differs from :authority")  # §8.3.1: SHOULD treat as malformed
    if authority is None:
        authority = host if host is not None else b""
    content_length: int | None = None
    if lengths:
        if len(lengths) > 1:
            return Malformed("several content-length values")
        digits = lengths.pop()
        if not digits.isdigit() or len(digits) > 18:
            return Malformed("content-length is not a number")
        content_length = int(digits)
    if cookies:
        fields.append(("cookie", "; ".join(cookies)))
    return H2Request(
        method=method.decode("latin-1"),
        scheme=pseudo.get(b":scheme", b"").decode("latin-1"),
        authority=authority.decode("latin-1"),
        path=pseudo.get(b":path", b"").decode("latin-1"),
        fields=tuple(fields),
        content_length=content_length,
    )


# RFC 9110 §5.6.2 tchar, lower case (a response field name is lower-cased before it is checked).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


_TOKEN_NAMES: set[str] = set()  # names already found to be tokens (they repeat: check each once)


def _sendable(name: str, value: str, dropped: set[str]) -> bool:
    if name in dropped or "\r" in value or "\n" in value or "\x00" in value:
        return False
    if name in _TOKEN_NAMES:
        return True
    if not name or not all(c in _TOKEN for c in name):
        return False
    if len(_TOKEN_NAMES) < 4096:
        _TOKEN_NAMES.add(name)
    return True


def response_fields(
    status: int, headers: Iterable[tuple[str, str]], extra: Iterable[tuple[str, str]] = ()
) -> list[Field]:
    """The field list of an HTTP/2 response: ``:status``, then ``headers`` without the fields HTTP/2 never
    carries (RFC 9113 §8.2.2: Connection and the fields it names, Keep-Alive, Proxy-Connection,
    Transfer-Encoding, Upgrade; Content-Length and Trailer, which the front decides), then ``extra`` (the
    front's own Content-Length and Date). Names are lower-cased (§8.2.1)."""
    items = [(name.lower(), value.strip(" \t")) for name, value in headers]
    dropped = set(_NOT_SENT)
    for name, value in items:
        if name == "connection":
            dropped.update(option.lower() for option in parse_list_header(value))
    out: list[Field] = [(b":status", str(status).encode("ascii"))]
    for name, value in items:
        if _sendable(name, value, dropped):
            try:
                out.append((name.encode("ascii"), value.encode("utf-8", "surrogateescape")))
            except UnicodeEncodeError:
                continue  # a value no bytes stand for: dropped, as a CR or LF would be
    for name, value in extra:  # the front's own fields: trusted
        out.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return out


def head_fields(parts: Sequence[bytes]) -> list[tuple[str, str]]:
    """The fields of a pre-encoded HTTP/1.1 head (the hit fast path's ``Name: value`` CRLF lines, as
    ``EdgeResponse.head`` holds them), for ``response_fields``."""
    out: list[tuple[str, str]] = []
    for line in b"".join(parts).split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name:
            out.append((name.decode("latin-1"), value.strip(b" \t").decode("utf-8", "surrogateescape")))
    return out
