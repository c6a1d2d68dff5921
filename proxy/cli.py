"""The command line: ``edgeproxy serve | check | sign | init | replay | top`` (also ``python -m proxy …``).

``main(argv)`` is the console-script entry point; it returns the process exit code: 0 on success, 2 for a
bad config or bad arguments (the messages name file, line and key; never a traceback), 1 when the edge
cannot start (e.g. the port is taken).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from proxy.edge import sign_command
from proxy.observability.logs import LEVELS, configure
from proxy.settings import ConfigError, EdgeConfig, ListenAddress, config_for_origin, load_config
from proxy.settings.model import parse_listen
from proxy.settings.report import behaviour_table, forwarding_lines, inactive_keys
from proxy.starter import DEMO_CONFIG, version

DEFAULT_CONFIG = str(DEMO_CONFIG)  # the demo edge installed with the package (proxy/demo/edge.yaml)
_DEFAULT_SHOWN = "the bundled demo edge"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeproxy", description="A caching CDN edge.")
    parser.add_argument("--version", action="version", version=f"edgeproxy {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the edge")
    serve.add_argument("--config", default=None, help=f"config file (default: {_DEFAULT_SHOWN})")
    serve.add_argument("--listen", action="append", help="HOST:PORT to listen on (overrides server.listen)")
    serve.add_argument(
        "--origin", help="front this origin URL with one default '*' behaviour (no config file needed)"
    )
    # Internal: set by the worker supervisor on the processes it starts (server.workers > 1).
    serve.add_argument("--worker-ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="stderr lines (default: text)"
    )
    serve.add_argument(
        "--log-level", choices=LEVELS, default="info", help="least level shown (default: info)"
    )
    check = commands.add_parser("check", help="validate a config and show its behaviours")
    check.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default: {_DEFAULT_SHOWN})")
    sign = commands.add_parser("sign", help="print a signed URL (or signed cookie) for a signed behaviour")
    sign_command.add_arguments(sign, DEFAULT_CONFIG)
    init = commands.add_parser("init", help="write an editable starter config and site into a folder")
    init.add_argument("directory", nargs="?", default=".", help="folder for edge.yaml and site/ (default: .)")
    from proxy.tools import cli_tools

    cli_tools.add_commands(commands, DEFAULT_CONFIG)
    return parser


def _listen(values: Sequence[str] | None) -> tuple[ListenAddress, ...] | None:
    if not values:
        return None
    return tuple(parse_listen(v) for v in values)


def _load(args: argparse.Namespace) -> EdgeConfig:
    if getattr(args, "origin", None):
        if args.config:
            raise SystemExit("edgeproxy: use either --config or --origin, not both")
        return config_for_origin(args.origin)
    return load_config(args.config or DEFAULT_CONFIG)


def _key_line(filename: str, keys: tuple[str, ...]) -> str:
    """``:line`` of the value of ``keys`` in the YAML file (empty when it cannot be found)."""
    import yaml

    try:
        with open(filename, encoding="utf-8") as file:
            node = yaml.compose(file)
    except (OSError, yaml.YAMLError):
        return ""
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return ""
        node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
    return f":{node.start_mark.line + 1}" if node is not None else ""


def _check_folders(config: EdgeConfig) -> int:
    """What only the file system can tell: the disk tier's folder (exists or creatable, writable)."""
    from proxy.cache.disk import disk_folder_problem

    disk = config.cache.disk
    problem = disk_folder_problem(disk.path) if disk is not None else None
    if problem is None:
        return 0
    where = config.source_file + _key_line(config.source_file, ("cache", "disk", "path"))
    print(f"{where}: cache.disk.path: {problem}", file=sys.stderr)
    print("edgeproxy: 1 problem(s) in the configuration", file=sys.stderr)
    return 2


def _check(config: EdgeConfig) -> int:
    if _check_folders(config):
        return 2
    print(f"{config.source_file}: OK")
    print()
    print(behaviour_table(config))
    forwarding = forwarding_lines(config)
    if forwarding:
        print()
        print("What reaches the origin (forward, with its defaults and the cache key):")
        for line in forwarding:
            print(f"  {line}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    inactive = inactive_keys(config)
    if inactive:
        print()
        print("Accepted, but not active yet in this version (they take effect in a later release):")
        for key in inactive:
            print(f"  {key}")
    return 0


def _init(directory: str) -> int:
    from pathlib import Path

    from proxy.starter import InitError, init

    target = Path(directory)
    try:
        written = init(target)
    except (InitError, OSError) as exc:
        print(f"edgeproxy init: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}{'/' if path.is_dir() else ''}")
    config = written[0]
    print(f"next: edgeproxy check --config {config} && edgeproxy serve --config {config}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "sign":
        return sign_command.run(args)
    if args.command == "init":
        return _init(args.directory)
    if args.command in ("replay", "top"):
        from proxy.tools import cli_tools

        return cli_tools.run(args)
    try:
        listen = _listen(getattr(args, "listen", None))
        config = _load(args)
        if args.command == "check":
            # Compiling the runtime resolves what only exists at run time (edge function modules).
            from proxy.pipeline.runtime import build_runtime

            build_runtime(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(f"edgeproxy: {len(exc.problems)} problem(s) in the configuration", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgeproxy: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(config)
    from proxy.app import run_loop, serve
    from proxy.server.workers import Supervisor, worker_count

    ready_fd = args.worker_ready_fd
    count = worker_count(config.server.workers)
    role = "supervisor" if ready_fd is None and count > 1 else ("worker" if ready_fd is not None else "edge")
    configure(
        args.log_format, args.log_level, worker=role if role == "supervisor" else f"{role} {os.getpid()}"
    )
    if ready_fd is None and count > 1:
        worker_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
        config_path = None if args.origin else (args.config or DEFAULT_CONFIG)
        return run_loop(Supervisor(worker_argv, config_path, count).run())
    return run_loop(serve(config, listen, reuse_port=ready_fd is not None, ready_fd=ready_fd))


if __name__ == "__main__":
    sys.exit(main())
