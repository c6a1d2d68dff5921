"""A real ``redis-server`` process for tests: loopback only, a free port, no persistence, its own directory.

Tests use it to exercise the shared tier against the real thing, including outages: ``kill()`` (SIGKILL, as a
crash), ``restart()`` on the same port, and ``pause()``/``resume()`` (SIGSTOP/SIGCONT: the server accepts
connections but answers nothing, as a hung or overloaded Redis does).

The helper is synchronous (it runs between awaits, for a few milliseconds) so that fixtures and tests of any
kind can use it. Every wait is bounded and waits on a condition: the server answering PING, or the process
having exited.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 10.0
"""Seconds ``start``/``restart`` wait for the server to answer PING before giving up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server on 127.0.0.1:``port`` answers PING with PONG within ``timeout`` seconds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``port`` stays the same across ``kill``/``restart``."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        """Prepare a server that keeps its files in ``workdir``; ``start`` launches it.

        ``binary`` defaults to ``redis-server`` on PATH (``ValueError`` when there is none).
        """
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ValueError("redis-server is not installed")
        self.binary = found
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_text(self) -> str:
        """What the server wrote to its log file so far (for failure messages)."""
        logfile = self.workdir / "redis.log"
        return logfile.read_text(errors="replace") if logfile.exists() else ""

    def start(self) -> None:
        """Start the server on a free port and return once it answers PING.

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
        """Start the server again on the same port (after ``kill``/``stop``); returns once it answers PING.

        The data is gone (nothing is persisted): a restarted server is an empty one.
        """
        if self.running:
            raise RuntimeError("redis-server is still running; kill() or stop() it first")
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
            process.kill()
            process.wait(timeout=START_TIMEOUT)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but nothing is answered."""
        if self._process is None or not self.running:
            raise RuntimeError("redis-server is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); pending commands are then answered."""
        if self._process is not None and self.running:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        stderr_path = self.workdir / "stderr.log"
        with stderr_path.open("ab") as stderr:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if self._process.poll() is not None:
                errors = stderr_path.read_text(errors="replace")
                raise RuntimeError(
                    f"redis-server exited with {self._process.returncode} on port {self.port}: "
                    f"{errors}{self.log_text[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not answer PING within {START_TIMEOUT}s: {self.log_text[-2000:]}"
                )
            time.sleep(0.01)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
