"""``touchpoint dev`` smoke test: it starts, becomes ready, an event starts a journey, it stops
cleanly, and after a restart the waiting journey is still there."""

from __future__ import annotations

import mailbox
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLE_SECRETS, ROOT
from tests.net import free_port

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")


def start(
    project: Path, env: dict[str, str], ports: tuple[int, int, int, int]
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            TOUCHPOINT,
            "dev",
            "--temporal-port",
            str(ports[0]),
            "--ui-port",
            "0",
            "--api-port",
            str(ports[1]),
            "--dashboard-port",
            str(ports[2]),
            "--metrics-port",
            str(ports[3]),
            "-C",
            str(project),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{ports[1]}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError("touchpoint dev did not become ready")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_dev_starts_runs_a_journey_stops_and_restarts_with_state(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env |= {k: v for k, v in EXAMPLE_SECRETS.items() if not k.startswith("TOUCHPOINT_")}
    ports = (free_port(), free_port(), free_port(), free_port())
    child_env = {**env, "TOUCHPOINT_TEMPORAL_ADDRESS": f"127.0.0.1:{ports[0]}"}

    dev = start(project, env, ports)
    try:
        key = subprocess.run(
            [TOUCHPOINT, "keys", "create", "shop"],
            cwd=project,
            env=child_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", auth=(key, "")) as api:
            assert (
                api.post(
                    "/v1/identify",
                    json={
                        "userId": "max",
                        "traits": {"email": "max@example.com", "interests": ["laptops"]},
                    },
                ).status_code
                == 200
            )
            assert (
                api.post(
                    "/v1/track",
                    json={"userId": "max", "event": "Newsletter Subscribed", "messageId": "dev-1"},
                ).status_code
                == 200
            )
        outbox = project / ".touchpoint" / "outbox"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (outbox / "new").exists():
            time.sleep(0.2)
        [welcome] = list(mailbox.Maildir(outbox, create=False))
        assert welcome["To"] == "max@example.com"
        dashboard = httpx.get(f"http://127.0.0.1:{ports[2]}/customers", timeout=10)
        assert dashboard.status_code == 200, "touchpoint dev's dashboard needs no login"
        metrics = httpx.get(f"http://127.0.0.1:{ports[3]}/metrics", timeout=10)
        assert metrics.status_code == 200 and "temporal_" in metrics.text
    finally:
        output = stop(dev)
    assert "touchpoint dev stopped" in output
    assert f"Dashboard  http://127.0.0.1:{ports[2]}\n" in output
    assert f"Metrics    http://127.0.0.1:{ports[3]}/metrics\n" in output

    dev = start(project, env, ports)
    try:
        listed = subprocess.run(
            [TOUCHPOINT, "runs", "list", "--running", "--customer", "max"],
            cwd=project,
            env=child_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        stop(dev)
    _header, run = listed.splitlines()
    assert run.startswith("journey/newsletter-welcome/") and "running" in run


@pytest.mark.parametrize(
    ("busy", "named"),
    [
        (0, "Temporal, --temporal-port"),
        (1, "Temporal UI, --ui-port"),
        (2, "API, --api-port"),
        (3, "Dashboard, --dashboard-port"),
        (4, "Metrics, --metrics-port"),
    ],
    ids=["temporal", "ui", "api", "dashboard", "metrics"],
)
def test_dev_with_a_busy_port_fails_at_once_naming_it(
    tmp_path: Path, busy: int, named: str
) -> None:
    ports = [free_port() for _ in range(5)]
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        ports[busy] = other_server.getsockname()[1]
        started = time.monotonic()
        options = [
            "--temporal-port",
            "--ui-port",
            "--api-port",
            "--dashboard-port",
            "--metrics-port",
        ]
        done = subprocess.run(
            [TOUCHPOINT, "dev", *[f"{o}={p}" for o, p in zip(options, ports, strict=True)]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert time.monotonic() - started < 10
    assert (done.returncode, done.stdout) == (1, ""), "nothing started, nothing 'running'"
    assert done.stderr == (
        f"✗ port {ports[busy]} ({named}) is in use: stop what listens there (another touchpoint "
        "dev?) or choose another port\n"
    )
    assert not (tmp_path / ".touchpoint").exists()


def test_dev_names_every_busy_port_and_ports_given_twice(tmp_path: Path) -> None:
    with socket.socket() as one, socket.socket() as two:
        for server in (one, two):
            server.bind(("127.0.0.1", 0))
            server.listen()
        taken = [one.getsockname()[1], two.getsockname()[1]]
        both = subprocess.run(
            [TOUCHPOINT, "dev", "--temporal-port", str(taken[0]), "--api-port", str(taken[1])],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
    assert (both.returncode, both.stderr) == (
        1,
        f"✗ ports {taken[0]} (Temporal, --temporal-port), {taken[1]} (API, --api-port) are in "
        "use: stop what listens there (another touchpoint dev?) or choose other ports\n",
    )
    port = free_port()
    twice = subprocess.run(
        [TOUCHPOINT, "dev", "--temporal-port", str(port), "--api-port", str(port)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (twice.returncode, twice.stderr) == (
        1,
        f"✗ --temporal-port and --api-port are both {port}: give each its own port\n",
    )
