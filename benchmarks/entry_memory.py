#!/usr/bin/env python3
"""Where the memory of a cached object goes: an in-process edge filled with N distinct 1 KiB objects.

    python benchmarks/entry_memory.py [N] [--tracemalloc]

Starts the benchmark origin (``run.py``'s, in its own process), an edge in this process (one behaviour,
memory tier large enough for N objects), fetches N distinct cacheable 1 KiB objects once each over raw
keep-alive sockets, then all of them again (hits: the pre-encoded heads get built). Prints the RSS growth
per object and, with --tracemalloc, the allocations still held, per line of code, per object. Loopback only.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # the benchmark origin and the raw-socket client


async def main(count: int, trace: bool) -> None:
    from proxy.app import Edge
    from proxy.settings import ListenAddress, parse_config

    listener = socket.socket()
    listener.bind((run.HOST, 0))
    listener.listen(1024)
    origin_port = listener.getsockname()[1]
    origin = subprocess.Popen(
        [sys.executable, run.__file__, "--serve-origin-fd", str(listener.fileno())],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    text = (
        "server: {listen: 127.0.0.1:0, access_log: 'off'}\n"
        "cache: {memory: {max_bytes: 4GiB}}\n"
        f"origins: {{bench: {{url: 'http://127.0.0.1:{origin_port}'}}}}\n"
        "behaviours: [{path: '*', origin: bench}]\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(text, str(Path(tmp) / "edge.yaml"), env={}, base_dir=Path(tmp))
        edge = Edge(config, shutdown_grace=1.0)
        (_host, port), *_ = await edge.start((ListenAddress(host="127.0.0.1", port=0),))
        try:
            token = time.monotonic_ns()
            paths = [f"/c/{token}-{i}" for i in range(count + 1000)]
            await run._drive(port, paths[:1000], 16)  # warm-up: pools, code paths
            await run._drive(port, paths[:1000], 16)
            gc.collect()
            if trace:
                tracemalloc.start(8)
            before_rss = run._rss_bytes(os.getpid())
            before = tracemalloc.take_snapshot() if trace else None
            await run._drive(port, paths[1000:], 16)
            await run._drive(port, paths[1000:], 16)  # hits
            gc.collect()
            after = tracemalloc.take_snapshot() if trace else None
            after_rss = run._rss_bytes(os.getpid())
            print(f"RSS growth per object: {(after_rss - before_rss) / count:,.0f} B (body 1,024 B included)")
            if before is not None and after is not None:
                stats = after.compare_to(before, "lineno")
                total = sum(s.size_diff for s in stats)
                print(f"traced growth per object: {total / count:,.0f} B")
                for s in stats[:25]:
                    if abs(s.size_diff) / count >= 1:
                        frame = s.traceback[0]
                        print(
                            f"  {s.size_diff / count:8,.0f} B  {s.count_diff / count:5.2f} blocks"
                            f"  {frame.filename.split('/work/')[-1]}:{frame.lineno}"
                        )
        finally:
            await edge.stop()
            origin.terminate()
            origin.wait()


if __name__ == "__main__":
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "20000"))
    run._run_async(main(n, "--tracemalloc" in sys.argv))
