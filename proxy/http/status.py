"""Reason phrases of status codes: the one table every writer of a status line or a short error body uses.

Called by the HTTP/1.1 front for status lines (``proxy.server.http1.wire``), by the guards' refusals
(``proxy.edge.verdicts``) and by the pipeline's synthetic answers. The phrases are Python's ``HTTPStatus``
ones (the IANA registry, RFC 9110 §15); the reason phrase is advisory and a client ignores it (RFC 9112
§4), so a code without a registered phrase gets ``Unknown``.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["REASON_PHRASES", "reason_phrase"]

REASON_PHRASES: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}


def reason_phrase(status: int) -> str:
    """The reason phrase of ``status`` (``Unknown`` for codes without a registered one)."""
    return REASON_PHRASES.get(status, "Unknown")
