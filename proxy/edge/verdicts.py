"""The answers guards give when they stop a request: status, reason token, request id.

``refuse(ctx, status, reason)`` is called by a guard that decides to stop a request. The viewer gets a short
plain-text body and an ``X-Request-Id`` header carrying a fresh id; the same id is logged (logger
``edgeproxy.edge``, INFO) with the reason, the client and the path, so an operator can find why a viewer
was refused. The reason token goes to ``Cache-Status: …; detail=<reason>`` and the access log.
"""

from __future__ import annotations

import logging
import secrets

from multidict import CIMultiDict

from proxy.http.reasons import BlockReason
from proxy.http.status import reason_phrase
from proxy.messages import GuardInput, Verdict

__all__ = ["REQUEST_ID_HEADER", "new_request_id", "refuse"]

REQUEST_ID_HEADER = "X-Request-Id"

log = logging.getLogger("edgeproxy.edge")


def new_request_id() -> str:
    """A random id (16 hex digits) for one refused request."""
    return secrets.token_hex(8)


def refuse(
    ctx: GuardInput, status: int, reason: BlockReason, headers: CIMultiDict[str] | None = None
) -> Verdict:
    """A Verdict answering ``status`` with a request id in the body and in ``X-Request-Id``.

    ``reason`` is a short token (``firewall-deny``, ``rate-limited`` …). Extra ``headers`` (such as
    ``Retry-After``) are added to the response.
    """
    request_id = new_request_id()
    out: CIMultiDict[str] = CIMultiDict(headers or ())
    out[REQUEST_ID_HEADER] = request_id
    request = ctx.request
    log.info(
        "refused %s %s %r from %s: %s (request id %s)",
        status,
        request.method,
        request.path,
        request.client_ip,
        reason,
        request_id,
    )
    body = f"{status} {reason_phrase(status)}\nrequest id: {request_id}\n"
    return Verdict(status=status, reason=reason, body=body, headers=out)
