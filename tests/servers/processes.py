"""Servers as plain processes: started, health-checked, killed and restarted on one port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status: auth may refuse the request)."""
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 - a local test server
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@dataclass
class ServerProcess:
    """A server command whose process can be stopped, killed and started again.

    The port is part of ``command`` and stays the same across restarts, as a real
    deployment's address does.
    """

    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str
    log: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self, seconds: float = 120) -> None:
        """Start the server and wait until ``health_url`` answers."""
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers go down with it (see stop and kill)
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
            if answers(self.health_url):
                return
            time.sleep(0.5)
        pytest.fail(f"{self.name} did not answer within {seconds} s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        """Stop the server as a service manager would (SIGTERM, then SIGKILL)."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the server and its workers at once, as a crash would."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def output(self) -> str:
        """What the server has written to its log so far."""
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def _signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)
