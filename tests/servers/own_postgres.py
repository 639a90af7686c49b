"""A PostgreSQL server of a test's own, to crash (SIGKILL) and start again.

Made with the machine's PostgreSQL 15 server programs (``initdb``, ``postgres``), run as the
``postgres`` user (they refuse to run as root), on a port of its own and with its socket in
its own folder, so that killing it touches nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.processes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
_AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]


@dataclass
class OwnPostgres:
    """A PostgreSQL instance in ``folder`` listening on 127.0.0.1:``port``."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, init=False)

    @classmethod
    def create(cls) -> OwnPostgres:
        """A new cluster (``initdb``), not started yet."""
        folder = Path(tempfile.mkdtemp(prefix="wikilm-pg-"))
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
        command = [str(BIN / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"]
        subprocess.run(
            [*_AS_POSTGRES, *command, "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"],
            check=True,
            capture_output=True,
        )
        return cls(folder)

    def url(self, database: str = "postgres") -> str:
        """Its postgresql:// URL for ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, seconds: float = 60) -> None:
        """Start the server (recovering from a crash, if it crashed) and wait until it answers."""
        command = [str(BIN / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port)]
        command += ["-k", str(self.folder), "-c", "listen_addresses=127.0.0.1"]
        with (self.folder / "server.log").open("a") as log:
            # Its own session: the server and its backends go down together (see kill).
            self.process = subprocess.Popen(
                [*_AS_POSTGRES, *command], stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + seconds
        while not self._answers():
            if self.process.poll() is not None:
                pytest.fail(f"postgres exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"postgres did not answer within {seconds} s:\n{self.log()}")
            time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """A new database: its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def kill(self) -> None:
        """Crash it: SIGKILL to the server and every backend at once, as a power cut."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Shut it down (fast mode) if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)

    def remove(self) -> None:
        """Stop it and delete its files."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """What the server has logged."""
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def _answers(self) -> bool:
        done = subprocess.run(
            [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0
