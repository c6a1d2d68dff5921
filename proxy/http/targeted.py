"""Targeted cache control: ``CDN-Cache-Control`` (RFC 9213) and ``Surrogate-Control`` (W3C Edge Arch).

Called by the STORE phase instead of parsing ``Cache-Control`` alone: :func:`effective_cache_control` looks
at the response's targeted fields in precedence order — ``CDN-Cache-Control``, then ``Surrogate-Control``,
then ``Cache-Control`` — and returns the policy this edge applies, plus whether ``Expires`` must be
ignored. RFC 9213 §2.1: the cache uses the first targeted field on its list that has a valid, non-empty
value "and MUST ignore the Cache-Control and Expires header fields in that response"; without one it falls
back to ``Cache-Control``. The fields are forwarded to the viewer unchanged: the viewer's own
``Cache-Control`` is never rewritten from them.

``CDN-Cache-Control`` is an RFC 8941 Dictionary: a value that does not parse as one is ignored as a whole
(RFC 9213 §2.2), as is a directive whose value has the wrong type (a decimal or string ``max-age``; §2.1
"implementations SHOULD NOT consume values that violate these inferred constraints"). ``Surrogate-Control``
uses the Cache-Control syntax plus an optional ``;device-token`` per directive: directives targeted at
another device are ignored, those targeted at this edge (the token it announces in
``Surrogate-Capability``, :func:`surrogate_capability`) take precedence over untargeted ones.

Pure: parsing never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from multidict import MultiMapping

from proxy.http.cache_control import (
    DELTA_SECONDS_MAX,
    EMPTY,
    CacheControl,
    parse_cache_control,
)
from proxy.http.headers import parse_list_header

__all__ = [
    "CDN_CACHE_CONTROL",
    "DEFAULT_TARGETS",
    "SURROGATE_CONTROL",
    "EffectiveCacheControl",
    "effective_cache_control",
    "parse_cdn_cache_control",
    "parse_sf_dictionary",
    "parse_surrogate_control",
    "surrogate_capability",
]

CDN_CACHE_CONTROL = "CDN-Cache-Control"
SURROGATE_CONTROL = "Surrogate-Control"
DEFAULT_TARGETS: tuple[str, ...] = (CDN_CACHE_CONTROL, SURROGATE_CONTROL)
"""This edge's target list, highest precedence first (RFC 9213 §2.1)."""


@dataclass(frozen=True, slots=True)
class EffectiveCacheControl:
    """The response policy this edge applies. ``source`` names the field it came from; ``targeted`` is
    True when that is a targeted field, in which case the caller ignores ``Expires`` (RFC 9213 §2.1)."""

    cc: CacheControl
    source: str
    targeted: bool


# ------------------------------------------------------------------------------------------ RFC 8941
# Values: int, float (decimal), str (string), _Token, bytes (byte sequence), bool; inner lists are tuples.
SfBare = int | float | str | bytes | bool
SfValue = SfBare | tuple[SfBare, ...]


class _Token(str):
    """An sf-token, kept apart from an sf-string (a directive may accept one and not the other)."""

    __slots__ = ()


_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN_RE = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/=]*")
_MAX_FIELD = 8192  # longer targeted fields are not parsed (and so ignored)


class _Invalid(ValueError):
    pass


class _Parser:
    """RFC 8941 §4.2 parsing of one Dictionary, as a small recursive-descent reader."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _skip(self, chars: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1

    def dictionary(self) -> dict[str, SfValue]:
        out: dict[str, SfValue] = {}
        self._skip(" ")
        if self.i >= len(self.s):
            return out
        while True:
            key = self._key()
            if self._peek() == "=":
                self.i += 1
                value = self._inner_list() if self._peek() == "(" else self._item()
            else:
                value = True
                self._parameters()
            out[key] = value  # a repeated key overwrites (RFC 8941 §4.2.2)
            self._skip(" \t")
            if self.i >= len(self.s):
                return out
            if self._peek() != ",":
                raise _Invalid("expected ','")
            self.i += 1
            self._skip(" \t")
            if self.i >= len(self.s):
                raise _Invalid("trailing comma")

    def _key(self) -> str:
        m = _KEY_RE.match(self.s, self.i)
        if m is None:
            raise _Invalid("bad key")
        self.i = m.end()
        return m.group()

    def _parameters(self) -> None:
        # Parameters are parsed for validity and dropped: no cache directive defines any.
        while self._peek() == ";":
            self.i += 1
            self._skip(" ")
            self._key()
            if self._peek() == "=":
                self.i += 1
                self._bare()

    def _item(self) -> SfBare:
        value = self._bare()
        self._parameters()
        return value

    def _inner_list(self) -> tuple[SfBare, ...]:
        self.i += 1  # "("
        items: list[SfBare] = []
        while True:
            self._skip(" ")
            if self._peek() == ")":
                self.i += 1
                self._parameters()
                return tuple(items)
            items.append(self._item())
            if self._peek() not in (" ", ")"):
                raise _Invalid("bad inner list")

    def _bare(self) -> SfBare:
        c = self._peek()
        if c == "-" or c.isdigit():
            return self._number()
        if c == '"':
            return self._string()
        if c == ":":
            return self._bytes()
        if c == "?":
            flag = self.s[self.i + 1 : self.i + 2]
            if flag not in ("0", "1"):
                raise _Invalid("bad boolean")
            self.i += 2
            return flag == "1"
        if c == "@":  # RFC 9651 Date: an integer number of seconds
            self.i += 1
            value = self._number()
            if not isinstance(value, int):
                raise _Invalid("bad date")
            return value
        m = _TOKEN_RE.match(self.s, self.i)
        if m is None:
            raise _Invalid("bad item")
        self.i = m.end()
        return _Token(m.group())

    def _number(self) -> int | float:
        m = _NUMBER_RE.match(self.s, self.i)
        if m is None:
            raise _Invalid("bad number")
        text = m.group()
        digits = text.lstrip("-")
        whole, dot, fraction = digits.partition(".")
        if dot:
            if len(whole) > 12 or len(fraction) > 3:
                raise _Invalid("decimal out of range")
            self.i = m.end()
            return float(text)
        if len(whole) > 15:
            raise _Invalid("integer out of range")
        self.i = m.end()
        return int(text)

    def _string(self) -> str:
        self.i += 1
        chars: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                nxt = self._peek()
                if nxt not in ('"', "\\"):
                    raise _Invalid("bad escape")
                chars.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(chars)
            elif not (" " <= c <= "~"):
                raise _Invalid("bad string character")
            else:
                chars.append(c)
        raise _Invalid("unterminated string")

    def _bytes(self) -> bytes:
        end = self.s.find(":", self.i + 1)
        if end == -1:
            raise _Invalid("unterminated byte sequence")
        body = self.s[self.i + 1 : end]
        if _BASE64_RE.fullmatch(body) is None:
            raise _Invalid("bad byte sequence")
        self.i = end + 1
        return body.encode("ascii")  # content not needed by any directive


def parse_sf_dictionary(values: str | Iterable[str] | None) -> dict[str, SfValue] | None:
    """Parse an RFC 8941 Dictionary field (all field lines combined with ", ", RFC 8941 §4.2).

    Returns the members (key → value; parameters are dropped; bare keys are ``True``; an inner list is a
    tuple) or ``None`` when the field is absent or fails to parse. Never raises.
    """
    if values is None:
        return None
    if isinstance(values, str):
        text = values
    else:
        lines = list(values)
        if not lines:
            return None
        text = ", ".join(lines)
    if len(text) > _MAX_FIELD:
        return None
    text = text.strip(" ")
    try:
        return _Parser(text).dictionary()
    except _Invalid:
        return None


_INTEGER_DIRECTIVES = ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error")
_FLAG_DIRECTIVES = (
    "no-store",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "immutable",
    "no-transform",
)


def _field_list(value: SfValue) -> tuple[str, ...] | None:
    """Field names of a qualified no-cache/private given as an sf-string or token; None otherwise."""
    if isinstance(value, str):
        names = tuple(dict.fromkeys(n.lower() for n in parse_list_header(value)))
        return names or None
    return None


def parse_cdn_cache_control(values: str | Iterable[str] | None) -> CacheControl | None:
    """The directives of a ``CDN-Cache-Control`` field (RFC 9213 §3), or ``None`` to ignore the field.

    ``None`` when the field is absent, empty or not a valid RFC 8941 Dictionary (§2.2). Otherwise the
    directives with the Cache-Control semantics (§2.1): ``max-age``/``s-maxage``/``stale-*`` take a
    non-negative sf-integer (above 2^31 it is clamped, RFC 9111 §1.2.2); the flag directives are true when
    bare or ``?1``; ``no-cache``/``private`` are unqualified when bare, qualified with an sf-string or token
    naming fields. A directive with another value type is not consumed. Unknown directives are ignored but
    still make the field non-empty (so ``CDN-Cache-Control: none`` switches Cache-Control off for a CDN).
    """
    members = parse_sf_dictionary(values)
    if not members:
        return None
    ints: dict[str, int] = {}
    flags: dict[str, bool] = {}
    no_cache = private = False
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    for key, value in members.items():
        if key in _INTEGER_DIRECTIVES:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                ints[key] = min(value, DELTA_SECONDS_MAX)
        elif key in _FLAG_DIRECTIVES:
            if value is True:
                flags[key] = True
        elif key == "no-cache" or key == "private":
            fields = None if value is True else _field_list(value)
            if value is not True and fields is None:
                continue  # wrong type: not consumed
            if key == "no-cache":
                no_cache = no_cache or fields is None
                no_cache_fields = fields or no_cache_fields
            else:
                private = private or fields is None
                private_fields = fields or private_fields
    return CacheControl(
        max_age=ints.get("max-age"),
        s_maxage=ints.get("s-maxage"),
        stale_while_revalidate=ints.get("stale-while-revalidate"),
        stale_if_error=ints.get("stale-if-error"),
        no_store=flags.get("no-store", False),
        no_cache=no_cache,
        private=private,
        public=flags.get("public", False),
        must_revalidate=flags.get("must-revalidate", False),
        proxy_revalidate=flags.get("proxy-revalidate", False),
        must_understand=flags.get("must-understand", False),
        immutable=flags.get("immutable", False),
        no_transform=flags.get("no-transform", False),
        no_cache_fields=no_cache_fields,
        private_fields=private_fields,
    )


_SURROGATE_MAX_AGE = re.compile(r"max-age=([0-9]+)\+[0-9]+", re.IGNORECASE)


def parse_surrogate_control(values: str | Iterable[str] | None, device: str | None) -> CacheControl | None:
    """The directives of a ``Surrogate-Control`` field that apply to this edge, or ``None`` when none do.

    Edge Architecture Specification 1.0 (W3C Note): directives as in Cache-Control, each optionally
    followed by ``;device-token``. Directives targeted at another device are ignored; those targeted at
    ``device`` (this edge's token, see :func:`surrogate_capability`) win over untargeted ones.
    ``max-age=N+M`` keeps N (M, a grace period, is not used). ``no-store-remote`` is read as ``no-store``:
    an edge is a remote surrogate. ``None`` when the field is absent or nothing in it applies here, or when
    it has no directive this cache understands (the caller then falls back to Cache-Control).
    """
    if values is None:
        return None
    lines = [values] if isinstance(values, str) else list(values)
    mine: list[str] = []
    everyone: list[str] = []
    wanted = device.lower() if device else None
    for member in parse_list_header(lines):
        directive, semi, target = member.partition(";")
        directive = directive.strip()
        m = _SURROGATE_MAX_AGE.fullmatch(directive)
        if m is not None:
            directive = f"max-age={m.group(1)}"
        if directive.lower() == "no-store-remote":
            directive = "no-store"
        if not semi:
            everyone.append(directive)
        elif wanted is not None and target.strip().lower() == wanted:
            mine.append(directive)
    if not mine and not everyone:
        return None
    # Targeted directives first: for repeated directives the first occurrence wins (RFC 9111 §4.2.1).
    cc = parse_cache_control(", ".join(mine + everyone))
    return None if cc is EMPTY else cc


_DEVICE_UNSAFE = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


def surrogate_capability(device: str) -> tuple[str, str]:
    """The ``Surrogate-Capability`` request field this edge adds on its way to the origin: ``(name,
    value)`` with ``value`` ``device="Surrogate/1.0"``. ``device`` (the edge's ``server.name``) is made a
    token by replacing other characters with ``-``; pass the same string to :func:`effective_cache_control`
    (it applies the same replacement)."""
    return "Surrogate-Capability", f'{device_token(device)}="Surrogate/1.0"'


def device_token(device: str) -> str:
    """``device`` as an RFC 9110 token (other characters become ``-``; empty becomes ``edge``)."""
    return _DEVICE_UNSAFE.sub("-", device) or "edge"


def effective_cache_control(
    headers: MultiMapping[str] | Mapping[str, str],
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    *,
    device: str | None = None,
) -> EffectiveCacheControl:
    """The response cache policy this edge applies (RFC 9213 §2.1), given the response ``headers``.

    ``headers`` is a case-insensitive multidict (all field lines are read; a plain mapping gives one line
    per name). ``targets`` is this edge's target list in precedence order, by default ``CDN-Cache-Control``
    then ``Surrogate-Control``; ``device`` is this edge's Surrogate-Control device token (its server name).
    The first target field with a valid, non-empty value that applies to this edge is used, and then
    ``Cache-Control`` and ``Expires`` are ignored (``targeted=True``: the caller passes ``expires=None``
    to ``decide_store``); without one, ``Cache-Control`` is parsed as usual.
    """
    token = device_token(device) if device is not None else None
    for name in targets:
        lines = _lines(headers, name)
        if not lines:
            continue
        if name.lower() == SURROGATE_CONTROL.lower():
            cc = parse_surrogate_control(lines, token)
        else:
            cc = parse_cdn_cache_control(lines)
        if cc is not None:
            return EffectiveCacheControl(cc, name, True)
    cc = parse_cache_control(_lines(headers, "Cache-Control"))
    return EffectiveCacheControl(cc, "Cache-Control", False)


def _lines(headers: MultiMapping[str] | Mapping[str, str], name: str) -> list[str]:
    if isinstance(headers, MultiMapping):
        return list(headers.getall(name, ()))
    value = headers.get(name)
    return [] if value is None else [value]
