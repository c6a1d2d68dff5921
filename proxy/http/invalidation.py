"""Invalidation after unsafe requests (RFC 9111 §4.4).

Called by the pipeline once the origin answered a request whose method is not safe (POST, PUT, DELETE,
PATCH, and any method whose safety is unknown): :func:`invalidation_targets` gives the URIs whose stored
responses must no longer be used — the target URI and, when they share its origin, the URIs in the
response's ``Location`` and ``Content-Location``. The pipeline turns each into a cache key with the
matching behaviour's key builder and deletes it (a deleted Vary marker hides every variant). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

__all__ = ["SAFE_METHODS", "InvalidationTarget", "invalidates", "invalidation_targets"]

# RFC 9110 §9.2.1 safe methods (GET, HEAD, OPTIONS, TRACE) plus the registered safe extension methods
# (WebDAV PROPFIND/REPORT/SEARCH, RFC 4918/3253/5323, and QUERY). Every other method, unknown ones included,
# is treated as unsafe (RFC 9111 §4.4 "including methods whose safety is unknown").
SAFE_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "REPORT", "SEARCH", "QUERY"}
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class InvalidationTarget:
    """A URI to invalidate, in the pieces a cache key is built from: the request's ``Host`` value (as the
    viewer sent it, so the key builder normalises it the same way), the raw path and the raw query."""

    host: str
    path: str
    query: str


def invalidates(method: str, status: int) -> bool:
    """Whether a response with ``status`` to a ``method`` request triggers invalidation (RFC 9111 §4.4):
    an unsafe method and a non-error status (1xx-3xx; 1xx never reaches a cache as a final answer)."""
    return method not in SAFE_METHODS and 100 <= status < 400


def _origin_of(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None when the authority does not parse."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if host is None:
        return None
    scheme = scheme.lower()
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def invalidation_targets(
    method: str,
    status: int,
    *,
    scheme: str,
    host: str,
    target: str,
    location: str | None = None,
    content_location: str | None = None,
) -> tuple[InvalidationTarget, ...]:
    """The URIs to invalidate after a ``status`` response to a ``method`` request (RFC 9111 §4.4).

    ``scheme`` and ``host`` (the ``Host`` field value) and ``target`` (origin-form path and query) make
    the target URI; ``location`` and ``content_location`` are the response's field values, absolute or
    relative references resolved against it (RFC 9110 §10.2.2, §8.7). Returns nothing unless
    :func:`invalidates` holds; otherwise the target URI first, then each of Location and Content-Location
    whose origin (scheme, host, port; RFC 9110 §4.3.1) equals the target URI's — "a cache MUST NOT trigger
    an invalidation under these conditions if the origin of the URI to be invalidated differs from that
    of the target URI". Fragments are dropped, dot-segments resolved, duplicates removed. Never raises.
    """
    if not invalidates(method, status):
        return ()
    path, _, query = target.partition("?")
    out = [InvalidationTarget(host, path or "/", query)]
    base = f"{scheme}://{host}{target if target.startswith('/') else '/' + target}"
    own = _origin_of(scheme, host)
    for reference in (location, content_location):
        if reference is None or not reference.strip():
            continue
        try:
            resolved = urlsplit(urljoin(base, reference.strip()))
        except ValueError:
            continue
        if own is None or _origin_of(resolved.scheme, resolved.netloc) != own:
            continue
        candidate = InvalidationTarget(host, resolved.path or "/", resolved.query)
        if candidate not in out:
            out.append(candidate)
    return tuple(out)
