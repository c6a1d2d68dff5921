"""A stored response: the unit every cache tier keeps.

Created by the STORE phase once a response body is complete; read by LOOKUP (freshness) and DELIVER (bytes).
Times are epoch seconds (``time.time()``) so that an entry written by one process or node means the same in
another. ``encode_entry``/``decode_entry`` give the versioned binary format that shared tiers store (never
pickle); the per-process memory tier keeps the objects themselves.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain


@dataclass(slots=True)
class CacheEntry:
    """One cached response. ``headers`` are the stored header fields in origin order, hop-by-hop removed."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_time: float  # when the origin request was sent (RFC 9111 §4.2.3 request_time)
    response_time: float  # when the origin response head arrived (response_time)
    initial_age: float  # corrected_initial_age at response_time (RFC 9111 §4.2.3)
    ttl: float  # freshness lifetime in seconds after the behaviour's TTL policy
    stale_while_revalidate: float = 0.0  # RFC 5861 window past ttl in which stale may be served + refreshed
    stale_if_error: float = 0.0  # RFC 5861 window past ttl in which stale may replace an origin error
    must_revalidate: bool = False  # must-revalidate/proxy-revalidate: never served stale (RFC 9111 §5.2.2.2)
    no_cache: bool = False  # response no-cache: revalidate before every reuse (RFC 9111 §5.2.2.4)
    vary: tuple[str, ...] = ()  # lower-cased field names listed in Vary
    tags: tuple[str, ...] = ()  # surrogate keys (Surrogate-Key / Cache-Tag) for tag purges
    extra: dict[str, str] = field(default_factory=dict)  # forward-compatible metadata (survives the codec)
    # Derived, never serialised nor compared: the stored fields pre-encoded for HTTP/1.1 by DELIVER at the
    # entry's first fast hit (``proxy.pipeline.encoded``). ``size`` reserves room for it from the start.
    wire: tuple[bytes, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def age(self, now: float) -> float:
        """current_age (RFC 9111 §4.2.3): the corrected initial age plus the time resident in the cache."""
        return self.initial_age + (now - self.response_time)

    def is_fresh(self, now: float) -> bool:
        """True while the response is fresh: freshness_lifetime > current_age (RFC 9111 §4.2)."""
        return self.ttl > self.age(now)

    @property
    def size(self) -> int:
        """Bytes this entry's objects take in a Python process, as the memory tier charges them.

        Counted: the body, every stored header name and value (as ``str`` objects, so a non-ASCII value
        costs its real 2 or 4 bytes per character), the tuple of header pairs, the Vary field names, the
        tags, ``extra``, ``ENTRY_OVERHEAD`` for the entry object itself, and the pre-encoded head
        (``wire``) that the entry's first fast hit may build later: its bytes are at most the header text
        plus ``: `` and CRLF per field (UTF-8: at most 4 bytes a character), reserved from the start so that
        the budget holds whether or not the entry is ever hit. Computed on each call (a loop over the
        headers): ``MemoryStore.set`` calls it once per store, never on the hit path.
        """
        getsizeof = sys.getsizeof
        headers = self.headers
        size = ENTRY_OVERHEAD + getsizeof(self.body) + HEADER_PAIR_OVERHEAD * len(headers)
        if headers:
            # All-ASCII header text (the usual case) costs its length plus a str header per string; one C
            # join finds out, 4x faster than a getsizeof call per string.
            text = "".join(chain.from_iterable(headers))
            if text.isascii():
                size += len(text) + 2 * _EMPTY_STR_SIZE * len(headers)
                wire = len(text)
            else:
                size += sum(map(getsizeof, chain.from_iterable(headers)))
                wire = 4 * len(text)
            size += WIRE_OVERHEAD + wire + 4 * len(headers)
        for strings in (self.vary, self.tags):
            if strings:
                size += getsizeof(strings) + sum(map(getsizeof, strings))
        extra = self.extra
        if extra:
            size += getsizeof(extra) + sum(getsizeof(k) + getsizeof(v) for k, v in extra.items())
        return size


# What ``CacheEntry.size`` adds to the ``sys.getsizeof`` of the body and of each string. Measured on CPython
# 3.11 (64-bit) with tracemalloc: 20,000 entries built as the STORE phase builds them (six distinct float
# times, an empty ``extra``), held in a list, snapshot diff minus the getsizeof sums of their bodies and
# strings: 405 bytes per entry without headers, Vary or tags (the slotted CacheEntry object, its floats, the
# empty ``extra`` dict, the empty headers tuple), plus 64 bytes per header pair (the 2-tuple and its slot in
# the headers tuple), whatever the number of headers (0, 5, 10, 20). Rounded up, so the charge is never less
# than what the objects take.
ENTRY_OVERHEAD = 448
HEADER_PAIR_OVERHEAD = 64
# The pre-encoded head (``CacheEntry.wire``) beyond its bytes: the 2-tuple and the two bytes objects' headers.
WIRE_OVERHEAD = sys.getsizeof((b"", b"")) + 2 * sys.getsizeof(b"")
_EMPTY_STR_SIZE = sys.getsizeof("")  # an ASCII str costs this plus one byte per character


# ------------------------------------------------------------------------------------------------------------
# Binary format (version 1). All integers big-endian; every string is UTF-8 with errors="surrogatepass", so
# any Python str (including the lone surrogates that aiohttp's surrogateescape header decoding produces for
# bytes that are not UTF-8) round-trips exactly.
#
#   "EPC"  u8 version
#   u16 status · f64 request_time · f64 response_time · f64 initial_age · f64 ttl
#   f64 stale_while_revalidate · f64 stale_if_error · u8 flags (bit 0 must_revalidate, bit 1 no_cache)
#   u32 header count, then per header: str name, str value          (str = u32 byte length + bytes)
#   u32 vary count, then str each
#   u32 tag count, then str each
#   u32 extra count, then per item: str key, str value
#   u64 body length + body bytes                                      (nothing may follow)
#
# A new layout gets a new version number; decode_entry rejects versions it does not know, so a shared tier
# written by a newer release reads as a miss here, never as a wrong entry.
# ------------------------------------------------------------------------------------------------------------

ENTRY_FORMAT_VERSION = 1
"""Version byte written by ``encode_entry``; ``decode_entry`` accepts exactly the versions it can read."""

_MAGIC = b"EPC"
_PRELUDE = struct.Struct("!3sB")  # magic, version
_FIXED = struct.Struct("!HddddddB")  # status, six float times, flags (follows the prelude)
_FIXED_END = _PRELUDE.size + _FIXED.size
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_FLAG_MUST_REVALIDATE = 0x01
_FLAG_NO_CACHE = 0x02
_KNOWN_FLAGS = _FLAG_MUST_REVALIDATE | _FLAG_NO_CACHE
_STR_ERRORS = "surrogatepass"

# RFC 9110 §5.1 field-name = token; §5.5 field values never carry CR, LF or NUL. Checked both ways so that a
# value planted in a shared tier can never smuggle a header line into a response.
_is_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_has_bad_value_char = re.compile(r"[\r\n\x00]").search


class EntryFormatError(ValueError):
    """Raised by ``decode_entry`` for bytes that are not a valid entry, and by ``encode_entry`` for an entry
    that cannot be written: a status other than 0 (reserved for entries that are not responses, such as Vary
    markers) or 100-999, a NaN or infinite time (``ttl`` and the stale windows may be +inf), a header field
    that is not valid HTTP.

    LOOKUP treats a decode failure as a miss (and may delete the key); STORE treats an encode failure as
    "not stored".
    """


def _check_entry_values(
    status: int, times: tuple[float, ...], names: Sequence[str], values: Sequence[str]
) -> None:
    """What both directions enforce, so that a decoded entry is always safe to deliver."""
    if not (100 <= status <= 999 or status == 0):
        raise EntryFormatError(f"status {status} is neither a three-digit HTTP status nor 0")
    request_time, response_time, initial_age, ttl, swr, sie = times
    for t in (request_time, response_time, initial_age):
        if not math.isfinite(t):
            raise EntryFormatError("request_time, response_time and initial_age must be finite")
    for t in (ttl, swr, sie):
        if not (math.isfinite(t) or t == math.inf):
            raise EntryFormatError("ttl and the stale windows must be finite or +inf")
    # One regex pass over all names and one over all values: a run of tokens is a token, so only an empty
    # name needs a look of its own.
    if names and (_is_token("".join(names)) is None or not all(names)):
        raise EntryFormatError("a header name is not an HTTP token")
    if _has_bad_value_char("".join(values)) is not None:
        raise EntryFormatError("a header value contains CR, LF or NUL")


def encode_entry(entry: CacheEntry) -> bytes:
    """Serialise ``entry`` into the versioned binary format; called by STORE before writing a shared tier.

    The result decodes with ``decode_entry`` to an equal entry (strings round-trip exactly). The body is
    copied once, into the result. Raises ``EntryFormatError`` for an entry that ``decode_entry`` would refuse.
    """
    try:
        return _encode(entry)
    except (struct.error, AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, EntryFormatError):
            raise
        # A field of the wrong type, a string or body too long for its length prefix.
        raise EntryFormatError(f"entry cannot be encoded: {exc}") from exc


def _encode(entry: CacheEntry) -> bytes:
    times = (
        entry.request_time,
        entry.response_time,
        entry.initial_age,
        entry.ttl,
        entry.stale_while_revalidate,
        entry.stale_if_error,
    )
    headers = entry.headers
    names, values = zip(*headers, strict=True) if headers else ((), ())
    _check_entry_values(entry.status, times, names, values)
    flags = _FLAG_MUST_REVALIDATE if entry.must_revalidate else 0
    if entry.no_cache:
        flags |= _FLAG_NO_CACHE
    parts: list[bytes] = [
        _PRELUDE.pack(_MAGIC, ENTRY_FORMAT_VERSION),
        _FIXED.pack(entry.status, *times, flags),
    ]
    append = parts.append
    pack_u32 = _U32.pack
    append(pack_u32(len(headers)))
    for name, value in headers:
        for text in (name, value):
            raw = text.encode("utf-8", _STR_ERRORS)
            append(pack_u32(len(raw)))
            append(raw)
    for strings in (entry.vary, entry.tags):
        append(pack_u32(len(strings)))
        for text in strings:
            raw = text.encode("utf-8", _STR_ERRORS)
            append(pack_u32(len(raw)))
            append(raw)
    extra = entry.extra
    append(pack_u32(len(extra)))
    for key, value in extra.items():
        for text in (key, value):
            raw = text.encode("utf-8", _STR_ERRORS)
            append(pack_u32(len(raw)))
            append(raw)
    body = entry.body
    append(_U64.pack(len(body)))
    append(body)
    return b"".join(parts)


def _read_strings(mv: memoryview, off: int, n: int, what: str) -> tuple[list[str], int]:
    """Read ``n`` length-prefixed strings starting at ``off``; return them and the offset after the last."""
    end = len(mv)
    if n * 4 > end - off:  # each string takes at least its 4-byte length
        raise EntryFormatError(f"{what} count exceeds the data")
    unpack_u32 = _U32.unpack_from
    out: list[str] = []
    append = out.append
    for _ in range(n):
        if off + 4 > end:
            raise EntryFormatError(f"truncated in {what}")
        (size,) = unpack_u32(mv, off)
        off += 4
        stop = off + size
        if stop > end:
            raise EntryFormatError(f"{what} string length {size} exceeds the data")
        append(str(mv[off:stop], "utf-8", _STR_ERRORS))
        off = stop
    return out, off


def _read_count(mv: memoryview, off: int, what: str) -> int:
    if off + 4 > len(mv):
        raise EntryFormatError(f"truncated before the {what} count")
    count: int = _U32.unpack_from(mv, off)[0]
    return count


def decode_entry(data: bytes | bytearray | memoryview) -> CacheEntry:
    """Parse bytes written by ``encode_entry``; called by LOOKUP on every shared-tier hit.

    Returns the entry, with its body copied exactly once out of ``data``. Raises ``EntryFormatError`` (and no
    other exception) for anything else: wrong magic, unknown version, truncation, trailing bytes, lengths or
    counts larger than the data, invalid UTF-8, unknown flags, NaN or infinite times, header fields that are
    not valid HTTP, duplicate ``extra`` keys. Work is bounded by ``len(data)``, whatever the bytes claim.
    """
    try:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
    except TypeError as exc:  # not a contiguous buffer
        raise EntryFormatError("entry data is not a contiguous byte buffer") from exc
    if len(mv) < _PRELUDE.size or mv[:3] != _MAGIC:
        raise EntryFormatError("not an edgeproxy cache entry (bad magic)")
    version = mv[3]
    if version != ENTRY_FORMAT_VERSION:
        raise EntryFormatError(f"unsupported entry format version {version}")
    if len(mv) < _FIXED_END:
        raise EntryFormatError("truncated in the fixed part")
    status, t_req, t_resp, initial_age, ttl, swr, sie, flags = _FIXED.unpack_from(mv, _PRELUDE.size)
    if flags & ~_KNOWN_FLAGS:
        raise EntryFormatError(f"unknown flags 0x{flags:02x}")
    try:
        n = _read_count(mv, _FIXED_END, "header")
        fields, off = _read_strings(mv, _FIXED_END + 4, 2 * n, "headers")
        vary, off = _read_strings(mv, off + 4, _read_count(mv, off, "vary"), "vary")
        tags, off = _read_strings(mv, off + 4, _read_count(mv, off, "tag"), "tags")
        n = _read_count(mv, off, "extra")
        items, off = _read_strings(mv, off + 4, 2 * n, "extra")
    except UnicodeDecodeError as exc:
        raise EntryFormatError("a string is not valid UTF-8") from exc
    pairs = iter(items)
    extra = dict(zip(pairs, pairs, strict=True))
    if len(extra) != n:
        raise EntryFormatError("duplicate extra keys")
    end = len(mv)
    if off + 8 > end:
        raise EntryFormatError("truncated before the body length")
    (body_len,) = _U64.unpack_from(mv, off)
    off += 8
    if off + body_len != end:
        raise EntryFormatError("truncated body" if off + body_len > end else "trailing bytes after the body")
    names = fields[0::2]
    values = fields[1::2]
    _check_entry_values(status, (t_req, t_resp, initial_age, ttl, swr, sie), names, values)
    headers = tuple(zip(names, values, strict=True))
    return CacheEntry(
        status=status,
        headers=headers,
        body=mv[off:].tobytes(),
        request_time=t_req,
        response_time=t_resp,
        initial_age=initial_age,
        ttl=ttl,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        must_revalidate=bool(flags & _FLAG_MUST_REVALIDATE),
        no_cache=bool(flags & _FLAG_NO_CACHE),
        vary=tuple(vary),
        tags=tuple(tags),
        extra=extra,
    )
