#!/usr/bin/env python3
"""Instructions per request, counted by valgrind (repeatable on a busy machine, unlike req/s).

    python benchmarks/instructions.py [--requests 2000] [--connections 8] [--scenario hit-1k|miss-1k|all]

Starts the benchmark origin (``run.py``'s), then ``python -m proxy serve`` (one worker) under
``valgrind --tool=callgrind --instr-atstart=no``; warms it up uninstrumented, switches instrumentation on
(``callgrind_control -i on``), sends exactly N requests over raw keep-alive sockets, dumps the counters and
prints the instructions (Ir) per request: the edge process only (the origin and the client are not counted).
Loopback only. Add ``--keep`` to keep the callgrind output (``callgrind_annotate`` reads it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark origin and the raw-socket client


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--scenario", choices=("hit-1k", "miss-1k", "all"), default="all")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("error: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-ir-"))
    procs = run.Processes()
    try:
        listener = socket.socket()
        listener.bind((run.HOST, 0))
        listener.listen(1024)
        origin_port = listener.getsockname()[1]
        argv = [sys.executable, run.__file__, "--serve-origin-fd", str(listener.fileno())]
        procs.start("origin", argv, tmp / "origin.log", pass_fds=(listener.fileno(),))
        listener.close()
        port = run._free_port()
        config = tmp / "edge.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                server: {{listen: "{run.HOST}:{port}", workers: 1, access_log: "off"}}
                origins: {{bench: {{url: "http://{run.HOST}:{origin_port}"}}}}
                behaviours: [{{path: "*", origin: bench}}]
                """
            )
        )
        out = tmp / "callgrind.out"
        env = dict(os.environ, PYTHONPATH=str(run.REPO))
        edge = procs.start(
            "edge",
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}.%p",
                sys.executable,
                "-m",
                "proxy",
                "serve",
                "--config",
                str(config),
            ],
            tmp / "edge.log",
            cwd=run.REPO,
            env=env,
        )
        why = run._wait_until_answers(edge, f"http://{run.HOST}:{port}/1k", 300)
        if why:
            print(f"error: the edge did not start under valgrind: {why}\n{run._tail(tmp / 'edge.log')}")
            return 1
        scenarios = ("hit-1k", "miss-1k") if args.scenario == "all" else (args.scenario,)
        token = time.monotonic_ns()
        for sc in scenarios:
            if sc == "hit-1k":
                paths = ["/1k"] * args.requests
                warm = ["/1k"] * 200
            else:
                paths = [f"/miss/{token}-{i}" for i in range(args.requests)]
                warm = [f"/miss/{token}-w{i}" for i in range(200)]
            run.drive(port, warm, args.connections)
            subprocess.run(["callgrind_control", "-z", str(edge.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", str(edge.pid)], check=True, capture_output=True)
            bad = run.drive(port, paths, args.connections)
            subprocess.run(["callgrind_control", "-i", "off", str(edge.pid)], check=True, capture_output=True)
            before = set(tmp.glob("callgrind.out.*"))
            subprocess.run(["callgrind_control", "-d", sc, str(edge.pid)], check=True, capture_output=True)
            dumps = sorted(set(tmp.glob("callgrind.out.*")) - before, key=lambda f: f.stat().st_mtime)
            if not dumps:
                print(f"error: no callgrind dump for {sc}")
                return 1
            text = dumps[-1].read_text(errors="replace")
            total = re.search(r"^totals:\s+(\d+)", text, re.M)
            if total is None:
                print(f"error: no totals in {dumps[-1]}")
                return 1
            ir = int(total.group(1))
            note = f" ({bad} not 200)" if bad else ""
            per = ir / args.requests
            print(f"{sc}: {per:,.0f} instructions per request ({args.requests} requests){note}")
            if args.keep:
                print(f"  callgrind output: {dumps[-1]}")
        return 0
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
