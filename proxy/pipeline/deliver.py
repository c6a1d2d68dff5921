"""DELIVER and SYNTH: build the response the viewer gets, from a stored entry, an origin response, or the
edge itself. Adds ``Via``, ``Age`` (RFC 9111 §4.2.3), ``Cache-Status`` (RFC 9211) and ``X-Cache``; answers
viewer conditionals (RFC 9110 §13) and ranges (RFC 9110 §14) from complete stored responses.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from multidict import CIMultiDict, istr

from proxy.cache.entry import CacheEntry
from proxy.edge.verdicts import REQUEST_ID_HEADER, new_request_id
from proxy.http.cache_status import append_cache_status, format_cache_status
from proxy.http.conditional import NOT_MODIFIED_HEADERS, evaluate_preconditions
from proxy.http.dates import parse_http_date
from proxy.http.error_page import EDGE_PAGE_STATUSES
from proxy.http.error_page import render as render_error_page
from proxy.http.ranges import content_range, if_range_allows, multipart_byteranges, parse_range
from proxy.http.reasons import CacheResult, SynthReason
from proxy.messages import EdgeResponse
from proxy.origin.base import OriginError, OriginResponse, OriginTimeoutError
from proxy.pipeline.context import RequestContext
from proxy.pipeline.encoded import entry_wire

_X_CACHE = {
    CacheResult.HIT: "Hit from edgeproxy",
    CacheResult.REFRESH_HIT: "RefreshHit from edgeproxy",
    CacheResult.STALE: "Hit from edgeproxy",
    CacheResult.MISS: "Miss from edgeproxy",
    CacheResult.BYPASS: "Miss from edgeproxy",
    CacheResult.SYNTH: "Error from edgeproxy",
    # CloudFront's label for answers made by its functions; an edge function that fails is an Error (502).
    CacheResult.GENERATED: "FunctionGeneratedResponse from edgeproxy",
    CacheResult.ERROR: "Error from edgeproxy",
}
_CONDITIONALS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")
# The same names (and Range) as multidict ``istr``: a lookup with one skips lower-casing the name (2x faster).
_RANGE, _INM, _IMS, _IM, _IUS = (istr(name) for name in ("Range", *_CONDITIONALS))
NO_BODY_STATUSES = frozenset((204, 304))
_KEPT_ON_304 = frozenset(
    name.lower() for name in (*NOT_MODIFIED_HEADERS, "Age", "Via", "Cache-Status", "X-Cache", "Server")
)


def _no_body(method: str, status: int) -> bool:
    """HEAD, 1xx, 204 and 304 answers never carry a body (RFC 9110 §6.4.1)."""
    return method == "HEAD" or status in NO_BODY_STATUSES or status < 200


def _strip_purge_tags(headers: CIMultiDict[str]) -> None:
    """Purge tags are for this cache (they are kept in the entry), not for viewers."""
    headers.popall("Surrogate-Key", None)
    headers.popall("Cache-Tag", None)


class Deliverer:
    """Builds viewer responses for one edge (``name`` is this cache's name in Via and Cache-Status)."""

    def __init__(self, name: str, *, show_key: bool = False) -> None:
        self.name = name
        self.show_key = show_key  # cache.status_key: key="…" in Cache-Status (RFC 9211 §2.7)
        self._via = f"1.1 {name}"
        self._hit_members: dict[int, str] = {}
        # Hit fast path: "Via … Cache-Status … X-Cache" lines per whole second of ttl left.
        self._hit_lines: dict[int, bytes] = {}
        self._fast = not any(c in name for c in "\r\n") and name.isascii()

    def _decorate(self, ctx: RequestContext, headers: CIMultiDict[str], cache_status: str) -> None:
        via = headers.get("Via")
        headers["Via"] = f"{via}, {self._via}" if via else self._via
        headers["Cache-Status"] = append_cache_status(headers.get("Cache-Status"), cache_status)
        headers["X-Cache"] = _X_CACHE[ctx.result]
        if "Server" not in headers:
            headers["Server"] = "edgeproxy"
        behaviour = ctx.behaviour
        if behaviour is not None:
            for hook in behaviour.hooks.deliver:
                hook.deliver(ctx.request, headers)

    # ---------------------------------------------------------------- SYNTH
    def synthetic(
        self, ctx: RequestContext, status: int, text: str, extra: CIMultiDict[str] | None = None
    ) -> EdgeResponse:
        """A response made by the edge itself (405, 502, 504 …), with a short plain-text body."""
        if ctx.result is not CacheResult.ERROR:
            ctx.result = CacheResult.SYNTH
        body = text.encode()
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/plain; charset=utf-8"})
        if extra:
            headers.extend(extra)
        if status in EDGE_PAGE_STATUSES:
            body = self._edge_page(ctx, status, text, headers)
        headers["Cache-Control"] = "no-store"
        detail = ctx.reason if ctx.synth is not None or ctx.blocked is not None else None
        status_member = format_cache_status(self.name, hit=False, fwd=ctx.fwd, detail=detail)
        self._decorate(ctx, headers, status_member)
        if 300 <= status < 400:
            headers["X-Cache"] = "Redirect from edgeproxy"
        no_body = _no_body(ctx.request.method, status)
        return EdgeResponse(
            status=status, headers=headers, body=body, content_length=len(body), no_body=no_body
        )

    def origin_failed(self, ctx: RequestContext, exc: OriginError) -> EdgeResponse:
        """No usable answer from the origin and nothing stale to serve: 504 when it timed out, else 502."""
        ctx.result = CacheResult.ERROR
        if isinstance(exc, OriginTimeoutError):
            ctx.synth = SynthReason.ORIGIN_TIMEOUT
            return self.synthetic(ctx, 504, "Gateway Timeout: the origin did not answer in time\n")
        ctx.synth = SynthReason.ORIGIN_UNREACHABLE
        return self.synthetic(ctx, 502, "Bad Gateway: the origin could not be reached\n")

    def _edge_page(self, ctx: RequestContext, status: int, text: str, headers: CIMultiDict[str]) -> bytes:
        """The styled error page (HTML or plain text per Accept) naming the edge and the request id, which
        also goes out in ``X-Request-Id``."""
        request_id = headers.get(REQUEST_ID_HEADER) or getattr(ctx, "request_id", None) or new_request_id()
        headers[REQUEST_ID_HEADER] = request_id
        content_type, body = render_error_page(
            status, text, edge=self.name, request_id=request_id, accept=ctx.request.headers.get("Accept")
        )
        headers["Content-Type"] = content_type
        return body

    def generated(self, ctx: RequestContext, response: EdgeResponse) -> EdgeResponse:
        """A response an edge function made in viewer_request: decorated like SYNTH, never stored, and
        labelled as generated (``X-Cache: FunctionGeneratedResponse``, access log ``cache: generated``): it
        is neither a hit nor an error, whatever its status."""
        ctx.result = CacheResult.GENERATED
        member = format_cache_status(self.name, hit=False, detail=ctx.reason)
        self._decorate(ctx, response.headers, member)
        return response

    # ---------------------------------------------------------------- from the cache
    def from_entry(
        self, ctx: RequestContext, entry: CacheEntry, *, hit: bool, age: float | None = None
    ) -> EdgeResponse:
        """Serve a stored entry: a hit, a refreshed hit or a just-stored miss. ``age``: the entry's age at
        ``ctx.now`` when the caller has it already (LOOKUP)."""
        request = ctx.request
        if age is None:
            age = entry.age(ctx.now)
        ctx.ttl = entry.ttl - age
        member: str | None
        key = ctx.key if self.show_key else None
        if hit and (ctx.tier is not None or key is not None):
            detail = ctx.tier
            member = format_cache_status(self.name, hit=True, ttl=ctx.ttl, key=key, detail=detail)
        elif hit:
            # The hit member depends only on the whole seconds of ttl left: build each one once.
            remaining = int(ctx.ttl // 1)
            if self._fast and self._plain_hit(ctx, entry.status):
                fields, tail = entry_wire(entry)
                if fields:
                    return self._encoded_hit(ctx, entry, fields, tail, age, remaining)
            member = self._hit_member(remaining)
        else:
            member = format_cache_status(
                self.name,
                hit=False,
                fwd=ctx.fwd,
                fwd_status=ctx.fwd_status,
                ttl=ctx.ttl,
                stored=ctx.stored,
                collapsed=ctx.collapsed,
                key=key,
                detail=ctx.not_stored.value if ctx.not_stored is not None else None,
            )
        headers = CIMultiDict(entry.headers)
        if entry.tags:
            _strip_purge_tags(headers)
        headers["Age"] = str(int(age))
        self._decorate(ctx, headers, member)
        status = entry.status
        body = entry.body
        if status == 200:
            answered = self._viewer_preconditions(ctx, headers, body, received=entry.response_time)
            if answered is not None:
                return answered
        no_body = _no_body(request.method, status)
        return EdgeResponse(
            status=status, headers=headers, body=body, content_length=len(body), no_body=no_body
        )

    def _hit_member(self, remaining: int) -> str:
        member = self._hit_members.get(remaining)
        if member is None:
            if len(self._hit_members) >= 4096:
                self._hit_members.clear()
            member = format_cache_status(self.name, hit=True, ttl=remaining)
            self._hit_members[remaining] = member
        return member

    def _plain_hit(self, ctx: RequestContext, status: int) -> bool:
        """Whether a fresh hit's head is the stored one plus DELIVER's own fields: no response policy, no
        viewer_response function, and (for a 200) no conditional or Range for DELIVER to answer."""
        behaviour = ctx.behaviour
        if behaviour is not None and behaviour.hooks.shapes_response:
            return False
        if status == 200:
            headers = ctx.request.headers
            if _RANGE in headers or _INM in headers or _IMS in headers or _IM in headers or _IUS in headers:
                return False  # the names of _CONDITIONALS, spelled out: no generator per hit
        return True

    def _encoded_hit(
        self, ctx: RequestContext, entry: CacheEntry, fields: bytes, tail: bytes, age: float, remaining: int
    ) -> EdgeResponse:
        """The hit fast path: the entry's pre-encoded fields, then Age, Via, Cache-Status and X-Cache (and
        the default Server), in the order and with the values the general path gives them."""
        lines = self._hit_lines.get(remaining)
        if lines is None:
            if len(self._hit_lines) >= 4096:
                self._hit_lines.clear()
            member = self._hit_member(remaining)
            text = f"Via: {self._via}\r\nCache-Status: {member}\r\nX-Cache: {_X_CACHE[CacheResult.HIT]}\r\n"
            lines = self._hit_lines[remaining] = text.encode("ascii")
        body = entry.body
        status = entry.status
        return EdgeResponse(
            status=status,
            headers=CIMultiDict(),
            body=body,
            content_length=len(body),
            no_body=_no_body(ctx.request.method, status),
            head=(fields, b"Age: %d\r\n" % int(age), lines, tail),
        )

    def _viewer_preconditions(
        self, ctx: RequestContext, headers: CIMultiDict[str], body: bytes | None, *, received: float | None
    ) -> EdgeResponse | None:
        """Answer the viewer's conditionals, then its Range, against a complete 200 response (``body``
        None when the body is a stream: Range is then ignored, which RFC 9110 §14.2 allows). ``received``:
        when the response arrived from the origin (None when not known)."""
        request_headers = ctx.request.headers
        if any(name in request_headers for name in _CONDITIONALS):
            answer = self._conditional(ctx, headers, received)
            if answer is not None:
                return answer
        if body is not None and ctx.request.method == "GET" and "Range" in request_headers:
            return self._range(ctx, headers, body)
        return None

    def _conditional(
        self, ctx: RequestContext, headers: CIMultiDict[str], received: float | None
    ) -> EdgeResponse | None:
        """Evaluate the viewer's preconditions against a stored response (RFC 9110 §13.2.2); without
        Last-Modified, If-Modified-Since is evaluated with its Date, else ``received`` (RFC 9111 §4.3.2)."""
        etag = headers.get("ETag")
        last_modified = parse_http_date(headers.get("Last-Modified"))
        date = None
        if last_modified is None:
            date = parse_http_date(headers.get("Date"))
            if date is None:
                date = received
        outcome = evaluate_preconditions(
            ctx.request.method, ctx.request.headers, etag, last_modified, date=date
        )
        if outcome is None:
            return None
        if outcome == 304:
            # RFC 9110 §15.4.5: a 304 carries the fields a 200 would have among these, and no content.
            kept: CIMultiDict[str] = CIMultiDict()
            for name, value in headers.items():
                if name.lower() in _KEPT_ON_304:
                    kept.add(name, value)
            return EdgeResponse(status=304, headers=kept, no_body=True, content_length=None)
        for name in ("Content-Type", "Content-Encoding", "ETag", "Last-Modified"):
            headers.popall(name, None)
        return EdgeResponse(status=412, headers=headers, body=b"", content_length=0, no_body=True)

    def _range(self, ctx: RequestContext, headers: CIMultiDict[str], body: bytes) -> EdgeResponse | None:
        """Answer ``Range`` from a complete stored body (RFC 9110 §14); None serves the whole body."""
        request_headers = ctx.request.headers
        etag = headers.get("ETag")
        last_modified = parse_http_date(headers.get("Last-Modified"))
        date = parse_http_date(headers.get("Date"))
        if not if_range_allows(request_headers.get("If-Range"), etag, last_modified, date=date):
            return None
        length = len(body)
        ranges = parse_range(request_headers.get("Range"), length)
        if ranges is None:
            return None
        if ranges == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{length}"
            headers.popall("Content-Type", None)
            return EdgeResponse(status=416, headers=headers, body=b"", content_length=0)
        if len(ranges) > 1 and "Content-Encoding" in headers:
            return None  # a multipart body under an outer coding would be misread: the whole body (§14.2)
        view = memoryview(body)
        if len(ranges) == 1:
            first, last = ranges[0]
            headers["Content-Range"] = content_range(first, last, length)
            return EdgeResponse(
                status=206, headers=headers, body=view[first : last + 1], content_length=last - first + 1
            )
        content_type, parts = multipart_byteranges(
            view, ranges, headers.get("Content-Type"), length, secrets.token_hex(12)
        )
        headers["Content-Type"] = content_type
        return EdgeResponse(
            status=206, headers=headers, body=parts, content_length=sum(len(p) for p in parts)
        )

    # ---------------------------------------------------------------- from the origin
    def from_origin(
        self,
        ctx: RequestContext,
        response: OriginResponse,
        *,
        stream: AsyncIterator[bytes] | None,
        body: bytes | None,
        age: float | None = None,
        storing: bool = False,
    ) -> EdgeResponse:
        """Pass an origin response on: streamed (``stream``) or already read (``body``). ``age`` is given
        when the response is being stored (RFC 9111 §4.2.3: a cacheable response carries its Age).
        ``storing``: a streamed fill whose body is still on its way, so whether it will be stored is not
        known when the head is sent; Cache-Status says ``detail=storing`` rather than ``stored`` (RFC 9211
        §2.5: ``stored`` says the response was stored), and the access log, written after the last byte,
        says the outcome."""
        headers = CIMultiDict(response.headers)
        _strip_purge_tags(headers)
        if age is not None:
            headers["Age"] = str(int(age))
        headers.popall("Content-Length", None)
        headers.popall("X-Cache", None)
        member = format_cache_status(
            self.name,
            hit=False,
            fwd=ctx.fwd,
            fwd_status=response.status,
            ttl=ctx.ttl if ctx.stored or storing else None,
            stored=ctx.stored,
            key=ctx.key if self.show_key else None,
            detail=ctx.not_stored.value if ctx.not_stored is not None else "storing" if storing else None,
        )
        self._decorate(ctx, headers, member)
        if ctx.fill and response.status == 200:
            # The fill dropped the viewer's conditionals and Range (so that the full object could be
            # stored); when it was not stored they are answered here instead (RFC 9110 §13.2.2, §14.2).
            answered = self._viewer_preconditions(ctx, headers, body, received=None)
            if answered is not None:
                answered.stream = stream
                return answered
        no_body = _no_body(ctx.request.method, response.status)
        if body is not None:
            length = response.content_length if no_body and response.content_length is not None else len(body)
            return EdgeResponse(
                status=response.status, headers=headers, body=body, content_length=length, no_body=no_body
            )
        return EdgeResponse(
            status=response.status,
            headers=headers,
            stream=stream,
            content_length=response.content_length,
            no_body=no_body,
        )
