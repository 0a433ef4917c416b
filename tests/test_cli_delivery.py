"""The marketer and ops commands for messages: preview, send-test, outbox, messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example project (its outbox and store are the copy's own)."""
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    (tmp_path / "max.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "max-1",
                "email": "max@example.com",
                "locale": "en",
                "traits": {"first_name": "Max", "email_opt_in": True},
            }
        )
    )
    (tmp_path / "picks.yaml").write_text(
        yaml.safe_dump(
            {
                "laptops": {
                    "products": [
                        {
                            "name": "Aero 14",
                            "price": 1299,
                            "currency": "EUR",
                            "url": "https://shop.example/a",
                            "image_url": "https://shop.example/a.png",
                            "highlights": ["light"],
                        }
                    ]
                }
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOUCHPOINT_UNSUBSCRIBE_SECRET", "a-long-enough-test-secret")
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'touchpoint.db'}")
    return tmp_path


def test_preview_prints_subject_and_text_and_writes_html(cli: CliRunner, project: Path) -> None:
    result = cli.invoke(
        app,
        [
            "preview",
            "laptop-recommendation",
            "recommend",
            "--profile",
            "max.yaml",
            "--lookups",
            "picks.yaml",
            "--locale",
            "de",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "template: laptop-picks (de)" in result.stdout
    assert "subject:  Max" in result.stdout
    assert "1.299,00" in result.stdout
    html = project / ".touchpoint/preview/laptop-recommendation-recommend.de.html"
    assert html.exists() and 'lang="de"' in html.read_text()


def test_preview_of_an_unknown_step_says_which_steps_exist(cli: CliRunner, project: Path) -> None:
    result = cli.invoke(app, ["preview", "laptop-recommendation", "nope"])
    assert result.exit_code == 1
    assert "send steps: recommend, store-invite, reminder" in result.stderr
    assert "Traceback" not in result.output


def test_send_test_goes_to_the_outbox_marked_test(cli: CliRunner, project: Path) -> None:
    sent = cli.invoke(
        app,
        [
            "send-test",
            "newsletter-welcome",
            "welcome",
            "--to",
            "me@shop.example",
            "--profile",
            "max.yaml",
        ],
    )
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.startswith("sent test of newsletter-welcome/welcome to me@shop.example")
    listed = cli.invoke(app, ["outbox"])
    assert listed.exit_code == 0
    [line] = listed.stdout.splitlines()
    assert "me@shop.example" in line and "[TEST]" in line
    shown = cli.invoke(app, ["outbox", line.split()[0]])
    assert shown.exit_code == 0 and "multipart/alternative" in shown.stdout
    missing = cli.invoke(app, ["outbox", "zzzz"])
    assert missing.exit_code == 1


def test_messages_lists_the_ledger(cli: CliRunner, project: Path) -> None:
    from store.database import connect
    from store.ledger import Ledger
    from workflows.models import customer_hash

    ledger = Ledger(connect(f"sqlite:///{project / 'touchpoint.db'}"))
    ledger.claim("msg_1", "newsletter-welcome", "welcome", "email", customer_hash("max-1"))
    ledger.mark("msg_1", "sent", provider="maildir", provider_id="k1")
    ledger.claim("msg_2", "newsletter-welcome", "welcome", "email", customer_hash("erika"))
    result = cli.invoke(app, ["messages", "--customer", "max-1"])
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    assert "sent" in line and "newsletter-welcome/welcome" in line and "maildir:k1" in line


def test_messages_says_when_its_limit_cut_the_list_short(cli: CliRunner, project: Path) -> None:
    from store.database import connect
    from store.ledger import Ledger

    ledger = Ledger(connect(f"sqlite:///{project / 'touchpoint.db'}"))
    for number in range(3):
        ledger.claim(f"msg_{number}", "newsletter-welcome", "welcome", "email", "c")
    cut = cli.invoke(app, ["messages", "--limit", "2"])
    assert (cut.exit_code, len(cut.stdout.splitlines())) == (0, 2)
    assert cut.stderr == "2 message(s); showing the newest 2; --limit N for more\n"
    whole = cli.invoke(app, ["messages", "--limit", "3"])
    assert (whole.exit_code, whole.stderr) == (0, "3 message(s)\n")
