"""An operator's mistake ends in one line on stderr — ``✗ what is wrong; what to do`` — and
exit 1, never a traceback. Everything here runs the installed ``touchpoint`` script and
``python worker.py`` as processes: ``CliRunner`` catches ``SystemExit`` itself, and so hid that
the console script dropped the message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from store.database import connect as connect_store
from tests.conftest import ROOT
from tests.faults.stack import make_project
from tests.net import free_port

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
# every command that talks to Temporal
TEMPORAL_COMMANDS = [
    [TOUCHPOINT, "runs", "list"],
    [TOUCHPOINT, "runs", "show", "journey/note/abc"],
    [TOUCHPOINT, "show", "journey/note/abc"],
    [TOUCHPOINT, "cancel", "journey/note/abc"],
    [TOUCHPOINT, "emit", "Note Requested", "--user", "u-1"],
    [TOUCHPOINT, "identify", "u-1"],
    [TOUCHPOINT, "worker"],
    [TOUCHPOINT, "api", "--port", "0"],
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


def test_every_command_says_when_temporal_is_down_naming_the_address(project: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # a real port nobody listens on
    database = f"sqlite:///{project / 'touchpoint.db'}"
    connect_store(database)  # migrated once, not by nine processes at the same moment
    env = environment(TOUCHPOINT_TEMPORAL_ADDRESS=address, TOUCHPOINT_DATABASE_URL=database)
    commands = [
        [*command, "--project", str(project)] if command == WORKER else command
        for command in TEMPORAL_COMMANDS
    ]
    started = time.monotonic()
    results = run_all(commands, project, env)
    elapsed = time.monotonic() - started
    for done in results:
        assert_one_line(
            done,
            f"✗ Temporal is not reachable at {address} (connection refused, tried for 5 s); "
            "start it (`touchpoint dev` runs one) or set TOUCHPOINT_TEMPORAL_ADDRESS\n",
        )
    assert 4 < elapsed < 60, "a bounded retry (nine processes at once; a loaded machine is slow)"


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("TOUCHPOINT_TEMPORAL_TLS_CERT", "TOUCHPOINT_TEMPORAL_TLS_KEY"),
        ("TOUCHPOINT_TEMPORAL_TLS_KEY", "TOUCHPOINT_TEMPORAL_TLS_CERT"),
    ],
)
def test_half_an_mtls_pair_is_refused_not_ignored(
    project: Path, tmp_path: Path, given: str, missing: str
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    env = environment(**{given: str(pem), "TOUCHPOINT_TEMPORAL_ADDRESS": "127.0.0.1:1"})
    [done] = run_all([[TOUCHPOINT, "runs", "list"]], project, env)
    assert_one_line(
        done,
        f"✗ {given} is set but {missing} is not: mTLS needs both the client certificate and "
        "its private key; set both, or neither\n",
    )


def _database_cases(tmp_path: Path) -> list[tuple[str, str]]:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder.db").mkdir()
    where = "set TOUCHPOINT_DATABASE_URL (or database_url in touchpoint.yaml)"
    return [
        (
            f"sqlite:///{tmp_path}/a-file/touchpoint.db",
            f"✗ cannot create the folder {tmp_path}/a-file for the database "
            f"sqlite:///{tmp_path}/a-file/touchpoint.db: a file is in the way; {where} to a "
            "path under a folder\n",
        ),
        (
            f"sqlite:///{tmp_path}/a-folder.db",
            f"✗ cannot open and write the database sqlite:///{tmp_path}/a-folder.db (unable to "
            f"open database file); make it writable, or {where} to one this process can write\n",
        ),
        (
            "postgresql://shop:s3cret@127.0.0.1:1/touchpoint",
            "✗ cannot connect to the database postgresql://shop:***@127.0.0.1:1/touchpoint "
            '(connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
            "refused); check that it runs and takes connections from here, or "
            f"{where} to one that does\n",
        ),
        (
            "mysql://shop@db.internal/touchpoint",
            "✗ the database URL mysql://shop@db.internal/touchpoint names mysql, but the store "
            f"runs on SQLite or PostgreSQL; {where}, e.g. sqlite:///.touchpoint/touchpoint.db or "
            "postgresql://user@host/db\n",
        ),
        (
            "postgresql://shop@db.internal/touchpoint?pool_size=many",
            "✗ the database URL postgresql://shop@db.internal/touchpoint?pool_size=many sets "
            "pool_size='many', which is not a whole number; write e.g. ?pool_size=10\n",
        ),
        (
            "postgresql+psycopg2://shop@db.internal/touchpoint",
            "✗ the database URL postgresql+psycopg2://shop@db.internal/touchpoint needs the "
            "driver psycopg2, which is not installed: pip install psycopg2-binary\n",
        ),
    ]


def test_a_database_that_cannot_be_used_is_named_with_the_fix(
    project: Path, tmp_path: Path
) -> None:
    cases = _database_cases(tmp_path)
    commands = [
        [TOUCHPOINT, *args]
        for _ in cases
        for args in (["messages"], ["keys", "create", "shop"], ["identify", "u-1"])
    ]
    envs = [environment(TOUCHPOINT_DATABASE_URL=url) for url, _ in cases for _ in range(3)]
    for command, env, (_, expected) in zip(
        commands, envs, [case for case in cases for _ in range(3)], strict=True
    ):
        [done] = run_all([command], project, env)
        assert_one_line(done, expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_database_in_a_read_only_folder_is_named_with_the_fix(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    url = f"sqlite:///{folder}/touchpoint.db"
    [done] = run_all([[TOUCHPOINT, "messages"]], project, environment(TOUCHPOINT_DATABASE_URL=url))
    assert_one_line(
        done,
        f"✗ cannot open and write the database {url} (unable to open database file); make it "
        "writable, or set TOUCHPOINT_DATABASE_URL (or database_url in touchpoint.yaml) to one "
        "this process can write\n",
    )


async def test_showing_a_run_that_does_not_exist_names_it(
    dev_env: WorkflowEnvironment, project: Path
) -> None:
    address = dev_env.client.service_client.config.target_host
    env = environment(TOUCHPOINT_TEMPORAL_ADDRESS=address)
    commands = [
        [TOUCHPOINT, "runs", "show", "journey/note/nobody"],
        [TOUCHPOINT, "show", "journey/note/nobody"],
    ]
    for done in run_all(commands, project, env):
        assert_one_line(
            done,
            "✗ no run 'journey/note/nobody' in namespace default; "
            "`touchpoint runs list` shows the runs\n",
        )
