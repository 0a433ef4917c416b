"""``touchpoint preview`` and ``send-test`` never crash on a template that cannot render: every
kind of render error is one line at the template's ``file:line``, exit 1, no traceback — from
the in-process CLI and from the installed ``touchpoint`` script alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import ROOT

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
CONFIG = """\
defaults:
  locale: en
  timezone: Europe/Berlin
  sender: {email: hello@shop.example, name: Shop}
email:
  provider: maildir
destinations:
  crm:
    type: webhook
    url: https://crm.example/hooks/touchpoint
"""
EMAIL = "---\nsubject: Hello\n---\n<p>\n{}\n</p>\n"  # the expression is on line 5
# step id → (channel, template file, its text, the line the error is on)
BROKEN: dict[str, tuple[str, str, str, int]] = {
    # a name the sample data does not have (a typo, or a trait of another shape)
    "undefined": ("email", "en.html", EMAIL.format("{{ profile.traits.plan.name }}"), 5),
    "typo": ("email", "en.html", EMAIL.format("{{ profil.traits.first_name }}"), 5),
    "filter": ("email", "en.html", EMAIL.format('{{ "abc" | money("EUR") }}'), 5),
    "filter-arguments": ("email", "en.html", EMAIL.format("{{ 12 | money }}"), 5),
    "security": ("email", "en.html", EMAIL.format("{{ profile.__class__.__mro__ }}"), 5),
    "type": ("email", "en.html", EMAIL.format("{{ profile.id + 1 }}"), 5),
    "subject": ("email", "en.html", "---\nsubject: Hi {{ profile.id - 1 }}\n---\n<p>x</p>\n", 2),
    "json": ("webhook", "en.json", '{\n  "id": {{ profile.id | tojson }},\n}\n', 3),
    "deep-json": ("webhook", "en.json", "[" * 100_000 + "]" * 100_000 + "\n", 1),
}


def make_project(root: Path, templates: dict[str, tuple[str, str, str, int]]) -> Path:
    (root / "touchpoint.yaml").write_text(CONFIG)
    steps = []
    for step, (channel, file, text, _) in templates.items():
        (root / "templates" / step).mkdir(parents=True)
        (root / "templates" / step / file).write_text(text)
        target = ", to: crm" if channel == "webhook" else ""
        steps.append(f"  - {{id: {step}, send: {channel}{target}, template: {step}}}\n")
    (root / "journeys").mkdir()
    (root / "journeys" / "all.yaml").write_text(
        "id: all\nname: All\ncategory: transactional\ntrigger: {event: Go}\nsteps:\n"
        + "".join(steps)
    )
    (root / "sample.yaml").write_text("id: ann\nemail: ann@example.com\ntraits: {plan: basic}\n")
    return root


def commands(step: str) -> list[list[str]]:
    preview = ["preview", "all", step, "--profile", "sample.yaml"]
    if BROKEN[step][0] != "email":
        return [preview]
    return [
        preview,
        ["send-test", "all", step, "--to", "qa@example.com", "--profile", "sample.yaml"],
    ]


def where(step: str) -> str:
    """Where the error must be reported: the template file and line (the deep JSON fails in
    the JSON parser, after rendering: its template's folder)."""
    _, file, _, line = BROKEN[step]
    if step == "deep-json":
        return f"templates/{step}/"
    if step == "json":  # validate finds the comma first, where it is (the parser: at the "}")
        return f"templates/{step}/{file}:2:34"
    return f"templates/{step}/{file}:{line}"


def assert_one_line_at(output: str, step: str) -> None:
    assert "Traceback" not in output and "crashed" not in output, output
    assert where(step) in output, output
    assert len([text for text in output.splitlines() if text.startswith("✗ ")]) == 1, output


@pytest.mark.parametrize("step", BROKEN)
def test_a_render_error_in_process(
    step: str, tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each template alone: one that validate finds would stop the others' previews
    monkeypatch.chdir(make_project(tmp_path, {step: BROKEN[step]}))
    for args in commands(step):
        result = cli.invoke(app, args)
        assert result.exit_code == 1, (args, result.output, result.exception)
        assert_one_line_at(result.output, step)


@pytest.mark.parametrize("step", BROKEN)
def test_a_render_error_from_the_installed_script(step: str, tmp_path: Path) -> None:
    project = make_project(tmp_path, {step: BROKEN[step]})
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in commands(step):
        done = subprocess.run(
            [TOUCHPOINT, *args],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stdout == "", done.stdout
        assert_one_line_at(done.stderr, step)


def test_a_template_syntax_error(tmp_path: Path, cli: CliRunner) -> None:
    """A syntax error is found before anything renders: the project's problem, at file:line."""
    broken = {"syntax": ("email", "en.html", EMAIL.format("{{ profile.id }"), 5)}
    root = make_project(tmp_path, broken)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["preview", "all", "syntax"], ["send-test", "all", "syntax", "--to", "a@b.c"]):
        done = subprocess.run(
            [TOUCHPOINT, *args], cwd=root, env=environment, capture_output=True, text=True
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "crashed" not in done.stderr
        assert "templates/syntax/en.html:5:" in done.stderr, done.stderr
        result = cli.invoke(app, [*args, "--project", str(root)])
        assert result.exit_code == 1 and "templates/syntax/en.html:5:" in result.output


def test_a_sample_profile_of_the_wrong_shape(tmp_path: Path, cli: CliRunner) -> None:
    project = make_project(tmp_path, {"type": BROKEN["type"]})
    (project / "odd.yaml").write_text("id: ann\ntraits: [1, 2]\n")
    result = cli.invoke(
        app, ["preview", "all", "type", "--profile", str(project / "odd.yaml"), "-C", str(project)]
    )
    assert result.exit_code == 1, result.output
    assert "odd.yaml: traits: Input should be a valid dictionary" in result.output
