"""Edge compression (``compress: true``): which coding a viewer gets, whether a response is compressed, and
how its header section changes. Pure and synchronous: no I/O, no clock, no event loop.

The pipeline uses it in three places:

* HASH: ``negotiate(request.headers)`` reduces ``Accept-Encoding`` to one of ``br``, ``gzip`` or
  ``identity`` (RFC 9110 §12.5.3); ``key_suffix(encoding)`` is appended to the behaviour's key, so each
  coding is its own entry and a key never holds more than one of them. The normalised token is also what the
  fill sends to the origin, so an origin that compresses itself answers with a coding the whole bucket
  accepts.
* STORE: ``should_compress(...)`` decides from the origin's response head; ``compress(body, encoding)``
  encodes the complete body and ``compressed_headers(headers, encoding, len(compressed))`` adjusts the head
  before the entry is built, so the compressed variant is what gets stored. A response that could have been
  compressed but is served as is (the viewer wants identity) still gets ``Vary: Accept-Encoding``
  (``add_vary_accept_encoding``), because it has variants.
* DELIVER: nothing new. Ranges and conditionals apply to the stored (compressed) bytes and head: a Range
  addresses the selected representation, here the content-coded one (RFC 9110 §14.1.1, §8.4).

Decisions (each one a documented choice where the RFCs leave room):

* **No Accept-Encoding → identity.** RFC 9110 §12.5.3 lets a server send any coding then, but clients that
  omit the field (scripts, health checks, old tools) rarely decode; CloudFront and nginx do the same.
* **Ties prefer ``br`` over ``gzip``**; a compressed coding beats ``identity`` unless ``identity`` is listed
  explicitly with a strictly higher q. Only ``br`` and ``gzip`` are produced (``x-gzip`` counts as
  ``gzip``, §8.4.1.3); ``deflate``, ``zstd`` and the rest are never chosen. ``br`` is chosen only when the
  ``brotli`` package is importable.
* **Compressible statuses**: 200 and 203. **Methods**: GET and HEAD, with the same answer for both: a HEAD
  shows the fields a GET would (RFC 9110 §9.3.2), and the edge fills HEAD misses with a GET, so one stored
  variant serves both.
* **Length must be known** (the origin's Content-Length, or the length of a body read whole) and within
  ``MIN_SIZE``..``MAX_SIZE``: below 1 KiB the saving is eaten by the coding's overhead; above 16 MiB the
  edge would hold too much in memory to compress it in one piece. Like CloudFront, a body of unknown
  length is not compressed.
* **Entity tags**: a strong ETag becomes weak (``"x"`` → ``W/"x"``), as nginx does. RFC 9110 §8.8.3 asks
  that a content-coded representation not share a *strong* tag with the unencoded one; a weak tag may be
  shared by semantically equivalent representations (§8.8.1). Keeping it strong with a suffix
  (``"x-gzip"``) would promise byte-identical content across edges, which only holds while every edge
  runs the same zlib/brotli build; a weak tag promises nothing of the kind, so ``If-Range`` (strong
  comparison, §13.1.5) falls back to a full 200 and ``If-None-Match`` (weak comparison) still gives 304s.
  The tag sent to the origin when revalidating (``If-None-Match: W/"x"``) is still matched by the origin
  (weak comparison, §13.1.2).
* **Digests of the content are removed** (``Content-MD5``, ``Digest``, ``Content-Digest``,
  ``Repr-Digest``): they describe bytes that are no longer sent.
* ``gzip`` output is deterministic (zlib with a gzip wrapper: mtime 0, no file name) at level 6, zlib's
  default; ``br`` uses quality 5, about gzip -9's ratio at gzip -6's speed (quality 11, the library default,
  is one to two orders of magnitude slower). Both take under 1 ms per 100 KB of HTML; an entry is
  compressed once and then served many times.
"""

from __future__ import annotations

import importlib
import re
import zlib
from collections.abc import Iterable
from typing import Literal, Protocol, cast

from multidict import CIMultiDict, MultiMapping

from proxy.http.cache_control import parse_cache_control
from proxy.http.conditional import weak_match
from proxy.http.headers import parse_list_header
from proxy.http.validation import freshens

__all__ = [
    "BROTLI_AVAILABLE",
    "BROTLI_QUALITY",
    "COMPRESSIBLE",
    "COMPRESSIBLE_STATUSES",
    "ENCODINGS",
    "GZIP_LEVEL",
    "KEY_SUFFIXES",
    "MAX_SIZE",
    "MIN_SIZE",
    "Encoding",
    "add_vary_accept_encoding",
    "compress",
    "compressed_headers",
    "freshens_compressed",
    "is_compressible",
    "key_suffix",
    "negotiate",
    "normalise_accept_encoding",
    "should_compress",
    "would_compress",
]

Encoding = Literal["br", "gzip", "identity"]
ENCODINGS: tuple[Encoding, ...] = ("br", "gzip", "identity")

MIN_SIZE = 1024  # bytes: smaller bodies are not worth a coding's header and a CPU slice
MAX_SIZE = 16 * 1024 * 1024  # bytes: larger bodies are not held whole to be compressed
GZIP_LEVEL = 6  # zlib's default: the usual ratio/speed balance
BROTLI_QUALITY = 5  # ~ gzip -9's ratio at ~ gzip -6's speed; 11 (the library default) is far slower
COMPRESSIBLE_STATUSES = frozenset((200, 203))
_METHODS = frozenset(("GET", "HEAD"))


class _Brotli(Protocol):
    """The part of the ``brotli`` package used here (it ships no type information)."""

    def compress(self, string: bytes, mode: int = 0, quality: int = 11, lgwin: int = 22) -> bytes: ...


def _load_brotli() -> _Brotli | None:
    try:
        return cast(_Brotli, importlib.import_module("brotli"))
    except ImportError:  # pragma: no cover - brotli is a dependency; without it only gzip is offered
        return None


_brotli = _load_brotli()
BROTLI_AVAILABLE = _brotli is not None

# ---------------------------------------------------------------------------------------- negotiation

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
# RFC 9110 §12.4.2 qvalue, read a little leniently: any number of decimals (``0.0001``), never above 1.
_QVALUE = re.compile(r"0(?:\.[0-9]*)?|1(?:\.0*)?").fullmatch
_OWS = " \t"
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 §8.4.1.3

# Memo of normalised values: an edge sees few distinct Accept-Encoding values (one per browser build).
# Bounded (a client can send anything) and started over when full; long values are not memoised.
_MEMO: dict[tuple[str, bool], Encoding] = {}
_MEMO_SIZE = 1024
_MEMO_MAX_LEN = 256


def _weights(value: str) -> dict[str, float]:
    """The codings of an Accept-Encoding value with their q, lower-cased. A member whose coding is not a
    token or whose q is not a qvalue is ignored; a coding listed twice keeps its lowest q (a refusal
    anywhere is respected)."""
    weights: dict[str, float] = {}
    for member in value.split(","):
        coding, _, params = member.partition(";")
        coding = coding.strip(_OWS).lower()
        if not coding or _TOKEN(coding) is None:
            continue
        coding = _ALIASES.get(coding, coding)
        q = 1.0
        if params:
            for param in params.split(";"):
                name, eq, arg = param.partition("=")
                if eq and name.strip(_OWS).lower() == "q":
                    arg = arg.strip(_OWS)
                    q = float(arg) if _QVALUE(arg) is not None else -1.0
                    break
            if q < 0:
                continue
        previous = weights.get(coding)
        weights[coding] = q if previous is None else min(previous, q)
    return weights


def _choose(value: str, allow_br: bool) -> Encoding:
    weights = _weights(value)
    star = weights.get("*", 0.0)
    q_br = weights.get("br", star) if allow_br else 0.0
    q_gzip = weights.get("gzip", star)
    best: Encoding
    if q_br > 0 and q_br >= q_gzip:
        best, q_best = "br", q_br
    elif q_gzip > 0:
        best, q_best = "gzip", q_gzip
    else:
        return "identity"  # nothing better is acceptable; identity is the fallback even when refused
    q_identity = weights.get("identity")
    if q_identity is not None and q_identity > q_best:
        return "identity"
    return best


def normalise_accept_encoding(value: str | None, *, allow_br: bool = BROTLI_AVAILABLE) -> Encoding:
    """The one coding the edge serves for an ``Accept-Encoding`` value (RFC 9110 §12.5.3); never raises.

    ``value`` is the field value (all lines joined with ``,``), ``None`` when the request has none. Codings
    are compared case-insensitively with their q (default 1; ``q=0`` means "not acceptable"); ``*`` gives
    its q to ``br``/``gzip``/``identity`` when they are not listed themselves; a coding neither listed nor
    covered by ``*`` is not acceptable. The highest-q acceptable of ``br`` and ``gzip`` is chosen (``br`` on
    a tie, and only with ``allow_br``), unless ``identity`` is listed with a strictly higher q; with neither
    acceptable, or no field at all, the answer is ``identity``. Garbage members are skipped.
    """
    if value is None:
        return "identity"
    memo_key = (value, allow_br)
    found = _MEMO.get(memo_key)
    if found is not None:
        return found
    chosen = _choose(value, allow_br)
    if len(value) <= _MEMO_MAX_LEN:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[memo_key] = chosen
    return chosen


def negotiate(headers: MultiMapping[str], *, allow_br: bool = BROTLI_AVAILABLE) -> Encoding:
    """``normalise_accept_encoding`` of a request's header section (all ``Accept-Encoding`` lines)."""
    values = headers.getall("Accept-Encoding", None)
    if values is None:
        return "identity"
    return normalise_accept_encoding(values[0] if len(values) == 1 else ",".join(values), allow_br=allow_br)


def key_suffix(encoding: str) -> str:
    """What the HASH phase appends to a behaviour's cache key when ``compress`` is on: ``\\nae:br``,
    ``\\nae:gzip`` or ``\\nae:identity``, so each coding is its own entry.

    Identity has a suffix too: a key of a compressing behaviour never equals a key built without
    compression (whose entries were filled with the viewer's raw Accept-Encoding forwarded, so may hold any
    coding an origin chose). Same line format as ``proxy.cache.keys`` (``\\n``, a tag, ``:``), which
    ``proxy.cache.bans.target_of_key`` skips. Raises ValueError for anything but the three codings.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"no cache key suffix for content coding {encoding!r}")
    return f"\nae:{encoding}"


KEY_SUFFIXES: tuple[str, ...] = tuple(key_suffix(e) for e in ENCODINGS)
"""Every suffix a key of a compressing behaviour may carry: what an invalidation of a key must delete."""

# ---------------------------------------------------------------------------------------- eligibility

COMPRESSIBLE: frozenset[str] = frozenset(
    {
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/xml",
        "application/wasm",
        "application/vnd.apple.mpegurl",  # HLS playlists (text)
        "application/x-mpegurl",
        "application/vnd.ms-fontobject",  # EOT; uncompressed TrueType inside
        "application/x-font-ttf",
        "font/ttf",
        "font/otf",
        "font/eot",
        "image/x-icon",  # BMP/PNG inside an ICO: the BMP kind compresses well
        "image/vnd.microsoft.icon",
        "image/bmp",
    }
)
"""Media types compressed besides the rules of ``is_compressible`` (lower-case, no parameters)."""

# text/* is compressible except a stream that must reach the viewer event by event.
_TEXT_EXCLUDED = frozenset({"text/event-stream"})


def is_compressible(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names a type worth compressing; never raises.

    Compressible: every ``text/*`` except ``text/event-stream`` (server-sent events are consumed as they
    arrive), any ``+json`` or ``+xml`` structured-syntax suffix (``application/ld+json``,
    ``image/svg+xml``, ``application/rss+xml`` …, RFC 6839), and the types in :data:`COMPRESSIBLE`.
    Not compressible: already-compressed formats (JPEG, PNG, WebP, AVIF, WOFF/WOFF2, video, audio, zip,
    gzip, PDF), anything unknown, and a missing or malformed type (the body may be binary).
    """
    if not content_type:
        return False
    media_type = content_type.partition(";")[0].strip(_OWS).lower()
    major, slash, minor = media_type.partition("/")
    if not slash or not major or not minor:
        return False
    if major == "text":
        return media_type not in _TEXT_EXCLUDED
    return media_type in COMPRESSIBLE or minor.endswith(("+json", "+xml"))


def _identity_coded(headers: MultiMapping[str]) -> bool:
    """Whether the response carries no content coding (absent, empty or only ``identity``)."""
    values = headers.getall("Content-Encoding", ())
    return all(member.lower() == "identity" for member in parse_list_header(values))


def would_compress(
    *,
    status: int,
    headers: MultiMapping[str],
    body_length: int | None,
    method: str,
    min_size: int = MIN_SIZE,
    max_size: int = MAX_SIZE,
) -> bool:
    """Whether this response is compressed for viewers that accept a coding, whatever this viewer accepts.

    When True the response has coded variants, so even its identity form carries ``Vary: Accept-Encoding``
    (``add_vary_accept_encoding``). The rules (``headers`` are the origin's response fields):

    * ``method`` is GET or HEAD (HEAD gets the same answer as GET, RFC 9110 §9.3.2);
    * ``status`` is in :data:`COMPRESSIBLE_STATUSES` (200, 203);
    * the origin did not code it (no ``Content-Encoding`` other than ``identity``) and it is not a part
      (no ``Content-Range``);
    * no ``Cache-Control: no-transform`` (RFC 9111 §5.2.2.6; RFC 9110 §7.7: a proxy MUST NOT transform the
      content of such a response);
    * ``is_compressible(Content-Type)``;
    * ``body_length`` is known and ``min_size <= body_length <= max_size``.
    """
    if method not in _METHODS or status not in COMPRESSIBLE_STATUSES:
        return False
    if body_length is None or not min_size <= body_length <= max_size:
        return False
    if not is_compressible(headers.get("Content-Type")):
        return False
    if "Content-Range" in headers or not _identity_coded(headers):
        return False
    cache_control = headers.getall("Cache-Control", ())
    return not (cache_control and parse_cache_control(cache_control).no_transform)


def should_compress(
    *,
    status: int,
    headers: MultiMapping[str],
    body_length: int | None,
    encoding: str,
    method: str,
    min_size: int = MIN_SIZE,
    max_size: int = MAX_SIZE,
) -> bool:
    """Whether to compress this response with ``encoding`` (the request's ``negotiate`` result): ``encoding``
    is ``br`` or ``gzip`` (``br`` only when brotli is available) and ``would_compress`` holds."""
    if encoding == "gzip" or (encoding == "br" and BROTLI_AVAILABLE):
        return would_compress(
            status=status,
            headers=headers,
            body_length=body_length,
            method=method,
            min_size=min_size,
            max_size=max_size,
        )
    return False


# ---------------------------------------------------------------------------------------- coding


def compress(body: bytes, encoding: str, level: int | None = None) -> bytes:
    """``body`` in ``encoding``: ``gzip`` (zlib, ``level`` 0-9, default :data:`GZIP_LEVEL`) or ``br``
    (quality 0-11, default :data:`BROTLI_QUALITY`). Deterministic for one zlib/brotli build: the gzip header
    has mtime 0 and no file name. Raises ValueError for another coding, an out-of-range level, or ``br``
    without the brotli package. CPU-bound: a large body may be worth running in a thread.
    """
    if encoding == "gzip":
        level = GZIP_LEVEL if level is None else level
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0-9, not {level}")
        return zlib.compress(body, level, wbits=31)  # 31: a gzip wrapper (RFC 1952) with mtime 0
    if encoding == "br":
        if _brotli is None:
            raise ValueError("br needs the brotli package")
        quality = BROTLI_QUALITY if level is None else level
        if not 0 <= quality <= 11:
            raise ValueError(f"brotli quality must be 0-11, not {quality}")
        return _brotli.compress(body, quality=quality)
    raise ValueError(f"cannot compress with content coding {encoding!r}")


# ---------------------------------------------------------------------------------------- header section

# RFC 9110 §8.8.3 entity-tag: [W/] DQUOTE *etagc DQUOTE, etagc any visible octet but DQUOTE, or obs-text.
_ENTITY_TAG = re.compile(r'(W/)?"[^\x00-\x20"\x7f]*"').fullmatch
# Digests of the content or of the coded representation: wrong once the content is coded by the edge.
_DIGESTS = ("Content-MD5", "Digest", "Content-Digest", "Repr-Digest")


def add_vary_accept_encoding(headers: CIMultiDict[str]) -> None:
    """Make ``Vary`` name ``Accept-Encoding``, in place. Existing members are kept, in order, as one line;
    nothing changes when it is already there (any case) or when ``Vary`` has ``*`` (which already says the
    response varies on everything, RFC 9110 §12.5.5)."""
    # Vary is a list of field names or "*" (RFC 9110 §12.5.5): no quoted-strings, so a plain split; it keeps
    # a garbage member with a stray quote from swallowing the member added after it.
    members = [m for v in headers.getall("Vary", ()) for m in (p.strip(_OWS) for p in v.split(",")) if m]
    lowered = {member.lower() for member in members}
    if "*" in lowered or "accept-encoding" in lowered:
        return
    members.append("Accept-Encoding")
    headers["Vary"] = ", ".join(members)


def _weakened(etags: list[str]) -> str | None:
    """The ETag of the coded variant: one valid tag made weak; None (drop it) for none or garbage."""
    if len(etags) != 1:
        return None
    tag = etags[0].strip(_OWS)
    match = _ENTITY_TAG(tag)
    if match is None:
        return None
    return tag if match.group(1) else f"W/{tag}"


def compressed_headers(headers: CIMultiDict[str], encoding: str, length: int | None) -> None:
    """Adjust a response's fields, in place, for its content compressed with ``encoding`` by the edge.

    Sets ``Content-Encoding`` (replacing an ``identity``), sets ``Content-Length`` to ``length`` (removes
    it when None: unknown), adds ``Accept-Encoding`` to ``Vary`` (``add_vary_accept_encoding``), makes a
    strong ``ETag`` weak (one that is not a single valid entity-tag is removed) and removes digests of the
    uncoded content (``Content-MD5``, ``Digest``, ``Content-Digest``, ``Repr-Digest``). Idempotent, so it can
    run again on a header section a 304 refreshed (``update_stored_headers`` puts the origin's strong tag
    back). Raises ValueError unless ``encoding`` is ``br`` or ``gzip``.
    """
    if encoding not in ("br", "gzip"):
        raise ValueError(f"the edge does not compress with {encoding!r}")
    headers["Content-Encoding"] = encoding
    if length is None:
        headers.popall("Content-Length", None)
    else:
        headers["Content-Length"] = str(length)
    add_vary_accept_encoding(headers)
    etags = headers.getall("ETag", None)
    if etags is not None:
        etag = _weakened(etags)
        if etag is None:
            del headers["ETag"]
        else:
            headers["ETag"] = etag
    for name in _DIGESTS:
        headers.popall(name, None)


def freshens_compressed(stored: Iterable[tuple[str, str]], not_modified: Iterable[tuple[str, str]]) -> bool:
    """``proxy.http.validation.freshens`` for an entry whose content the edge compressed.

    Its stored tag is the weak form of the origin's (``W/"x"``), so the revalidation sent
    ``If-None-Match: W/"x"`` and the origin's 304 names its own tag (``"x"``, usually strong). That 304 is
    about the uncoded representation the stored one was made from, so the tags are compared weakly
    (RFC 9110 §8.8.3.2); a 304 without ETag is judged by ``freshens`` (Last-Modified, or no validator).
    After merging the 304's fields (``update_stored_headers``), run ``compressed_headers`` again: the merge
    puts the origin's strong tag back.
    """
    stored = tuple(stored)
    not_modified = tuple(not_modified)
    etag = next((value for name, value in not_modified if name.lower() == "etag"), None)
    if etag is None:
        return freshens(stored, not_modified)
    stored_etag = next((value for name, value in stored if name.lower() == "etag"), None)
    return weak_match(etag, stored_etag)
