"""Request screening at the viewer front: what must be refused before a request means anything.

``RequestPolicy.screen`` is called by ``proxy.server.http1`` for every request head, once llhttp's parser
accepted it and before the pipeline sees it. It is pure (plain values in, a decision out) and
returns either the ``Target`` to serve (origin-form path, query and the host the request is for) or an
``Answer`` the front writes at once:

- an HTTP version other than 1.0 and 1.1 (llhttp lets 0.9 and 2.0 request lines through) → 505;
- ``CONNECT`` → 405 and absolute-form targets (``GET http://other/ HTTP/1.1``) for a host that is not
  ours → 400: the edge is never an open proxy; ``OPTIONS *`` is answered by the edge itself;
- anything but origin-form, absolute-form or ``*`` (and a ``#`` in the target) → 400;
- the request head larger than ``server.limits.max_header_bytes`` → 431;
- ambiguous framing (request smuggling): ``Transfer-Encoding`` with ``Content-Length``, on HTTP/1.0, or
  twice; several ``Content-Length`` fields → 400; a transfer coding other than ``chunked`` → 501;
  llhttp already rejects most of these and obsolete line folding, this is the second line;
- several ``Host`` fields or a malformed one → 400; a host not in ``server.hosts`` (when set) → 421;
- a declared body larger than ``server.limits.max_body_bytes`` → 413 (the front also counts bytes while
  a chunked body streams).

Every refusal except 421 and ``OPTIONS *`` closes the connection: after a framing problem nothing more
on it can be trusted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from multidict import istr

from proxy.http.reasons import BlockReason
from proxy.messages import Headers
from proxy.settings import DEFAULT_METHODS, ServerConfig

__all__ = ["Answer", "HostMatcher", "RequestPolicy", "Target", "split_host"]

_ALLOW = ", ".join(DEFAULT_METHODS)
# Field names as multidict ``istr``: a lookup with one skips lower-casing the name (2x faster per request).
_HOST, _TRANSFER_ENCODING, _CONTENT_LENGTH = istr("Host"), istr("Transfer-Encoding"), istr("Content-Length")
_VALID_HOSTS: set[str] = set()  # Host values already checked (they repeat: skip the regex per request)
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::[0-9]{0,5})?")


@dataclass(frozen=True, slots=True)
class Target:
    """What the request is for: the raw origin-form path, the raw query (no ``?``) and the host."""

    path: str
    query: str
    host: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the front writes instead of running the pipeline: ``status``, a reason token for
    ``Cache-Status`` and the access log, extra ``headers``, and whether to close the connection after."""

    status: int
    reason: BlockReason
    close: bool = True
    headers: tuple[tuple[str, str], ...] = ()


def split_host(host: str) -> tuple[str, str]:
    """``example.com:8080`` → (``example.com``, ``8080``); IPv6 literals keep their brackets; the name is
    lower-cased and a trailing dot dropped."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, rest = (host[: end + 1], host[end + 1 :]) if end >= 0 else (host, "")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name.rstrip("."), port


class HostMatcher:
    """``server.hosts``: ``example.com`` (any port), ``example.com:8443`` (that port only) and
    ``*.example.com`` (any name below example.com, not example.com itself)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._names: set[str] = set()
        self._name_ports: set[tuple[str, str]] = set()
        self._suffixes: list[tuple[str, str]] = []
        for pattern in patterns:
            name, port = split_host(pattern)
            if name.startswith("*."):
                self._suffixes.append((name[1:], port))
            elif port:
                self._name_ports.add((name, port))
            else:
                self._names.add(name)

    def __call__(self, host: str) -> bool:
        """Whether the edge serves ``host`` (a Host field value or an absolute-form authority)."""
        name, port = split_host(host)
        if name in self._names or (name, port) in self._name_ports:
            return True
        return any(
            name.endswith(suffix) and len(name) > len(suffix) and (not want or want == port)
            for suffix, want in self._suffixes
        )


_VERSION = Answer(505, BlockReason.HTTP_VERSION)
_CONNECT = Answer(405, BlockReason.CONNECT_REFUSED, headers=(("Allow", _ALLOW),))
_OPTIONS_ANY = Answer(200, BlockReason.OPTIONS_ASTERISK, close=False, headers=(("Allow", _ALLOW),))
_BAD_TARGET = Answer(400, BlockReason.BAD_TARGET)
_FOREIGN = Answer(400, BlockReason.FOREIGN_HOST)
_TOO_LARGE_HEAD = Answer(431, BlockReason.HEADER_TOO_LARGE)
_SMUGGLING = Answer(400, BlockReason.AMBIGUOUS_FRAMING)
_CODING = Answer(501, BlockReason.UNSUPPORTED_TRANSFER_CODING)
_BAD_HOST = Answer(400, BlockReason.BAD_HOST)
_MISDIRECTED = Answer(421, BlockReason.MISDIRECTED, close=False)
_BODY_TOO_LARGE = Answer(413, BlockReason.BODY_TOO_LARGE)


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """The limits and host list the front screens requests with (built once from ``server``).

    ``max_body_bytes`` 0 means no limit (as nginx's ``client_max_body_size 0``).
    """

    hosts: HostMatcher | None = None
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    client_timeout: float = 60.0

    @classmethod
    def from_config(cls, server: ServerConfig) -> RequestPolicy:
        """The policy of ``server.hosts`` and ``server.limits``."""
        limits = server.limits
        return cls(
            hosts=HostMatcher(server.hosts) if server.hosts else None,
            max_header_bytes=limits.max_header_bytes,
            max_body_bytes=limits.max_body_bytes,
            client_timeout=limits.client_timeout,
        )

    def body_too_large(self, size: int) -> bool:
        """Whether ``size`` bytes of request body are over the limit."""
        return 0 < self.max_body_bytes < size

    def screen(
        self,
        method: str,
        target: str,
        version: tuple[int, int],
        headers: Headers,
        raw_headers: Sequence[tuple[bytes, bytes]],
        content_length: int | None,
    ) -> Target | Answer:
        """Decide about one parsed request (pure; never raises): a ``Target`` to serve or an ``Answer``."""
        if version != (1, 1) and version != (1, 0):
            return _VERSION
        if method == "CONNECT":
            return _CONNECT
        size = len(method) + len(target) + 12 + sum([len(n) + len(v) + 4 for n, v in raw_headers])
        if size > self.max_header_bytes:
            return _TOO_LARGE_HEAD
        framing = _framing_problem(version, headers)
        if framing is not None:
            return framing
        hosts = headers.getall(_HOST, ())
        if len(hosts) > 1:
            return _BAD_HOST
        host = hosts[0].strip() if hosts else ""
        if host and host not in _VALID_HOSTS:
            if not _HOST_RE.fullmatch(host):
                return _BAD_HOST
            if len(_VALID_HOSTS) >= 1024:
                _VALID_HOSTS.clear()
            _VALID_HOSTS.add(host)
        if target.startswith("/"):
            if "#" in target:
                return _BAD_TARGET
            path, _, query = target.partition("?")
        elif target == "*":
            return _OPTIONS_ANY if method == "OPTIONS" else _BAD_TARGET
        else:
            absolute = _absolute_form(target)
            if absolute is None:
                return _BAD_TARGET
            authority, path, query = absolute
            ours = self.hosts(authority) if self.hosts is not None else authority == host.lower()
            if not ours:
                return _FOREIGN
            host = authority  # RFC 9112 §3.2.2: the target's authority wins over the Host field
        if self.hosts is not None and not self.hosts(host):
            return _MISDIRECTED
        if content_length is not None and self.body_too_large(content_length):
            return _BODY_TOO_LARGE
        return Target(path, query, host)


def _framing_problem(version: tuple[int, int], headers: Headers) -> Answer | None:
    """RFC 9112 §6: a message whose length could be read two ways (request smuggling)."""
    if _TRANSFER_ENCODING in headers:
        codings = headers.getall(_TRANSFER_ENCODING)
        if version < (1, 1) or _CONTENT_LENGTH in headers or len(codings) > 1:
            return _SMUGGLING
        if codings[0].strip().lower() != "chunked":
            return _CODING
    elif _CONTENT_LENGTH in headers and len(headers.getall(_CONTENT_LENGTH)) > 1:
        return _SMUGGLING
    return None


def _absolute_form(target: str) -> tuple[str, str, str] | None:
    """(authority lower-cased, path, query) of an ``http(s)://authority/path?query`` target, or None when
    it is not one (another scheme, user info, no authority, a fragment)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or "#" in rest:
        return None
    end = len(rest)
    for delimiter in "/?":
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    authority, remainder = rest[:end], rest[end:]
    if not authority or "@" in authority or not _HOST_RE.fullmatch(authority):
        return None
    path, _, query = remainder.partition("?")
    return authority.lower(), path or "/", query
