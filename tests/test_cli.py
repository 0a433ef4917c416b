"""The `touchpoint` command: output formats and the exit-code contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli as cli_module
from cli import app
from tests.conftest import EXAMPLE_JOURNEYS, FIXTURES, ROOT


def test_json_format_lists_every_problem_with_its_fields(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES / "invalid")
    result = cli.invoke(app, ["validate", "journeys/unknown-jump.yaml", "--format", "json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)
    assert problems[0] == {
        "file": "journeys/unknown-jump.yaml",
        "line": 10,
        "column": 17,
        "path": "steps[0].on_timeout",
        "message": 'unknown step "remindr"; did you mean "reminder"?',
        "hint": "jump to a step's id, or to end",
    }
    assert len(problems) == 4


def test_json_format_of_a_clean_project_is_an_empty_list(cli: CliRunner, in_project: Path) -> None:
    result = cli.invoke(app, ["validate", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "no-such-file.yaml"],
        ["validate", "--format", "xml"],
        ["graph"],
        ["frobnicate"],
        ["graph", "no-such-journey"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(
    cli: CliRunner, in_project: Path, args: list[str]
) -> None:
    result = cli.invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_graph_of_a_broken_journey_reports_problems_and_exits_1(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES / "invalid")
    result = cli.invoke(app, ["graph", "journeys/unreachable.yaml"])
    assert result.exit_code == 1
    assert 'step "orphan" can never be reached' in result.stderr
    assert result.stdout == ""


def test_validate_a_folder_given_explicitly(cli: CliRunner, in_project: Path) -> None:
    result = cli.invoke(app, ["validate", "journeys"])
    assert result.exit_code == 0
    assert result.stdout.startswith("✓ 7 journeys")


def test_schema_command_prints_json_schema(cli: CliRunner) -> None:
    for kind, title in (("journey", "Touchpoint journey"), ("config", "ProjectConfig")):
        result = cli.invoke(app, ["schema", kind])
        assert result.exit_code == 0
        assert json.loads(result.stdout)["title"] == title


def test_an_unexpected_crash_exits_3_with_a_bug_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "validate", explode)
    monkeypatch.setattr(sys, "argv", ["touchpoint", "validate"])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "this is a bug" in err and "RuntimeError: boom" in err


def test_the_console_script_is_installed_and_runs() -> None:
    script = Path(sys.executable).parent / "touchpoint"
    done = subprocess.run(
        [str(script), "validate"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "no problems" in done.stdout


def test_a_system_exit_with_a_message_is_printed_as_a_user_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ops.exits import exit_code

    assert exit_code("touchpoint", lambda: sys.exit("email.provider is sendgrid: set X")) == 1
    assert capsys.readouterr().err == "✗ email.provider is sendgrid: set X\n"


def test_make_graphs_draws_each_journey_and_no_test_file() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "graphs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    drawn = re.findall(r"^%% .* \(([\w-]+), version \w+\)$", done.stdout, re.MULTILINE)
    assert drawn == [path.stem for path in EXAMPLE_JOURNEYS]
