"""``touchpoint dev`` smoke test: it starts, becomes ready, an event starts a journey, it stops
cleanly, and after a restart the waiting journey is still there."""

from __future__ import annotations

import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import EXAMPLE_SECRETS, ROOT
from tests.net import free_port

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")


def start(project: Path, env: dict[str, str], ports: tuple[int, int]) -> subprocess.Popen[str]:
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
    ports = (free_port(), free_port())
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
    finally:
        output = stop(dev)
    assert "touchpoint dev stopped" in output

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
    [run] = listed.splitlines()
    assert run.startswith("journey/newsletter-welcome/") and "running" in run
