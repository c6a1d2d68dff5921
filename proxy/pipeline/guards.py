"""Guards: checks that run in RECV, before any cache work (firewall, rate limits, geo, signed URLs …).

Built once per runtime by ``proxy.edge.build_guards(config)`` and handed to the pipeline. For each request,
after the behaviour is matched, every guard's ``check`` is called in order; the first ``Verdict`` stops the
request with a synthetic response (403, 429 …). A guard may also adjust the request (e.g. the client
address when the peer is a trusted proxy) and return None to let it pass. Guards are synchronous: they run
on every request, cache hits included, so they must be cheap and never wait on I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict

from proxy.pipeline.context import RequestContext


@dataclass(slots=True)
class Verdict:
    """Stop the request: answer ``status`` with ``body``; ``reason`` goes to Cache-Status detail= and the
    access log (a short token such as "firewall-deny" or "rate-limited")."""

    status: int
    reason: str
    body: str = ""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


class Guard(Protocol):
    """One RECV check."""

    def check(self, ctx: RequestContext) -> Verdict | None:
        """None lets the request go on; a Verdict answers it at once."""
        ...
