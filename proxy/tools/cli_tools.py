"""Arguments of ``edgeproxy replay`` and ``edgeproxy top``, and their dispatch (called by ``proxy.cli``).

Kept here so the core command line stays small; each tool's work lives in its own module, imported only
when that command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any, default_config: str) -> None:
    """Add the ``replay`` and ``top`` subcommands to the CLI's subparsers."""
    replay = commands.add_parser(
        "replay", help="replay an access log through a config's cache at several memory sizes (what-if)"
    )
    replay.add_argument("access_log", metavar="ACCESS_LOG", help="JSON access log or Combined Log Format")
    replay.add_argument("--config", default=default_config, help="edge config (default: the bundled demo)")
    replay.add_argument(
        "--memory", default=None, help="memory sizes, e.g. 64MiB,256MiB,1GiB (default: the config's)"
    )
    replay.add_argument("--plot", default=None, metavar="FILE.png", help="hit ratio vs size chart")
    replay.add_argument("--format", choices=("auto", "json", "combined"), default="auto", help="log format")
    replay.add_argument("--top", type=int, default=5, help="behaviours shown in 'misses most' (default 5)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    top = commands.add_parser("top", help="live view of an edge's numbers from its admin API")
    top.add_argument(
        "--admin", default=None, help="admin API base URL (default: from --config's admin.listen)"
    )
    top.add_argument("--config", default=default_config, help="edge config that names the admin listener")
    top.add_argument("--token", default=None, help="admin token (default: $EDGEPROXY_ADMIN_TOKEN)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")


def run(args: argparse.Namespace) -> int:
    """Run ``replay`` or ``top``; returns the exit code."""
    if args.command == "replay":
        import proxy.tools.replay as replay

        return replay.main(args)
    import proxy.tools.top as top

    return top.main(args)
