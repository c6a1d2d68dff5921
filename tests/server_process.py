"""A real server process for tests (``redis-server``, ``memcached``): loopback only, a free port, its own
directory and log, and outages on cue: ``kill()`` (SIGKILL, as a crash), ``restart()`` on the same port,
``pause()``/``resume()`` (SIGSTOP/SIGCONT: the kernel accepts connections but nothing is answered, as a hung
or overloaded server does).

Synchronous on purpose (it runs between awaits, for a few milliseconds) so that fixtures and tests of any
kind can use it. Every wait is bounded and waits on a condition: the server answering, the process having
stopped or exited. A subclass names its program and says how to launch it and how to know it answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

START_TIMEOUT = 10.0
"""Seconds ``start``/``restart``/``pause`` wait for their condition before giving up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stopped(task: Path) -> bool:
    """True when the thread ``/proc/<pid>/task/<tid>`` is stopped (state T) or gone."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


class ServerProcess:
    """One server process on 127.0.0.1; ``port`` stays the same across ``kill``/``restart``."""

    program = ""  # the executable looked up on PATH

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        """Prepare a server that keeps its log in ``workdir``; ``start`` launches it.

        ``binary`` defaults to the program on PATH (``ValueError`` when there is none).
        """
        found = binary or shutil.which(self.program)
        if found is None:
            raise ValueError(f"{self.program} is not installed")
        self.binary = found
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # ---------------------------------------------------------------- what a subclass says
    def _command(self) -> list[str]:
        """The command line that runs the server on ``self.port``, logging to stdout/stderr."""
        raise NotImplementedError

    def _answers(self, pid: int) -> bool:
        """Whether the server on ``self.port`` answers (as process ``pid``, where the protocol can tell)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        """True while the process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.program}.log"

    @property
    def log_text(self) -> str:
        """What the server wrote so far (its log), for failure messages."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Launch on a free port and return once it answers.

        A port taken between choosing and binding it is retried with another one; other failures raise
        ``RuntimeError`` with the server's log.
        """
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            try:
                self._launch()
                return
            except RuntimeError as exc:
                last_error = str(exc)
                if "Address already in use" not in last_error:
                    raise
        raise RuntimeError(last_error)

    def restart(self) -> None:
        """Start the server again on the same port (after ``kill``/``stop``); returns once it answers.

        Nothing is persisted: a restarted server is an empty one.
        """
        if self.running:
            raise RuntimeError(f"{self.program} is still running; kill() or stop() it first")
        self._launch()

    def kill(self) -> None:
        """Kill the process with SIGKILL (a crash: clients see their connections reset) and wait for it."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=START_TIMEOUT)
        self._paused = False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers); called at teardown. Safe to call twice."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        if self._paused:
            self.resume()
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP) and return once every thread has stopped (the signal is delivered
        asynchronously: a command sent right after could otherwise still be answered)."""
        if self._process is None or not self.running:
            raise RuntimeError(f"{self.program} is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + START_TIMEOUT
        while tasks.is_dir() and not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.program} did not stop on SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); pending commands are then answered."""
        if self._process is not None and self.running:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers(process.pid):
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.program} exited with {process.returncode} on port {self.port}: "
                    f"{self.log_text[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"{self.program} did not answer within {START_TIMEOUT}s: {self.log_text[-2000:]}"
                )
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
