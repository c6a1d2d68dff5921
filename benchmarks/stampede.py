"""Cold-key stampede: how many origin requests do 1,000 concurrent viewer requests cause?

    python benchmarks/stampede.py [--keys 10] [--per-key 100] [--origin-delay 0.05]

Runs an aiohttp origin and two edges (``cache.collapse`` on and off) in this process, on 127.0.0.1 only,
then fires ``keys x per-key`` viewer requests at once for keys nobody asked for before, and prints the
origin requests per 1,000 viewer requests for each edge. Bounded: one burst per edge, every request has a
timeout, everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from aiohttp import web

from proxy.app import Edge
from proxy.settings import ListenAddress, parse_config

CONFIG = """
server: {{name: stampede, access_log: "off"}}
cache: {{collapse: {collapse}}}
origins: {{app: {{url: "{origin}", read_timeout: 30s}}}}
behaviours: [{{path: "*", origin: app}}]
"""


async def run(keys: int, per_key: int, delay: float) -> None:
    hits = {"count": 0}

    async def handler(request: web.Request) -> web.Response:
        hits["count"] += 1
        await asyncio.sleep(delay)  # the origin's own work: the window in which a stampede builds up
        return web.Response(body=b"x" * 1024, headers={"Cache-Control": "max-age=300"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin_port = runner.addresses[0][1]
    print(
        f"{keys} cold keys x {per_key} concurrent viewer requests; origin answers after {delay * 1000:.0f} ms"
    )
    header = ("cache.collapse", "viewer requests", "origin requests", "per 1,000", "5xx", "seconds")
    print(f"{header[0]:<16}{header[1]:>16}{header[2]:>17}{header[3]:>11}{header[4]:>6}{header[5]:>9}")
    try:
        for collapse in ("true", "false"):
            text = CONFIG.format(collapse=collapse, origin=f"http://127.0.0.1:{origin_port}")
            edge = Edge(parse_config(text, "stampede.yaml", env={}), shutdown_grace=1.0)
            host, port = (await edge.start((ListenAddress(host="127.0.0.1", port=0),)))[0]
            before = hits["count"]
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=60)
            started = time.perf_counter()
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                tag = f"{collapse}-{time.monotonic_ns()}"
                urls = [f"http://{host}:{port}/cold/{tag}/{k}" for k in range(keys) for _ in range(per_key)]
                statuses = await asyncio.gather(*(_status(session, url) for url in urls))
            elapsed = time.perf_counter() - started
            await edge.stop()
            origin_requests = hits["count"] - before
            viewers = len(statuses)
            errors = sum(1 for s in statuses if s >= 500)
            per_thousand = origin_requests * 1000 / viewers
            print(
                f"{collapse:<16}{viewers:>16,}{origin_requests:>17,}{per_thousand:>11.1f}{errors:>6}{elapsed:>9.2f}"
            )
    finally:
        await runner.cleanup()


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--per-key", type=int, default=100)
    parser.add_argument("--origin-delay", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(run(args.keys, args.per_key, args.origin_delay))


if __name__ == "__main__":
    main()
