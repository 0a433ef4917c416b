"""The README demo runs from a copy of the project and shows Max's runs and emails."""

from __future__ import annotations

import os
import shutil
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
