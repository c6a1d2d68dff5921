#!/usr/bin/env python3
"""edgeproxy vs nginx, side by side, on loopback.

    python benchmarks/run.py [--duration 10] [--connections 64] [--rounds 1] [--only both|edge|nginx]

What it does (everything on 127.0.0.1, every process stopped at the end, even on Ctrl-C):

1. starts a small aiohttp origin on a free port: /1k, /100k and /10m (Cache-Control: max-age=3600)
   and /miss/<anything> (1 KiB, Cache-Control: no-store);
2. starts edgeproxy (`python -m proxy serve`) with a temporary config in front of that origin;
3. when nginx is installed, starts nginx (1 worker, proxy_cache in a temporary folder) in front of
   the same origin;
4. warms both caches, then runs wrk (`wrk -t1 -c64 -d10s --latency`) against each for 1 KiB hits,
   100 KiB hits, 10 MiB hits and 1 KiB misses, and prints requests/s and p99 latency side by side;
5. with --scaling, also starts edgeproxy with 2 workers and compares its 1 KiB hits with one worker's.

Without wrk it falls back to a small Python load generator (far slower than wrk: its numbers only
compare the two servers roughly). See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only: nothing here may send traffic anywhere else

BODY_1K = b"x" * 1024
BODY_100K = b"x" * (100 * 1024)
BODY_10M = b"x" * (10 * 1024 * 1024)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str  # for misses: a prefix; each request gets a unique path below it
    body_bytes: int
    miss: bool = False


SCENARIOS = (
    Scenario("hit-1k", "1 KiB cache hit", "/1k", len(BODY_1K)),
    Scenario("hit-100k", "100 KiB cache hit", "/100k", len(BODY_100K)),
    Scenario("hit-10m", "10 MiB cache hit", "/10m", len(BODY_10M)),
    Scenario("miss-1k", "1 KiB miss (no-store)", "/miss/", len(BODY_1K), miss=True),
)
SERVERS = ("edgeproxy", "nginx")

STARTUP_POLL_S = 0.1
STOP_GRACE_S = 5.0
PAUSE_BETWEEN_RUNS_S = 1.0
BUSY_WARNING = 0.15  # CPU use by others, before we start, above which the numbers are suspect

# A unique path per request, so no cache (nor request collapsing) can serve a miss from memory.
MISS_LUA = """
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  token = args[1] or "run"
end
function request()
  counter = counter + 1
  return wrk.format(nil, "/miss/" .. token .. "-" .. tid .. "-" .. counter)
end
"""


# --------------------------------------------------------------------------------------------------
# The origin (runs in its own process: `run.py --serve-origin-fd N`)


def serve_origin(fd: int) -> None:
    """Serve the benchmark origin on an already-listening socket until SIGTERM or SIGINT."""
    from aiohttp import web

    cacheable = {"Cache-Control": "max-age=3600", "Content-Type": "application/octet-stream"}
    no_store = {"Cache-Control": "no-store", "Content-Type": "application/octet-stream"}

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/1k":
            return web.Response(body=BODY_1K, headers=cacheable)
        if path == "/100k":
            return web.Response(body=BODY_100K, headers=cacheable)
        if path == "/10m":
            return web.Response(body=BODY_10M, headers=cacheable)
        if path.startswith("/miss/"):
            return web.Response(body=BODY_1K, headers=no_store)
        if path.startswith("/c/"):  # the memory row: as many distinct cacheable 1 KiB objects as asked for
            return web.Response(body=BODY_1K, headers=cacheable)
        return web.Response(status=404, text="not found\n", headers={"Cache-Control": "no-store"})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.ServerRunner(web.Server(handler), handle_signals=False, access_log=None)
        await runner.setup()
        sock = socket.socket(fileno=fd)
        await web.SockSite(runner, sock).start()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    _run_async(main())


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent() -> None:
    """In the child, before exec: new session (no stray Ctrl-C), and SIGTERM if we die (Linux)."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class Processes:
    """Every child process we start, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                **kwargs,
            )
        self._procs.append((name, proc))
        return proc

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command to completion (bounded by `timeout`), killing it on any interruption."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def get(self, name: str) -> subprocess.Popen[bytes] | None:
        return next((p for n, p in self._procs if n == name), None)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the child's whole process group (its own session), then SIGKILL to stragglers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # e.g. workers whose supervisor is already gone
        proc.wait(timeout=STOP_GRACE_S)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def cpu_busy_fraction(interval: float = 1.0) -> float | None:
    """How busy the CPUs are (0..1) over `interval`, from /proc/stat; None where unavailable."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1 - (idle1 - idle0) / total


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    assert url.startswith(f"http://{HOST}:"), url  # loopback only
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def _wait_until_answers(proc: subprocess.Popen[bytes], url: str, timeout: float) -> str | None:
    """None once `url` answers 200; otherwise why not (process exited, or timed out)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return f"the process exited with status {code}"
        try:
            status, _, _ = _get(url, timeout=1.0)
            if status == 200:
                return None
            last = f"HTTP {status}"
        except OSError as e:
            last = str(e)
        time.sleep(STARTUP_POLL_S)
    return f"no 200 from {url} within {timeout:.0f}s (last: {last})"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    | " + line for line in text[-lines:]) or "    | (empty log)"


# --------------------------------------------------------------------------------------------------
# The servers under test


def start_edge(
    procs: Processes,
    tmp: Path,
    origin_port: int,
    workers: int,
    timeout: float,
    name: str = "edgeproxy",
    # room for the memory row's 100,000 objects (nothing is evicted)
    cache: str = "cache: {memory: {max_bytes: 2GiB}}",
    probe: str = "/1k",
    port: int | None = None,
) -> tuple[int | None, str]:
    """Start an edge (``cache``: a one-line ``cache:`` section, if any); its port once ``probe`` answers."""
    port = port or _free_port()
    config = tmp / ("edge.yaml" if name == "edgeproxy" else f"{name}.yaml")
    config.write_text(
        textwrap.dedent(
            f"""\
            # written by benchmarks/run.py
            server:
              listen: {HOST}:{port}
              name: bench-edge
              workers: {workers}
              access_log: "off"
            {cache}
            origins:
              bench:
                url: http://{HOST}:{origin_port}
            behaviours:
              - path: "*"
                origin: bench
            """
        )
    )
    log = tmp / ("edge.log" if name == "edgeproxy" else f"{name}.log")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config)]
    proc = procs.start(name, argv, log, cwd=REPO, env=env)
    why = _wait_until_answers(proc, f"http://{HOST}:{port}{probe}", timeout)
    if why is None:
        return port, " ".join(argv)
    procs.stop(proc)
    return None, f"edgeproxy did not start: {why}\n  command: {' '.join(argv)}\n  log ({log}):\n{_tail(log)}"


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def start_nginx(
    procs: Processes, tmp: Path, nginx: str, origin_port: int, workers: int, timeout: float
) -> tuple[int | None, str]:
    port = _free_port()
    prefix = tmp / "nginx"
    for sub in ("cache", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would switch to `nobody`, who cannot write our 0700 temp folder.
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            # written by benchmarks/run.py: nginx as a caching reverse proxy, for comparison
            {user}
            worker_processes {workers};
            daemon off;
            pid {prefix}/nginx.pid;
            error_log {prefix}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                default_type application/octet-stream;
                sendfile on;
                tcp_nopush off;       # with sendfile, `on` stalls 100 KiB hits ~40 ms on loopback
                tcp_nodelay on;
                keepalive_requests 1000000;   # like edgeproxy: no forced reconnects mid-benchmark
                client_body_temp_path {prefix}/client_body;
                proxy_temp_path {prefix}/proxy;
                fastcgi_temp_path {prefix}/fastcgi;
                uwsgi_temp_path {prefix}/uwsgi;
                scgi_temp_path {prefix}/scgi;
                proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:16m max_size=1g
                                 inactive=1h use_temp_path=off;
                upstream origin {{
                    server {HOST}:{origin_port};
                    keepalive 64;
                }}
                server {{
                    listen {HOST}:{port};
                    location / {{
                        proxy_pass http://origin;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_cache bench;
                        proxy_cache_valid 200 1h;
                        add_header X-Cache-Status $upstream_cache_status;
                    }}
                }}
            }}
            """
        )
    )
    errlog = prefix / "error.log"
    base = [nginx, "-p", str(prefix), "-e", str(errlog), "-c", str(conf)]
    check = procs.run([*base, "-t", "-q"], timeout=30)
    if check.returncode != 0:
        return None, f"nginx rejected its config:\n{check.stdout}{check.stderr}"
    proc = procs.start("nginx", base, prefix / "stdout.log")
    why = _wait_until_answers(proc, f"http://{HOST}:{port}/1k", timeout)
    if why is None:
        return port, " ".join(base)
    procs.stop(proc)
    return None, f"nginx did not start: {why}\n  error log ({errlog}):\n{_tail(errlog)}"


def warm(server: str, port: int) -> str:
    """Fetch each cacheable object until it is served from cache; return a note on what we saw."""
    notes = []
    for scenario in SCENARIOS:
        path = scenario.path + "warmup" if scenario.miss else scenario.path
        url = f"http://{HOST}:{port}{path}"
        headers: dict[str, str] = {}
        for _ in range(3):  # miss, then hits
            status, headers, body = _get(url, timeout=5.0)
            if status != 200 or len(body) != scenario.body_bytes:
                raise RuntimeError(f"{server}: GET {path} gave HTTP {status} with {len(body)} bytes")
        lowered = {k.lower(): v for k, v in headers.items()}
        seen = [
            f"{h}: {lowered[h]}" for h in ("x-cache-status", "cache-status", "x-cache", "age") if h in lowered
        ]
        notes.append(f"{path} -> " + ("; ".join(seen) if seen else "no cache header"))
    return ", ".join(notes)


# --------------------------------------------------------------------------------------------------
# Load generation


@dataclass
class Result:
    rps: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


@dataclass
class Report:
    scenario: str
    server: str
    runs: list[Result] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else None


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> Result:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s+99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p99 and total):
        raise ValueError(f"could not read wrk's output:\n{output}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        errors += sum(int(n) for n in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    return Result(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)],
        requests=int(total.group(1)),
        errors=errors,
        tool="wrk",
    )


def run_wrk(
    procs: Processes, wrk: str, args: argparse.Namespace, tmp: Path, port: int, sc: Scenario
) -> Result:
    argv = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if sc.miss:
        script = tmp / "miss.lua"
        script.write_text(MISS_LUA)
        argv += ["-s", str(script), f"http://{HOST}:{port}/miss/", "--", f"r{time.monotonic_ns()}"]
    else:
        argv.append(f"http://{HOST}:{port}{sc.path}")
    done = procs.run(argv, timeout=args.duration + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


async def _python_load(port: int, sc: Scenario, connections: int, max_requests: int, max_s: float) -> Result:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + max_s
    token = time.monotonic_ns()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            path = f"{sc.path}py{token}-{issued}" if sc.miss else sc.path
            t0 = time.perf_counter()
            try:
                async with session.get(f"http://{HOST}:{port}{path}") as resp:
                    body = await resp.read()
                    if resp.status != 200 or len(body) != sc.body_bytes:
                        errors += 1
            except (TimeoutError, aiohttp.ClientError, OSError):
                errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return Result(len(latencies) / elapsed, p99 * 1000, len(latencies), errors, "python")


def run_python_load(args: argparse.Namespace, port: int, sc: Scenario) -> Result:
    result: Result = _run_async(_python_load(port, sc, args.connections, args.requests, float(args.duration)))
    return result


# --------------------------------------------------------------------------------------------------
# A fixed number of requests (the memory row, benchmarks/instructions.py): raw keep-alive sockets


async def _drive(port: int, paths: list[str], connections: int) -> int:
    """GET every path once over ``connections`` keep-alive connections; return how many were not 200."""
    next_path = iter(paths)
    bad = 0

    async def one_connection() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for path in next_path:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 "):
                    bad += 1
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:  # the benchmark origin and both servers always give a length
                    raise RuntimeError(f"no Content-Length in the answer to {path}: {head!r}")
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return bad


def drive(port: int, paths: list[str], connections: int = 16) -> int:
    """Synchronous ``_drive``: every path requested exactly once; the count of non-200 answers."""
    bad: int = _run_async(_drive(port, paths, connections))
    return bad


def _rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS, which includes the shared memory it touched)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def _serving_pids(server: str, proc: subprocess.Popen[bytes]) -> list[int]:
    """The processes that hold the cache: nginx's worker(s) (children of its master), edgeproxy itself (one
    worker serves in the process we started) or its workers."""
    kids = _children(proc.pid)
    return kids if (server == "nginx" or kids) else [proc.pid]


@dataclass
class MemoryRow:
    server: str
    objects: int
    rss_before: int
    rss_after: int
    failed: int

    @property
    def per_object(self) -> float:
        """RSS growth per cached object, body included."""
        return (self.rss_after - self.rss_before) / self.objects

    @property
    def beyond_body(self) -> float:
        """Growth beyond the body: nginx's bodies are files (page cache), not in its RSS."""
        return self.per_object - (0 if self.server == "nginx" else len(BODY_1K))


def measure_memory(server: str, proc: subprocess.Popen[bytes], port: int, objects: int) -> MemoryRow:
    """Fill ``objects`` distinct cacheable 1 KiB objects (each fetched once: a miss that stores it), then
    fetch them all again (hits: nothing new may be stored); RSS growth of the serving process(es)."""
    token = time.monotonic_ns()
    paths = [f"/c/{token}-{i}" for i in range(objects)]
    drive(port, paths[:1000])  # warm the code paths and the origin pool before the first sample
    time.sleep(0.5)
    pids = _serving_pids(server, proc)
    before = sum(_rss_bytes(p) for p in pids)
    failed = drive(port, paths[1000:])
    failed += drive(port, paths[1000:])  # all hits now: an object that was not stored would show here
    time.sleep(0.5)
    after = sum(_rss_bytes(p) for p in pids)
    return MemoryRow(server, objects - 1000, before, after, failed)


def print_memory(rows: list[MemoryRow]) -> None:
    print()
    print("Memory per cached 1 KiB object (RSS growth of the serving process over the fill, ÷ objects):")
    print()
    print("| Server | objects | RSS growth | per object | beyond the 1 KiB body |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        growth = (r.rss_after - r.rss_before) / 2**20
        print(
            f"| {r.server} | {r.objects:,} | {growth:,.1f} MiB | {r.per_object:,.0f} B |"
            f" {r.beyond_body:,.0f} B |"
        )
    print()
    print("  nginx keeps bodies in files (page cache, outside its RSS): its growth is the keys zone (~128 B")
    print("  a key by its own documentation, 8,000 keys per MB) plus its per-object bookkeeping; each body")
    print("  also takes at least one 4 KiB page of page cache. edgeproxy keeps the bodies in its own RSS.")
    for r in rows:
        if r.failed:
            print(f"  WARNING: {r.server}: {r.failed} requests did not answer 200")


# --------------------------------------------------------------------------------------------------
# Output


def _fmt_rps(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def print_table(reports: dict[tuple[str, str], Report], args: argparse.Namespace, tool: str) -> None:
    header = ("Scenario", "edgeproxy req/s", "p99", "nginx req/s", "p99", "ratio")
    rows = []
    for sc in SCENARIOS:
        edge, nginx = reports[(sc.key, "edgeproxy")], reports[(sc.key, "nginx")]
        e_rps, n_rps = edge.median("rps"), nginx.median("rps")
        ratio = f"{e_rps / n_rps:.2f}x" if e_rps is not None and n_rps else "—"
        e_p99, n_p99 = _fmt_ms(edge.median("p99_ms")), _fmt_ms(nginx.median("p99_ms"))
        rows.append((sc.title, _fmt_rps(e_rps), e_p99, _fmt_rps(n_rps), n_p99, ratio))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rounds = "median of " + str(args.rounds) + " rounds" if args.rounds > 1 else "1 round"
    load = (
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency"
        if tool == "wrk"
        else f"Python load generator, {args.connections} connections, ≤{args.requests:,} requests"
    )
    print()
    print(f"Results ({rounds}; {load}; loopback; {os.cpu_count()} cores shared by everything):")
    print()
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    print("  req/s: requests per second, higher is better.  p99: 99% of requests answered within this.")
    print("  ratio: edgeproxy req/s ÷ nginx req/s (1.00x = as fast as nginx).")
    print("  Misses also load the origin (one aiohttp process on the same cores): hits compare proxies best.")
    errors = [
        f"{server} {sc.title}: {sum(r.errors for r in reports[(sc.key, server)].runs)} errors"
        for sc in SCENARIOS
        for server in SERVERS
        if any(r.errors for r in reports[(sc.key, server)].runs)
    ]
    if errors:
        print("  WARNING: failed requests (socket errors or non-2xx) — treat these numbers with care:")
        for e in errors:
            print("    " + e)
    if tool != "wrk":
        print("  NOTE: measured without wrk (apt-get install wrk): the Python load generator is the")
        print("        bottleneck here, so these numbers understate both servers.")


def measure_scaling(
    procs: Processes,
    args: argparse.Namespace,
    tmp: Path,
    origin_port: int,
    wrk: str | None,
    reports: dict[tuple[str, str], Report],
) -> str:
    """1 KiB hits on a second edgeproxy with 2 workers (SO_REUSEPORT), ``args.rounds`` times; a line
    comparing its median with the one-worker edge's from the main table."""
    port, detail = start_edge(procs, tmp, origin_port, 2, args.startup_timeout, name="edgeproxy-2w")
    if port is None:
        return "ERROR: " + detail
    sc = SCENARIOS[0]
    try:
        warm("edgeproxy-2w", port)
        for _ in range(4):  # each worker has its own memory tier: warm them all (SO_REUSEPORT spreads)
            _get(f"http://{HOST}:{port}{sc.path}")
        runs = []
        for _ in range(args.rounds):
            time.sleep(PAUSE_BETWEEN_RUNS_S)
            runs.append(run_wrk(procs, wrk, args, tmp, port, sc) if wrk else run_python_load(args, port, sc))
    finally:
        proc = procs.get("edgeproxy-2w")
        if proc is not None:
            procs.stop(proc)
    two = Report(sc.key, "edgeproxy-2w", runs)
    rps, p99 = two.median("rps"), two.median("p99_ms")
    one = reports[(sc.key, "edgeproxy")].median("rps")
    ratio = f"{rps / one:.2f}x one worker" if rps and one else "—"
    return f"Scaling: {sc.title}, edgeproxy 2 workers: {_fmt_rps(rps)} req/s, p99 {_fmt_ms(p99)} ({ratio})"


DISK_SCENARIOS = (SCENARIOS[1], SCENARIOS[2])  # 100 KiB and 10 MiB
START_ENTRIES = 100_000


def _disk_cache(folder: Path) -> str:
    # The memory tier takes nothing above 16 KiB: every 100 KiB and 10 MiB hit is read from the disk tier
    # (from the page cache: the files were just written and read), as nginx's proxy_cache reads its files.
    return (
        f"cache: {{memory: {{max_bytes: 64MiB, max_object_bytes: 16KiB}}, "
        f"disk: {{path: '{folder}', max_bytes: 4GiB, max_object_bytes: 64MiB}}}}"
    )


def fill_disk(folder: Path, count: int, host: str) -> None:
    """Write ``count`` small entries (keys ``<host>/filler/<i>``) straight into a disk tier folder, as a
    long-running edge leaves them."""
    from proxy.cache.disk import DiskStore, entry_path
    from proxy.cache.disk import _pack as pack  # the file format, without the thread pool
    from proxy.cache.entry import CacheEntry

    DiskStore(str(folder), max_bytes=1 << 40, max_object_bytes=1 << 20)  # creates the layout
    now = time.time()
    for i in range(count):
        key = f"{host}/filler/{i}"
        entry = CacheEntry(200, (("Content-Type", "text/plain"),), b"x" * 512, now, now, 0.0, 3600.0)
        path = entry_path(str(folder), key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.writelines(pack(key, entry, now + 3600))


def measure_disk(
    procs: Processes,
    args: argparse.Namespace,
    tmp: Path,
    origin_port: int,
    wrk: str | None,
    nginx_port: int | None,
) -> list[str]:
    """Disk-tier hits (100 KiB, 10 MiB) on a second edge whose memory tier is too small for them, against
    nginx's proxy_cache hits of the main table; then the start time of an edge with 100,000 entries on
    disk (process start to its first answer). nginx (``nginx_port``) is measured again next to each disk
    measurement. Lines for the report."""
    folder = tmp / "disk-cache"
    port, detail = start_edge(
        procs, tmp, origin_port, 1, args.startup_timeout, name="edgeproxy-disk", cache=_disk_cache(folder)
    )
    if port is None:
        return ["ERROR: " + detail]
    lines = ["Disk tier hits (memory tier too small; page cache warm) vs nginx proxy_cache hits:"]
    try:
        for sc in DISK_SCENARIOS:
            deadline = time.monotonic() + 30
            while True:  # miss, write-through to disk, then disk hits
                _status, headers, _body = _get(f"http://{HOST}:{port}{sc.path}", timeout=10.0)
                if "detail=disk" in headers.get("Cache-Status", "") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            runs: list[Result] = []
            nginx_runs: list[Result] = []
            for _ in range(args.rounds):  # interleaved with nginx's hits, when it runs: the same load
                for target, into in ((port, runs), (nginx_port, nginx_runs)):
                    if target is None:
                        continue
                    time.sleep(PAUSE_BETWEEN_RUNS_S)
                    into.append(
                        run_wrk(procs, wrk, args, tmp, target, sc)
                        if wrk
                        else run_python_load(args, target, sc)
                    )
            disk = Report(sc.key, "edgeproxy-disk", runs)
            rps, p99 = disk.median("rps"), disk.median("p99_ms")
            nginx = Report(sc.key, "nginx", nginx_runs).median("rps") if nginx_runs else None
            ratio = f"{rps / nginx:.2f}x nginx ({_fmt_rps(nginx)} req/s)" if rps and nginx else "no nginx"
            lines.append(f"  {sc.title} from disk: {_fmt_rps(rps)} req/s, p99 {_fmt_ms(p99)}, {ratio}")
    finally:
        proc = procs.get("edgeproxy-disk")
        if proc is not None:
            procs.stop(proc)
    big = tmp / "disk-100k-entries"
    port = _free_port()
    started = time.monotonic()
    fill_disk(big, START_ENTRIES, f"{HOST}:{port}")
    filled = time.monotonic() - started
    timings = []
    for name, folder, probe, at in (
        ("edgeproxy-empty", tmp / "disk-empty", "/1k", None),  # the same edge with nothing on disk
        ("edgeproxy-start", big, "/filler/7", port),
    ):
        started = time.monotonic()
        up, detail = start_edge(
            procs,
            tmp,
            origin_port,
            1,
            args.startup_timeout,
            name=name,
            cache=_disk_cache(folder),
            probe=probe,
            port=at,
        )
        elapsed = time.monotonic() - started
        if up is None:
            return [*lines, "ERROR: " + detail]
        _status, headers, _body = _get(f"http://{HOST}:{up}{probe}")
        proc = procs.get(name)
        if proc is not None:
            procs.stop(proc)
        timings.append((elapsed, headers.get("Cache-Status", "")))
    lines.append(
        f"Start (process start to first answer): {timings[1][0]:.2f}s with {START_ENTRIES:,} entries on disk"
        f" (written in {filled:.1f}s; that answer: {timings[1][1]}), {timings[0][0]:.2f}s with none"
    )
    return lines


# --------------------------------------------------------------------------------------------------
# HTTP/2 row (--h2): h2load -c 16 -m 32, 1 KiB hits over TLS, edgeproxy vs nginx (listen ... ssl http2)

H2LOAD_RE = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
H2LOAD_DONE_RE = re.compile(
    r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)


def make_cert(tmp: Path) -> tuple[Path, Path]:
    """One self-signed certificate for 127.0.0.1, used by both servers."""
    cert, key = tmp / "bench.crt", tmp / "bench.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start_edge_h2(
    procs: Processes, tmp: Path, origin_port: int, cert: Path, key: Path, timeout: float
) -> tuple[int | None, str]:
    port, tls_port = _free_port(), _free_port()
    config = tmp / "edge-h2.yaml"
    config.write_text(
        f"""# written by benchmarks/run.py (--h2)
server:
  listen: {HOST}:{port}
  name: bench-edge
  access_log: "off"
  tls: {{listen: "{HOST}:{tls_port}", cert: "{cert}", key: "{key}"}}
origins: {{bench: {{url: "http://{HOST}:{origin_port}"}}}}
behaviours: [{{path: "*", origin: bench}}]
"""
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config)]
    proc = procs.start("edgeproxy-h2", argv, tmp / "edge-h2.log", cwd=REPO, env=env)
    why = _wait_until_answers(proc, f"http://{HOST}:{port}/1k", timeout)
    if why is None:
        return tls_port, " ".join(argv)
    procs.stop(proc)
    return None, f"edgeproxy (h2) did not start: {why}\n{_tail(tmp / 'edge-h2.log')}"


def start_nginx_h2(
    procs: Processes, tmp: Path, nginx: str, origin_port: int, cert: Path, key: Path, timeout: float
) -> tuple[int | None, str]:
    port = _free_port()
    prefix = tmp / "nginx-h2"
    for sub in ("cache", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# written by benchmarks/run.py (--h2)
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=benchh2:16m max_size=1g inactive=1h
                     use_temp_path=off;
    upstream origin {{ server {HOST}:{origin_port}; keepalive 64; }}
    server {{
        listen {HOST}:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache benchh2;
            proxy_cache_valid 200 1h;
        }}
    }}
}}
"""
    )
    base = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    check = procs.run([*base, "-t", "-q"], timeout=30)
    if check.returncode != 0:
        return None, f"nginx (h2) rejected its config:\n{check.stdout}{check.stderr}"
    procs.start("nginx-h2", base, prefix / "stdout.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return port, " ".join(base)
        time.sleep(STARTUP_POLL_S)
    return None, f"nginx (h2) did not start\n{_tail(prefix / 'error.log')}"


def run_h2load(procs: Processes, h2load: str, port: int, duration: int, warmup: bool = False) -> Result:
    url = f"https://{HOST}:{port}/1k"
    argv = (
        [h2load, "-n", "64", "-c", "1", url]
        if warmup
        else [h2load, "-c", "16", "-m", "32", "-D", str(duration), url]
    )
    done = procs.run(argv, timeout=duration + 60)
    rate = H2LOAD_RE.search(done.stdout)
    counts = H2LOAD_DONE_RE.search(done.stdout)
    if done.returncode != 0 or rate is None or counts is None:
        raise RuntimeError(f"h2load failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    failed = int(counts.group(3)) + int(counts.group(4))
    return Result(
        rps=float(rate.group(1)), p99_ms=0.0, requests=int(counts.group(1)), errors=failed, tool="h2load"
    )


def measure_h2(procs: Processes, args: argparse.Namespace, tmp: Path, origin_port: int) -> str:
    """The h2 row: 1 KiB hits over TLS with h2load -c 16 -m 32 against an HTTP/2 edge and an nginx with
    ``listen ... ssl http2`` (same certificate, one worker each), ``args.rounds`` interleaved rounds."""
    h2load = shutil.which("h2load")
    nginx = find_nginx()
    if h2load is None:
        return "h2: h2load is not installed (apt-get install nghttp2-client): no h2 row"
    cert, key = make_cert(tmp)
    ports: dict[str, int] = {}
    port, detail = start_edge_h2(procs, tmp, origin_port, cert, key, args.startup_timeout)
    if port is None:
        return "ERROR: " + detail
    ports["edgeproxy"] = port
    if nginx is not None and args.only != "edge":
        port, detail = start_nginx_h2(procs, tmp, nginx, origin_port, cert, key, args.startup_timeout)
        if port is None:
            return "ERROR: " + detail
        ports["nginx"] = port
    runs: dict[str, list[Result]] = {name: [] for name in ports}
    for port in ports.values():
        for _ in range(2):
            run_h2load(procs, h2load, port, args.duration, warmup=True)  # miss, then hits
    for rnd in range(args.rounds):
        order = list(ports) if rnd % 2 == 0 else list(reversed(ports))
        for name in order:
            time.sleep(PAUSE_BETWEEN_RUNS_S)
            result = run_h2load(procs, h2load, ports[name], args.duration)
            runs[name].append(result)
            print(f"  h2 round {rnd + 1} {name:<9} {result.rps:>10,.0f} req/s ({result.errors} failed)")
    edge = statistics.median(r.rps for r in runs["edgeproxy"])
    line = f"HTTP/2 (h2load -c 16 -m 32, 1 KiB hits, TLS): edgeproxy {_fmt_rps(edge)} req/s"
    if "nginx" in runs:
        ref = statistics.median(r.rps for r in runs["nginx"])
        line += f", nginx {_fmt_rps(ref)} req/s, ratio {edge / ref:.2f}x" if ref else ""
    return line


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark edgeproxy against nginx (proxy_cache) on loopback.",
        epilog="See benchmarks/README.md.",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds; medians are reported (default 1)"
    )
    p.add_argument("--only", choices=("both", "edge", "nginx"), default="both", help="which servers to run")
    p.add_argument("--workers", type=int, default=1, help="processes per server (default 1, like nginx's 1)")
    p.add_argument(
        "--scaling",
        action="store_true",
        help="also measure 1 KiB hits on edgeproxy with 2 workers (ratio to one worker)",
    )
    p.add_argument(
        "--h2",
        action="store_true",
        help="also measure HTTP/2: h2load -c 16 -m 32, 1 KiB hits over TLS, edgeproxy vs nginx (ssl http2)",
    )
    p.add_argument(
        "--memory",
        type=int,
        nargs="?",
        const=100_000,
        default=0,
        metavar="N",
        help="also measure RSS growth per cached 1 KiB object over N objects (default N: 100000)",
    )
    p.add_argument("--no-speed", action="store_true", help="skip the wrk table (e.g. with --memory)")
    p.add_argument(
        "--disk",
        action="store_true",
        help="also measure disk-tier hits (100 KiB, 10 MiB) and the start time with 100,000 entries on disk",
    )
    p.add_argument(
        "--requests", type=int, default=20_000, help="request cap per measurement without wrk (default 20000)"
    )
    p.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (default: wrk if installed)",
    )
    p.add_argument("--startup-timeout", type=float, default=20.0, help="seconds to wait for each server")
    p.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp folder (configs, logs)")
    p.add_argument("--serve-origin-fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bounds = {
        "duration": (1, 600),
        "connections": (1, 10_000),
        "threads": (1, 64),
        "rounds": (1, 20),
        "workers": (1, 64),
        "requests": (1, 10_000_000),
        "memory": (0, 1_000_000),
    }
    for name, (lo, hi) in bounds.items():
        if not lo <= getattr(args, name) <= hi:
            p.error(f"--{name} must be between {lo} and {hi}")
    if args.memory and args.memory <= 1000:
        p.error("--memory needs more than 1000 objects (the first 1000 warm up)")
    if args.threads > args.connections:
        p.error("--threads cannot exceed --connections")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_origin_fd is not None:
        serve_origin(args.serve_origin_fd)
        return 0

    try:
        import aiohttp  # noqa: F401  (the origin and the fallback load generator need it)
    except ImportError:
        print(
            "error: aiohttp is not installed: pip install -e '.[test]' (or pip install aiohttp)",
            file=sys.stderr,
        )
        return 2

    # Ctrl-C and SIGTERM both unwind through `finally`, which stops every child process.
    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Started in the background by a shell, SIGINT arrives ignored: make Ctrl-C / kill -INT work anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    wrk = shutil.which("wrk") if args.load in ("auto", "wrk") else None
    if args.load == "wrk" and wrk is None:
        print("error: --load wrk, but wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    nginx = find_nginx()
    tool = "wrk" if wrk else "python"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if wrk:
        print(f"load: {wrk}")
    elif args.load == "python":
        print("load: the bounded Python load generator (--load python)")
    else:
        print("load: wrk not found (apt-get install wrk); falling back to a bounded Python load generator")

    failures: list[str] = []  # a requested server that did not start or died: exit status 1
    notes: list[str] = []
    busy = cpu_busy_fraction()
    if busy is not None and busy > BUSY_WARNING:
        notes.append(
            f"WARNING: before the run, other processes kept the CPUs {busy:.0%} busy: every number here is"
            " lower than on an idle machine (compare only ratios from the same run)."
        )
        print(notes[-1], file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-bench-"))
    procs = Processes()
    reports = {(sc.key, s): Report(sc.key, s) for sc in SCENARIOS for s in SERVERS}
    ports: dict[str, int] = {}
    logs = {"edgeproxy": tmp / "edge.log", "nginx": tmp / "nginx" / "error.log"}
    try:
        # The origin gets an already-listening socket: no race for the port.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1024)
        origin_port = int(listener.getsockname()[1])
        origin_argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-origin-fd",
            str(listener.fileno()),
        ]
        origin = procs.start("origin", origin_argv, tmp / "origin.log", pass_fds=(listener.fileno(),))
        listener.close()
        why = _wait_until_answers(origin, f"http://{HOST}:{origin_port}/1k", args.startup_timeout)
        if why:
            print(
                f"error: the benchmark origin did not start: {why}\n{_tail(tmp / 'origin.log')}",
                file=sys.stderr,
            )
            return 1
        print(f"origin: aiohttp on {HOST}:{origin_port}")

        if args.only in ("both", "edge"):
            port, detail = start_edge(procs, tmp, origin_port, args.workers, args.startup_timeout)
            if port:
                ports["edgeproxy"] = port
                print(f"edgeproxy: {HOST}:{port} ({detail})")
            else:
                failures.append("ERROR: " + detail)
                print("ERROR: " + detail, file=sys.stderr)
                print("       (continuing without edgeproxy; `--only nginx` skips it)", file=sys.stderr)
        if args.only in ("both", "nginx"):
            if nginx is None:
                notes.append(
                    "NOTE: nginx is not installed (apt-get install nginx-light): no reference numbers"
                )
                print(notes[-1], file=sys.stderr)
            else:
                port, detail = start_nginx(procs, tmp, nginx, origin_port, args.workers, args.startup_timeout)
                if port:
                    ports["nginx"] = port
                    print(f"nginx: {HOST}:{port} ({detail})")
                else:
                    failures.append("ERROR: " + detail)
                    print("ERROR: " + detail, file=sys.stderr)
        if not ports:
            print("error: no server to benchmark", file=sys.stderr)
            return 1

        for server, port in ports.items():
            print(f"warm {server}: {warm(server, port)}")

        total = 0 if args.no_speed else args.rounds * len(SCENARIOS) * len(ports)
        print(f"\n{total} measurements of {args.duration}s each (about {total * (args.duration + 1)}s)")
        n = 0
        for rnd in range(0 if args.no_speed else args.rounds):
            order = list(ports) if rnd % 2 == 0 else list(reversed(ports))  # alternate who goes first
            for sc in SCENARIOS:
                for server in order:
                    n += 1
                    if server not in ports:  # it died in an earlier measurement
                        continue
                    time.sleep(PAUSE_BETWEEN_RUNS_S)
                    try:
                        if wrk:
                            result = run_wrk(procs, wrk, args, tmp, ports[server], sc)
                        else:
                            result = run_python_load(args, ports[server], sc)
                    except RuntimeError as e:
                        proc = procs.get(server)
                        if proc is None or proc.poll() is None:
                            raise
                        failures.append(
                            f"ERROR: {server} died during '{sc.title}', round {rnd + 1} (exit status"
                            f" {proc.returncode}); the load generator said: {e}\n  log ({logs[server]}):\n"
                            + _tail(logs[server])
                        )
                        print(failures[-1], file=sys.stderr)
                        del ports[server]
                        continue
                    reports[(sc.key, server)].runs.append(result)
                    err = f", {result.errors} errors" if result.errors else ""
                    print(
                        f"  [{n}/{total}] round {rnd + 1} {sc.title:<22} {server:<9} "
                        f"{result.rps:>10,.0f} req/s  p99 {_fmt_ms(result.p99_ms)}{err}"
                    )

        if not args.no_speed:
            print_table(reports, args, tool)
        if args.memory:
            rows = []
            for server, port in ports.items():
                proc = procs.get(server)
                if proc is not None and proc.poll() is None:
                    print(f"memory: filling {server} with {args.memory:,} objects …", flush=True)
                    rows.append(measure_memory(server, proc, port, args.memory))
            print_memory(rows)
        if args.scaling and "edgeproxy" in ports:
            scaling = measure_scaling(procs, args, tmp, origin_port, wrk, reports)
            print("\n" + scaling)
        if args.h2:
            print("\n" + measure_h2(procs, args, tmp, origin_port))
        if args.disk and "edgeproxy" in ports:
            print("\n" + "\n".join(measure_disk(procs, args, tmp, origin_port, wrk, ports.get("nginx"))))
        for message in notes + failures:  # repeated here so that they are not lost in the scroll
            print("\n" + message)
        if args.json:
            data = {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "tool": tool,
                "cores": os.cpu_count(),
                "results": [
                    {**asdict(rep), "median_rps": rep.median("rps"), "median_p99_ms": rep.median("p99_ms")}
                    for rep in reports.values()
                    if rep.runs
                ],
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=2) + "\n")
            print(f"\nwrote {args.json}")
        return 1 if failures else 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
        print(f"\nerror: {e}\n(stopping every process; --keep-temp keeps the logs)", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if args.keep_temp or failures:
            print(f"temp folder kept (configs and logs): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
