"""Worker processes (``server.workers: N | auto``): a small supervisor of our own.

``edgeproxy serve`` runs this when the config asks for more than one worker. The supervisor binds nothing
itself: it starts N copies of ``edgeproxy serve`` that share the listen port with SO_REUSEPORT (the
kernel spreads connections between them), each with its own memory tier. A worker that dies is replaced
(with a growing delay if it keeps dying at start-up). SIGHUP validates the config file again and, when it
is valid, starts a new generation of workers, waits until every one of them listens, then asks the old
ones to stop gracefully (SIGTERM: they stop accepting and finish their in-flight requests), so no
connection is refused during a reload. SIGTERM/SIGINT stop every worker gracefully and exit 0.

Why not gunicorn's aiohttp worker: it would add a dependency and its own config surface, while what we need
(spawn, watch, replace, reload by generations) is this much code, with the worker being exactly the
single-process ``serve`` that the tests already cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.observability.publish import GENERATION_ENV, STATS_DIR_ENV
from proxy.settings import ConfigError, load_config
from proxy.startup import NOTHING_TO_RELOAD

log = logging.getLogger("edgeproxy")

READY_TIMEOUT = 30.0  # how long a new worker may take to listen
STOP_TIMEOUT = 40.0  # how long stopping workers get before they are killed (> their 30 s grace)
MAX_BACKOFF = 10.0


def worker_count(value: int | str) -> int:
    """``server.workers`` as a number: "auto" is one per core."""
    if value == "auto":
        return os.cpu_count() or 1
    return max(1, int(value))


@dataclass(eq=False)
class Worker:
    process: asyncio.subprocess.Process
    generation: int
    started: float
    retiring: bool = False


class Supervisor:
    """Starts, watches, replaces and reloads the worker processes."""

    def __init__(self, worker_argv: Sequence[str], config_path: str | None, count: int) -> None:
        self._argv = list(worker_argv)
        self._config_path = config_path
        self._count = count
        self._workers: list[Worker] = []  # the current generation
        self._every: set[Worker] = set()  # every worker process not yet exited, retiring ones included
        self._generation = 0
        self._stopping = False
        self._backoff = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reloading: asyncio.Lock | None = None
        # Each worker writes its counters here about once a second; the admin API sums them (per node).
        self.stats_dir = tempfile.mkdtemp(prefix="edgeproxy-stats-")

    def _say(self, message: str, level: int = logging.INFO) -> None:
        log.log(level, "edgeproxy supervisor: %s", message)

    async def _spawn(self, generation: int) -> Worker | None:
        """Start one worker and wait until it listens; None when it failed to start."""
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy",
                *self._argv,
                "--worker-ready-fd",
                str(write_end),
                pass_fds=(write_end,),
                env={**os.environ, GENERATION_ENV: str(generation), STATS_DIR_ENV: self.stats_dir},
            )
        finally:
            os.close(write_end)
        try:
            ready = await asyncio.wait_for(asyncio.to_thread(os.read, read_end, 1), READY_TIMEOUT)
        except TimeoutError:
            ready = b""
            process.kill()
        finally:
            # The reading thread returns at the latest when the worker exits (its end of the pipe closes).
            asyncio.get_running_loop().call_later(READY_TIMEOUT, _close_quietly, read_end)
        if ready != b"1":
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return None
        worker = Worker(process=process, generation=generation, started=time.monotonic())
        self._every.add(worker)
        task = asyncio.get_running_loop().create_task(self._watch(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return worker

    async def _spawn_generation(self) -> list[Worker] | None:
        self._generation += 1
        started = await asyncio.gather(*(self._spawn(self._generation) for _ in range(self._count)))
        workers = [w for w in started if w is not None]
        if len(workers) < self._count:
            for worker in workers:
                worker.retiring = True
                _signal(worker, signal.SIGTERM)
            return None
        return workers

    async def _watch(self, worker: Worker) -> None:
        """Wait for a worker to exit; replace it unless it was asked to stop."""
        code = await worker.process.wait()
        self._every.discard(worker)
        if self._stopping or worker.retiring:
            return
        if worker in self._workers:
            self._workers.remove(worker)
        self._say(
            f"worker pid {worker.process.pid} exited with code {code}; starting a replacement",
            logging.WARNING,
        )
        lived = time.monotonic() - worker.started
        self._backoff = 0.0 if lived > 30 else min(MAX_BACKOFF, max(0.5, self._backoff * 2))
        while not self._stopping:
            if self._backoff:
                await asyncio.sleep(self._backoff)
            replacement = await self._spawn(self._generation)
            if replacement is not None:
                self._workers.append(replacement)
                self._say(f"worker pid {replacement.process.pid} started")
                return
            self._backoff = min(MAX_BACKOFF, max(0.5, self._backoff * 2))

    async def reload(self) -> None:
        """SIGHUP: check the config, start new workers on it, then retire the old ones gracefully."""
        assert self._reloading is not None
        async with self._reloading:
            if self._config_path is None:
                self._say(f"SIGHUP: {NOTHING_TO_RELOAD}")
                return
            if self._config_path is not None:
                try:
                    config = load_config(self._config_path)
                except ConfigError as exc:
                    self._say(
                        f"reload refused, the config has errors (old workers keep serving):\n{exc}",
                        logging.ERROR,
                    )
                    return
                self._count = worker_count(config.server.workers)
            fresh = await self._spawn_generation()
            if fresh is None:
                self._say(
                    "reload failed: new workers did not start (old workers keep serving)", logging.ERROR
                )
                return
            old, self._workers = self._workers, fresh
            for worker in old:
                worker.retiring = True
                _signal(worker, signal.SIGTERM)
            pids = ", ".join(str(w.process.pid) for w in fresh)
            self._say(f"reloaded: generation {self._generation} (pids {pids}); old workers finishing")

    async def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT; returns the exit code."""
        self._reloading = asyncio.Lock()
        workers = await self._spawn_generation()
        if workers is None:
            self._say("workers failed to start", logging.ERROR)
            return 1
        self._workers = workers
        pids = ", ".join(str(w.process.pid) for w in workers)
        self._say(f"{len(workers)} workers running (pids {pids}); SIGHUP reloads, SIGTERM stops")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = loop.create_task(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        await stop.wait()
        self._stopping = True
        for task in list(reloads):
            task.cancel()
        everyone = self._all_processes()
        for process in everyone:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in everyone)), STOP_TIMEOUT)
        except TimeoutError:
            for process in everyone:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in list(self._tasks):
            task.cancel()
        shutil.rmtree(self.stats_dir, ignore_errors=True)
        self._say("stopped")
        return 0

    def _all_processes(self) -> list[asyncio.subprocess.Process]:
        """Every worker process still running: the current generation and retiring ones."""
        return [w.process for w in self._every if w.process.returncode is None]

    @property
    def pids(self) -> list[int]:
        """The pids of the current generation (for tests and /stats)."""
        return [w.process.pid for w in self._workers]


def _signal(worker: Worker, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        worker.process.send_signal(sig)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
