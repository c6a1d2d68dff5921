"""``edgeproxy sign URL --expires 1h [--key KEY] [--network CIDR] [--cookie PREFIX]``.

Prints a signed URL (or, with ``--cookie``, the value of an ``Edge-Signed`` cookie) that the edge accepts
until the expiry. Without ``--key`` the first key of the behaviour the URL's path matches in ``--config``
is used (``${URL_SIGNING_KEY}`` and friends are read from the environment as when serving). Called by
``proxy.cli.main``; ``run`` returns the exit code (0, or 2 with a message on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from proxy.edge.signing import COOKIE_NAME, sign_cookie, sign_url, split_url
from proxy.routing import Router
from proxy.settings import BehaviourConfig, ConfigError, load_config
from proxy.settings.units import parse_duration

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    """The ``sign`` subcommand's arguments."""
    parser.add_argument("url", help="the URL (https://host/path?query, or /path?query) to sign")
    parser.add_argument("--expires", required=True, help="how long it stays valid: 30s, 1h, 7d …")
    parser.add_argument(
        "--key", help="signing key (default: the first key of the behaviour the path matches in --config)"
    )
    parser.add_argument("--config", default=default_config, help=f"config file (default: {default_config})")
    parser.add_argument("--network", help="valid only for clients in this network, e.g. 203.0.113.0/24")
    parser.add_argument(
        "--cookie",
        metavar="PREFIX",
        help=f"print an {COOKIE_NAME} cookie value granting every path under PREFIX instead of a URL",
    )


def _config_key(config_path: str, path: str) -> str:
    """The first key of the behaviour ``path`` matches; raises ValueError when it has none."""
    config = load_config(config_path)
    behaviour: BehaviourConfig = Router(list(config.behaviours)).match(path)
    signed = behaviour.signed
    if signed is None:
        raise ValueError(f"behaviour {behaviour.path!r} (matched by {path}) is not signed; pass --key")
    keys = (signed.key,) if isinstance(signed.key, str) else signed.key
    usable = [key for key in keys if key]
    if not usable:
        raise ValueError(f"behaviour {behaviour.path!r} has an empty signing key; set it or pass --key")
    return usable[0]


def run(args: argparse.Namespace, now: Callable[[], float] = time.time) -> int:
    """Print the signed URL or cookie for ``args``; 0 on success, 2 on a bad argument or config."""
    try:
        lifetime = parse_duration(args.expires)
        if lifetime <= 0:
            raise ValueError(f"--expires must be more than 0s, got {args.expires!r}")
        expires = int(now() + lifetime)
        path = split_url(args.url)[2]
        key = args.key if args.key is not None else _config_key(args.config, args.cookie or path)
        if args.cookie is not None:
            print(sign_cookie(key, args.cookie, expires, args.network))
        else:
            print(sign_url(args.url, key, expires, args.network))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgeproxy sign: {exc}", file=sys.stderr)
        return 2
    return 0
