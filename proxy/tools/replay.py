"""``edgeproxy replay``: not written yet in this commit."""

from __future__ import annotations

import argparse
import sys


def main(args: argparse.Namespace) -> int:
    """Not available yet: says so, exit 2."""
    print("edgeproxy replay: not available yet", file=sys.stderr)
    return 2
