"""A real PostgreSQL server for the store tests and the benchmarks, started from its own programs
in a temporary folder.

``initdb`` and ``pg_ctl`` come from PATH (or ``/usr/lib/postgresql/*/bin``). PostgreSQL refuses
to run as root, so as root they run as the ``postgres`` user (``runuser``), in a folder that
user owns. The server listens on 127.0.0.1 at a free port with ``trust`` authentication, and
stops when its owner calls :meth:`Postgres.stop` — or, if the owner is killed, when a watchdog
process sees that it is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

SETTINGS = [
    "listen_addresses=127.0.0.1",
    "max_connections=300",  # every test's engines keep a few connections in their pools
]
NOT_DURABLE = [  # the tests' server: durability across a power cut is not what is tested
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
]


def server_programs() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or ``None`` when PostgreSQL is not here."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


@dataclass
class Postgres:
    programs: Path
    root: Path  # data, socket and log live here; removed on stop
    port: int
    watchdog: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0  # initdb and pg_ctl start

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int:
        """The postmaster's process id (each connection is served by a child of it)."""
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    @classmethod
    def start(cls, programs: Path, durable: bool = False) -> Postgres:
        """A server on a free port; ``durable`` keeps PostgreSQL's own settings for ``fsync``
        and commits (as a deployment has them), otherwise they are off (faster tests)."""
        started = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix="touchpoint-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        server = cls(programs, root, _free_port())
        server.watchdog = server._watch(os.getpid())  # first: the session may die any moment
        try:
            settings = SETTINGS if durable else SETTINGS + NOT_DURABLE
            server._run("initdb", "-D", "data", "-A", "trust", "-U", "postgres", "--no-sync")
            options = " ".join([f"-p {server.port}", f"-k {root}", *(f"-c {s}" for s in settings)])
            server._run("pg_ctl", "-D", "data", "-l", "server.log", "-o", options, "-w", "start")
            server.startup_seconds = time.monotonic() - started
        except BaseException:
            server.stop()
            raise
        return server

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "stop")
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.programs / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            self._command(program, *args), cwd=self.root, capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).decode(errors='replace').strip()}\n{self.log()}"
            )

    def _watch(self, owner: int) -> subprocess.Popen[bytes]:
        """A process that stops the server if this one dies without doing so (``kill -9``)."""
        stop = self._command("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        code = (
            "import os, shutil, subprocess, sys, time\n"
            f"owner, root, stop = {owner}, {str(self.root)!r}, {stop!r}\n"
            "while os.path.exists(f'/proc/{owner}'):\n"
            "    time.sleep(0.5)\n"
            "for _ in range(20):  # a pg_ctl start under way may write its pid file yet\n"
            "    if os.path.exists(os.path.join(root, 'data', 'postmaster.pid')):\n"
            "        subprocess.run(stop, cwd=root, capture_output=True)\n"
            "        break\n"
            "    time.sleep(0.5)\n"
            "shutil.rmtree(root, ignore_errors=True)\n"
        )
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the test session's process group
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
