"""The pipeline's own cost per request, without the viewer's sockets: µs per hit and per miss.

``benchmarks/run.py`` measures the whole edge against nginx over loopback; this script isolates what the
phases cost (RECV → … → DELIVER → LOG for a fresh memory hit, and for a no-store miss through the pooled
origin client), so a change to the pipeline's structure can be checked for a slowdown on a busy machine:

    python benchmarks/pipeline_cost.py                 # best of 7 runs of 20,000 hits and 2,000 misses
    python benchmarks/pipeline_cost.py --json out.json

The origin is ``run.py``'s (its own process, on 127.0.0.1); the edge is ``proxy.app.Edge`` built from a
config with one behaviour, called in this process through ``Pipeline.handle`` and ``Pipeline.finish``
exactly as a front calls them. The best of several runs is reported: on a shared machine the minimum is the
least disturbed measurement. For an instruction count that load cannot disturb, run it under
``valgrind --tool=callgrind`` twice with different ``--hits`` and subtract.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.app import Edge  # noqa: E402
from proxy.messages import EdgeRequest  # noqa: E402
from proxy.settings import parse_config  # noqa: E402

CONFIG = """
server:
  name: bench
  access_log: "off"
origins:
  origin: {{url: "http://127.0.0.1:{port}"}}
behaviours:
  - path: "*"
    origin: origin
"""


async def _drain(pipeline: object, request: EdgeRequest) -> None:
    ctx, response = await pipeline.handle(request)  # type: ignore[attr-defined]
    sent = 0
    if response.stream is not None:
        async for chunk in response.stream:
            sent += len(chunk)
    await response.finish(True)
    pipeline.finish(ctx, response.status, sent, True)  # type: ignore[attr-defined]


def _request(path: str) -> EdgeRequest:
    return EdgeRequest(
        method="GET",
        path=path,
        query="",
        headers={"Host": "bench.test", "User-Agent": "pipeline-cost", "Accept": "*/*"},  # type: ignore[arg-type]
        client_ip="127.0.0.1",
        host="bench.test",
        scheme="http",
    )


async def measure(port: int, hits: int, misses: int, rounds: int) -> dict[str, float]:
    from multidict import CIMultiDict

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edge.yaml"
        path.write_text(CONFIG.format(port=port))
        edge = Edge(parse_config(path.read_text(), str(path)))
        await edge.runtime.start()
        pipeline = edge.pipeline
        try:

            def request(target: str) -> EdgeRequest:
                r = _request(target)
                r.headers = CIMultiDict(r.headers)
                return r

            await _drain(pipeline, request("/1k"))  # the fill
            best_hit = best_miss = float("inf")
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(hits):
                    await _drain(pipeline, request("/1k"))
                best_hit = min(best_hit, (time.perf_counter() - started) / hits)
                started = time.perf_counter()
                for i in range(misses):
                    await _drain(pipeline, request(f"/miss/{i}"))
                best_miss = min(best_miss, (time.perf_counter() - started) / misses)
            stats = pipeline.stats.snapshot()
        finally:
            await edge.stop()
    return {"hit_us": best_hit * 1e6, "miss_us": best_miss * 1e6, "hits_counted": stats["requests"]["hit"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--misses", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    origin = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--serve-origin-fd", str(listener.fileno())],
        pass_fds=(listener.fileno(),),
        stdin=subprocess.DEVNULL,
    )
    try:
        import uvloop

        result = uvloop.run(measure(port, args.hits, args.misses, args.rounds))
    finally:
        origin.terminate()
        origin.wait(timeout=10)
    print(f"hit  {result['hit_us']:8.1f} µs/request (best of {args.rounds} runs of {args.hits})")
    print(f"miss {result['miss_us']:8.1f} µs/request (best of {args.rounds} runs of {args.misses}, no-store)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
