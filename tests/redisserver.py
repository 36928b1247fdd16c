"""A real redis-server for the cluster tests: started on a free loopback port, in its own
directory, with the append-only file on, and stopped (or restarted on the same port and
data) by its PID.  Never the system's service.  ``tests/bench`` starts its own through
``redis_argv`` and ``answers_ping`` (its processes are its own to account for)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")

# Skipped without redis-server, but not in CI (.ci/run installs it): there the tests fail
# at start() rather than pass unrun.
needs_redis = pytest.mark.skipif(REDIS_SERVER is None and not os.environ.get("CI"),
                                 reason="redis-server is not installed (apt-get install redis-server)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_argv(executable: str, port: int, directory: Path) -> list[str]:
    """redis-server on 127.0.0.1:``port``, no snapshots, the append-only file in ``directory``."""
    return [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--dir", str(directory)]


def answers_ping(port: int, alive: Callable[[], bool], timeout: float) -> bool:
    """Whether the redis-server on ``port`` answers PING within ``timeout`` (False at once
    when ``alive`` says its process has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        if not alive():
            return False
        time.sleep(0.05)
    return False


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        log = (self.directory / "redis.log").open("ab")
        process = self.process = subprocess.Popen(redis_argv(REDIS_SERVER, self.port, self.directory),
                                                  stdout=log, stderr=subprocess.STDOUT)
        if answers_ping(self.port, lambda: process.poll() is None, timeout):
            return self
        self.stop()
        raise RuntimeError(f"redis-server did not start:\n{(self.directory / 'redis.log').read_text()}")

    def stop(self) -> None:
        """SIGTERM: redis-server writes its append-only file out, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
