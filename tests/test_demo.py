"""The README demo runs from a copy of the project and shows Max's runs and emails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.net import free_port


def test_the_demo_shows_max_s_journeys(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    dashboard = free_port()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo" / "run.py"),
            "--once",
            "--project",
            str(project),
            "--temporal-port",
            str(free_port()),
            "--ui-port",
            "0",
            "--api-port",
            str(free_port()),
            "--dashboard-port",
            str(dashboard),
            "--metrics-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "track     Order Delivered          200" in out
    assert "journey/newsletter-welcome/" in out and "journey/post-purchase-accessories/" in out
    assert "laptop-recommendation" in out and "converted" in out, "buying ended the recommendations"
    assert "next wake-up:" in out
    assert "max@example.com" in out.split("The emails in the outbox")[1]
    assert f"Dashboard     http://127.0.0.1:{dashboard}  (Max's journeys, live)" in out


def test_make_demo_hands_its_ports_to_touchpoint_dev() -> None:
    """``make demo TEMPORAL_PORT=… API_PORT=… UI_PORT=…``: a busy UI port stops it at once,
    named by ``touchpoint dev`` (the demo starts nothing of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        ui = other_server.getsockname()[1]
        ports = [f"TEMPORAL_PORT={free_port()}", f"API_PORT={free_port()}", f"UI_PORT={ui}"]
        ports += [f"DASHBOARD_PORT={free_port()}", f"METRICS_PORT={free_port()}"]
        make = subprocess.Popen(
            ["make", "--no-print-directory", "demo", *ports],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so that a demo that did start can be stopped whole
        )
        try:
            out, err = make.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGINT)
            make.communicate(timeout=60)
            raise AssertionError("make demo did not stop at the busy port") from None
    done = subprocess.CompletedProcess(make.args, make.returncode, out, err)
    assert done.returncode != 0
    assert (
        f"✗ port {ui} (Temporal UI, --ui-port) is in use: stop what listens there (another "
        "touchpoint dev?) or choose another port\n"
    ) in done.stderr
    assert "touchpoint dev stopped (exit 1); see above" in done.stderr
