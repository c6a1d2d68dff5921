#!/usr/bin/env python3
"""Reloads under keep-alive load: does a SIGHUP lose requests?

    python benchmarks/reload.py [--reloads 3] [--connections 32] [--workers 2]

Starts edgeproxy (``server.workers`` processes, a local folder as origin, everything on 127.0.0.1), runs
``wrk`` with keep-alive connections against it, sends ``--reloads`` SIGHUPs in a row (each once the previous
generation has taken over), lets wrk finish, and prints wrk's request count with its socket errors and
non-2xx answers. A reload that closes a keep-alive connection under a request wrk already sent shows up
as a read error; the goal is zero of every kind. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read the edge's stderr until a line matches ``pattern``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"edgeproxy exited before printing {pattern!r}")
        if re.search(pattern, line):
            return line
    raise SystemExit(f"edgeproxy did not print {pattern!r} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of load before, between and after")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgeproxy-reload-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "site").mkdir()
        (tmp / "site" / "index.html").write_bytes(b"x" * 1024)
        port = free_port()
        config = tmp / "edge.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                server:
                  {{listen: "{HOST}:{port}", name: reload-edge, workers: {args.workers}, access_log: "off"}}
                origins: {{site: {{root: ./site}}}}
                behaviours: [{{path: "*", origin: site, ttl: {{default: 60s}}}}]
                """
            )
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        edge = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config)],
            cwd=tmp,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        load: subprocess.Popen[str] | None = None
        try:
            wait_for_line(edge, r"workers running|serving on", 30)
            duration = args.settle * (args.reloads + 2) + 5 * args.reloads
            load = subprocess.Popen(
                [wrk, "-t1", f"-c{args.connections}", f"-d{duration:.0f}s", f"http://{HOST}:{port}/"],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(args.settle)
            for generation in range(2, args.reloads + 2):
                edge.send_signal(signal.SIGHUP)
                wait_for_line(edge, rf"reloaded: generation {generation}", 30)
                print(f"reload {generation - 1}: generation {generation} serving")
                time.sleep(args.settle)
            output, _ = load.communicate(timeout=duration + 30)
        finally:
            if load is not None and load.poll() is None:
                load.kill()
            edge.send_signal(signal.SIGTERM)
            try:
                edge.wait(30)
            except subprocess.TimeoutExpired:
                edge.kill()
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors: (.*)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    print(output)
    print(
        f"{args.reloads} reloads under {args.connections} keep-alive connections: "
        f"{requests.group(1) if requests else '?'} requests, socket errors: "
        f"{errors.group(1) if errors else 'none'}, non-2xx: {non2xx.group(1) if non2xx else 0}"
    )
    return 0 if errors is None and non2xx is None else 1


if __name__ == "__main__":
    sys.exit(main())
