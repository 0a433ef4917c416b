"""The documentation's examples are real: every complete journey in it validates."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from language.validator import validate
from tests.conftest import ROOT

BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def complete_journeys(markdown: str) -> list[str]:
    blocks = BLOCK.findall(markdown)
    return [b for b in blocks if re.search(r"^id:", b, re.M) and re.search(r"^steps:", b, re.M)]


DOC_JOURNEYS = complete_journeys((ROOT / "docs" / "journeys.md").read_text())
README_JOURNEYS = complete_journeys((ROOT / "README.md").read_text())


def test_the_docs_have_complete_examples() -> None:
    assert len(DOC_JOURNEYS) >= 3
    assert len(README_JOURNEYS) >= 1


@pytest.mark.parametrize("text", DOC_JOURNEYS + README_JOURNEYS)
def test_each_complete_journey_in_the_docs_validates(text: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "touchpoint.yaml", tmp_path / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "example.yaml").write_text(text)
    report = validate((), root=tmp_path)
    assert [p.format() for p in report.problems] == []
    assert len(report.plans) == 1


def test_the_same_journey_id_in_two_files_is_a_problem(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    text = "id: twice\nname: Twice\ncategory: marketing\ntrigger: {event: A}\nsteps: [end]\n"
    (journeys / "a.yaml").write_text(text)
    (journeys / "b.yaml").write_text("# the same again\n" + text)
    report = validate((), root=tmp_path)
    [problem] = report.problems
    assert problem.file.endswith("journeys/b.yaml") and problem.line == 2
    assert problem.message.startswith('journey id "twice" is already used by ')
    assert problem.message.endswith("journeys/a.yaml:1")
    assert list(report.plans) == ["twice"]


def test_operations_gives_the_ledger_lease_the_code_uses() -> None:
    from store.ledger import LEASE
    from workflows.models import SEND_ATTEMPT_SECONDS

    text = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    stated = re.findall(r"(\d+)-(second|minute) lease", text)
    assert stated == [(str(int(LEASE.total_seconds())), "second")]
    assert f"the {SEND_ATTEMPT_SECONDS} seconds a send attempt may last, plus 30" in text
    assert LEASE.total_seconds() == SEND_ATTEMPT_SECONDS + 30


VALIDATE_EXAMPLE = re.compile(
    r"```text\n(id: (\S+)\n.*?)```\s*```console\n\$ touchpoint validate journeys/(\S+)\.yaml\n"
    r"(.*?)```",
    re.DOTALL,
)


def test_the_validate_examples_print_what_the_docs_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each journey shown with its ``touchpoint validate`` output gives exactly that output."""
    from typer.testing import CliRunner

    from cli import app

    examples = VALIDATE_EXAMPLE.findall((ROOT / "docs" / "journeys.md").read_text())
    assert len(examples) >= 3
    shutil.copy(ROOT / "touchpoint.yaml", tmp_path / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "journeys").mkdir()
    monkeypatch.chdir(tmp_path)
    for text, _, name, shown in examples:
        (tmp_path / "journeys" / f"{name}.yaml").write_text(text)
        result = CliRunner().invoke(app, ["validate", f"journeys/{name}.yaml"])
        *problems, summary = shown.strip().splitlines()
        assert result.exit_code == 1
        assert result.stdout.splitlines() == problems
        assert result.stderr.strip() == summary


def test_the_documented_sample_data_is_the_sample_validate_uses() -> None:
    import yaml

    from language.samples import SAMPLE_EVENT, SAMPLE_PROFILE

    text = (ROOT / "docs" / "journeys.md").read_text()
    block = next(b for b in BLOCK.findall(text) if b.startswith("profile:\n  id: sample-customer"))
    documented = yaml.safe_load(block)
    assert documented == {"profile": SAMPLE_PROFILE, "event": SAMPLE_EVENT}


DEPLOY = ROOT / "docs" / "deploy.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
NOT_YET_HERE = {"capacity"}  # docs/deploy.md's "## Capacity" comes from another change (issue 15)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.DOTALL)
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_deployment_guide_links_to_what_exists() -> None:
    links = LINK.findall(DEPLOY.read_text())
    assert len(links) >= 10
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, fragment = link.partition("#")
        target = (DEPLOY.parent / path).resolve() if path else DEPLOY
        assert target.exists(), link
        if fragment and fragment not in NOT_YET_HERE:
            assert fragment in anchors(target), link


def test_the_deployment_guide_names_every_setting_and_only_real_commands() -> None:
    import typer.main

    from cli import app

    text = DEPLOY.read_text()
    read = set(re.findall(r'"(TOUCHPOINT_[A-Z_]+)"', (ROOT / "config" / "settings.py").read_text()))
    assert len(read) >= 12
    assert sorted(v for v in read if f"`{v}`" not in text) == []
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    used = set(re.findall(r"`touchpoint ([a-z-]+)", text))
    assert {"api", "worker", "migrate", "setup", "deploy"} <= used
    assert sorted(used - commands) == []


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def test_every_image_the_readme_shows_exists() -> None:
    readme = ROOT / "README.md"
    images = IMAGE.findall(readme.read_text())
    assert "docs/images/journey-page.png" in images
    missing = [i for i in images if not i.startswith("http") and not (ROOT / i).is_file()]
    assert missing == [], f"README.md shows images that are not in the repository: {missing}"
