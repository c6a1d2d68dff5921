"""Declarative per-behaviour policies: viewer_protocol, redirect, rewrite, request_headers,
response_headers, cors and error_pages (config reference, ``behaviours[]``).

Compiled once per behaviour by the runtime (``BehaviourPolicies.from_config``; None when a behaviour has
none of them, so requests under it pay nothing). The pipeline calls ``on_recv`` in RECV (synthetic answers:
redirects, the HTTPS rule, CORS preflights), ``origin_target``/``origin_headers`` in FETCH and
``on_deliver`` in DELIVER (per viewer; never stored). Pure: no I/O.

Redirect targets may use ``$scheme``, ``$host``, ``$path``, ``$query`` (the raw query string, without the
``?``) and ``$request_uri`` (path plus ``?query`` when there is one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict

from proxy.http.reasons import BlockReason
from proxy.messages import EdgeRequest, Verdict
from proxy.settings import BehaviourConfig, CorsConfig

_PLACEHOLDER = re.compile(r"\$(request_uri|scheme|host|path|query)")


@dataclass(frozen=True, slots=True)
class Cors:
    """A compiled ``cors:`` policy (Fetch standard CORS protocol)."""

    origins: frozenset[str]
    any_origin: bool
    methods: str
    headers: str
    expose: str
    credentials: bool
    max_age: int

    @classmethod
    def from_config(cls, config: CorsConfig) -> Cors:
        return cls(
            origins=frozenset(o for o in config.allow_origins if o != "*"),
            any_origin="*" in config.allow_origins,
            methods=", ".join(config.allow_methods),
            headers=", ".join(config.allow_headers),
            expose=", ".join(config.expose_headers),
            credentials=config.allow_credentials,
            max_age=int(config.max_age),
        )

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for a request's Origin, or None when not allowed."""
        if origin is None:
            return None
        if origin in self.origins:
            return origin
        if self.any_origin:
            return origin if self.credentials else "*"
        return None

    def preflight(self, request: EdgeRequest) -> Verdict | None:
        """Answer a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) at the edge."""
        headers = request.headers
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in headers:
            return None
        allowed = self.allowed_origin(headers.get("Origin"))
        out: CIMultiDict[str] = CIMultiDict()
        out["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if allowed is None:
            return Verdict(403, BlockReason.CORS_REFUSED, "CORS preflight refused: origin not allowed\n", out)
        out["Access-Control-Allow-Origin"] = allowed
        out["Access-Control-Allow-Methods"] = self.methods
        requested = headers.get("Access-Control-Request-Headers")
        if self.headers:
            out["Access-Control-Allow-Headers"] = self.headers
        elif requested:
            out["Access-Control-Allow-Headers"] = requested
        if self.credentials:
            out["Access-Control-Allow-Credentials"] = "true"
        if self.max_age:
            out["Access-Control-Max-Age"] = str(self.max_age)
        return Verdict(204, BlockReason.CORS_PREFLIGHT, "", out)

    def decorate(self, request: EdgeRequest, headers: CIMultiDict[str]) -> None:
        """Add the CORS response headers for this viewer's Origin (after the cache: per viewer)."""
        allowed = self.allowed_origin(request.headers.get("Origin"))
        vary = headers.get("Vary")
        if vary is None:
            headers["Vary"] = "Origin"
        elif "origin" not in vary.lower() and vary.strip() != "*":
            headers["Vary"] = f"{vary}, Origin"
        if allowed is None:
            return
        headers["Access-Control-Allow-Origin"] = allowed
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if self.expose:
            headers["Access-Control-Expose-Headers"] = self.expose


def expand(template: str, request: EdgeRequest) -> str:
    """A redirect target with its ``$`` placeholders filled from the request."""
    values = {
        "scheme": request.scheme,
        "host": request.host,
        "path": request.path,
        "query": request.query,
        "request_uri": request.target,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True, slots=True)
class BehaviourPolicies:
    """What a behaviour declares beyond caching."""

    viewer_protocol: str
    redirect_to: str | None
    redirect_status: int
    rewrite: tuple[re.Pattern[str], str] | None
    request_set: tuple[tuple[str, str], ...]
    request_remove: tuple[str, ...]
    response_set: tuple[tuple[str, str], ...]
    response_remove: tuple[str, ...]
    cors: Cors | None
    error_pages: Mapping[int, str]
    https_port: int = 443

    @classmethod
    def from_config(cls, config: BehaviourConfig, https_port: int = 443) -> BehaviourPolicies | None:
        """The compiled policies of a behaviour, or None when it declares none. ``https_port`` is the TLS
        listener's port (``server.tls.listen``), where ``redirect-to-https`` sends viewers."""
        policies = cls(
            viewer_protocol=config.viewer_protocol,
            https_port=https_port if config.viewer_protocol == "redirect-to-https" else 443,
            redirect_to=config.redirect.to if config.redirect is not None else None,
            redirect_status=config.redirect.status if config.redirect is not None else 301,
            rewrite=(re.compile(config.rewrite.from_), config.rewrite.to)
            if config.rewrite is not None
            else None,
            request_set=tuple(config.request_headers.set.items()),
            request_remove=tuple(config.request_headers.remove),
            response_set=tuple(config.response_headers.set.items()),
            response_remove=tuple(config.response_headers.remove),
            cors=Cors.from_config(config.cors) if config.cors is not None else None,
            error_pages=dict(config.error_pages),
        )
        if policies == _NOTHING:
            return None
        return policies

    @property
    def touches_response(self) -> bool:
        return bool(self.response_set or self.response_remove or self.cors)

    def on_recv(self, request: EdgeRequest) -> Verdict | None:
        """RECV: the HTTPS rule, then a configured redirect, then a CORS preflight."""
        if self.viewer_protocol != "allow" and request.scheme != "https":
            if self.viewer_protocol == "https-only":
                return Verdict(403, BlockReason.HTTPS_ONLY, "HTTPS required\n")
            location = f"https://{https_authority(request.host, self.https_port)}{request.target}"
            return Verdict(
                301, BlockReason.REDIRECT_TO_HTTPS, "Moved Permanently\n", CIMultiDict({"Location": location})
            )
        if self.redirect_to is not None:
            location = expand(self.redirect_to, request)
            status = self.redirect_status
            return Verdict(
                status,
                BlockReason.REDIRECT,
                f"Redirecting to {location}\n",
                CIMultiDict({"Location": location}),
            )
        if self.cors is not None:
            return self.cors.preflight(request)
        return None

    def origin_target(self, path: str, query: str) -> str:
        """FETCH: the origin-form target after ``rewrite`` (the cache key keeps the viewer's path)."""
        if self.rewrite is not None:
            pattern, replacement = self.rewrite
            path = pattern.sub(replacement, path, count=1)
        return f"{path}?{query}" if query else path

    def origin_headers(self, headers: CIMultiDict[str]) -> None:
        """FETCH: ``request_headers`` set/remove on the origin request."""
        for name in self.request_remove:
            headers.popall(name, None)
        for name, value in self.request_set:
            headers[name] = value

    def on_deliver(self, request: EdgeRequest, headers: CIMultiDict[str]) -> None:
        """DELIVER: ``response_headers`` set/remove and CORS headers, per viewer."""
        for name in self.response_remove:
            headers.popall(name, None)
        for name, value in self.response_set:
            headers[name] = value
        if self.cors is not None:
            self.cors.decorate(request, headers)


def https_authority(host: str, https_port: int) -> str:
    """The authority of a ``redirect-to-https`` Location: the viewer's host name without its port, then
    the TLS listener's port unless it is 443, the default of the https scheme (RFC 9110 §4.2.2)."""
    if host.startswith("["):  # an IPv6 literal, "[::1]:8080"
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name if https_port in (443, 0) else f"{name}:{https_port}"


_NOTHING = BehaviourPolicies(
    viewer_protocol="allow",
    redirect_to=None,
    redirect_status=301,
    rewrite=None,
    request_set=(),
    request_remove=(),
    response_set=(),
    response_remove=(),
    cors=None,
    error_pages={},
)
