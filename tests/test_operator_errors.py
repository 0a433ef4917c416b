"""An operator's mistake ends in one line on stderr — ``✗ what is wrong; what to do`` — and
exit 1, never a traceback. Everything here runs the installed ``touchpoint`` script and
``python worker.py`` as processes: ``CliRunner`` catches ``SystemExit`` itself, and so hid that
the console script dropped the message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.faults.stack import make_project

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
WORKER = [sys.executable, str(ROOT / "worker.py")]
NOTE = """
id: note
name: Note
category: transactional
trigger:
  event: Note Requested
steps:
  - send: email
    template: note
"""
BROKEN = """
id: broken
name: Broken
category: transactional
trigger:
  event: Note Requested
steps:
  - goto: nowhere
"""
INVALID = (
    "✗ the project has 1 problem (the first: journeys/broken.yaml:8:11: steps[0].goto: "
    'unknown step "nowhere"); run `touchpoint validate` to see them all\n'
)
# every command that loads the project, and the worker's own entry point
LOADING_COMMANDS = [
    [TOUCHPOINT, "worker"],
    [TOUCHPOINT, "api"],
    [TOUCHPOINT, "emit", "Note Requested", "--user", "u-1"],
    [TOUCHPOINT, "identify", "u-1", "-t", "plan=pro"],
    [TOUCHPOINT, "runs", "list"],
    [TOUCHPOINT, "runs", "show", "journey/note/abc"],
    [TOUCHPOINT, "show", "journey/note/abc"],
    [TOUCHPOINT, "cancel", "journey/note/abc"],
    [TOUCHPOINT, "messages"],
    [TOUCHPOINT, "outbox"],
    [TOUCHPOINT, "preview", "note", "note-1"],
    WORKER,
]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without Touchpoint's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    return env | extra


def run_all(
    commands: Sequence[Sequence[str]], cwd: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``commands`` side by side (each may wait out the Temporal retry) and collect them."""
    started = [
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    done = []
    for command, process in zip(commands, started, strict=True):
        out, err = process.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return done


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    shown = " ".join(Path(part).name if "/" in part else part for part in done.args[:3])
    assert (done.returncode, done.stderr) == (1, expected), shown
    assert done.stdout == "", shown


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "shop", {"note": NOTE})


def test_every_command_that_loads_an_invalid_project_says_why(project: Path) -> None:
    (project / "journeys" / "broken.yaml").write_text(BROKEN)
    commands = [
        [*command, "--project", str(project)] if command == WORKER else command
        for command in LOADING_COMMANDS
    ]
    for done in run_all(commands, project, environment()):
        assert_one_line(done, INVALID)
