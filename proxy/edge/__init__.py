"""The edge's protective features: firewall, rate limits, geo restriction, signed URLs.

``build_guards(config)`` returns the RECV guards (see ``proxy.pipeline.guards``) for a config; called once
per runtime by ``proxy.app.Edge``.
"""

from __future__ import annotations

from proxy.pipeline.guards import Guard
from proxy.settings import EdgeConfig


def build_guards(config: EdgeConfig) -> list[Guard]:
    """The guards ``config`` asks for, in evaluation order (none yet: the firewall is being built)."""
    return []
