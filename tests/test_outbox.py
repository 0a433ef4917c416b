"""``touchpoint outbox KEY`` prints a message as a person reads it: a German subject decoded,
a long List-Unsubscribe header on one line — and the URL copied from there unsubscribes when
POSTed as a mail client would. The email is sent by the real delivery activity into the real
Maildir; the command is the installed executable; the unsubscribe goes to the real app."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from ingestion.api import Api, create_app
from ingestion.service import Ingestion
from language.validator import validate
from store.consent import ConsentStore
from store.database import connect
from store.keys import WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import ROOT
from workflows.models import Profile, SendRequest, SendResult

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
SECRET = b"unsubscribe-secret-for-tests"
CUSTOMER = "customer-" + "0123456789abcdef" * 6  # a long id makes a long unsubscribe token
UNSUBSCRIBE_URL = "https://newsletter.mail.laptops.example/unsubscribe"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example project, with a long public unsubscribe URL and a mailto: beside it."""
    for name in ("journeys", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    config = yaml.safe_load((ROOT / "touchpoint.yaml").read_text())
    config["email"].update(
        unsubscribe_url=UNSUBSCRIBE_URL, unsubscribe_mailto="unsubscribe@laptops.example"
    )
    (tmp_path / "touchpoint.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return tmp_path


def touchpoint(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOUCHPOINT, "outbox", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def welcome(message_id: str) -> SendRequest:
    profile = Profile(
        id=CUSTOMER, email="juergen@example.com", locale="de", traits={"first_name": "Jürgen"}
    )
    return SendRequest(
        message_id=message_id,
        journey_id="newsletter-welcome",
        journey_version="v1",
        category="marketing",
        step_id="welcome",
        channel="email",
        template="newsletter-welcome",
        customer_id=CUSTOMER,
        profile=profile,
        context={"now": datetime.now(UTC).isoformat()},
    )


async def test_the_printed_unsubscribe_url_unsubscribes(project: Path) -> None:
    engine = connect(f"sqlite:///{project / 'touchpoint.db'}")
    consent, ledger = ConsentStore(engine), Ledger(engine)
    config = validate((), root=project).config
    activities = DeliveryActivities(
        config=config,
        ledger=ledger,
        renderer=Renderer(project / "templates", "en"),
        email=MaildirProvider(project / config.email.maildir.path),
        http=make_client(),
        unsubscribe_secret=SECRET,
        environ={},
        consent=consent,
    )
    sent = await ActivityEnvironment().run(activities.sends["email"], welcome("msg-welcome-1"))
    assert sent.status == "sent"

    listed = touchpoint(project)
    key = listed.stdout.split()[0]
    shown = touchpoint(project, key)
    raw = touchpoint(project, key, "--raw")
    assert shown.returncode == raw.returncode == 0, shown.stderr + raw.stderr

    # what the file holds: encoded words and a folded header, useless to copy from
    assert "Shop, =?utf-8?q?J=C3=BCrgen!?=" in raw.stdout
    assert re.search(r"List-Unsubscribe: <https://[^>]+>,\n <mailto:", raw.stdout)
    # what a person sees: one line per header, decoded
    lines = shown.stdout.splitlines()
    assert "Subject: Willkommen bei Example Laptop Shop, Jürgen!" in lines
    assert "To: juergen@example.com" in lines
    assert "From: Example Laptop Shop <hello@laptops.example>" in lines
    [header] = [line for line in lines if line.startswith("List-Unsubscribe: ")]
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    match = re.fullmatch(
        r"List-Unsubscribe: <(https://\S+)>, "
        r"<mailto:unsubscribe@laptops\.example\?subject=unsubscribe>",
        header,
    )
    assert match is not None, header
    url = match.group(1)
    assert url.startswith(UNSUBSCRIBE_URL + "/") and len(url) > 200
    body = shown.stdout.split("\n\n", 1)[1]
    assert "Jürgen" in body and "=C3=BC" not in body, "the text part, decoded"
    assert re.search(r"other parts: text/html \([\d,]+ bytes\)$", shown.stdout.rstrip())

    async def unsubscribe(customer_id: str, reason: str) -> None:
        consent.withdraw(customer_id, reason)

    async def nowhere(*_: object) -> None:
        raise AssertionError("no event is routed here")

    app = create_app(
        Api(
            Ingestion(ProfileStore(engine), ProcessedMessages(engine), nowhere),
            WriteKeys(engine),
            unsubscribe=unsubscribe,
            unsubscribe_secret=SECRET,
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://mail.laptops.example"
    ) as client:
        clicked = await client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert clicked.status_code == 200, clicked.text
    assert consent.blocked(CUSTOMER) == "unsubscribed (one-click)"
    later: SendResult = await ActivityEnvironment().run(
        activities.sends["email"], welcome("msg-welcome-2")
    )
    assert (later.status, later.reason) == ("skipped", "unsubscribed (one-click)")


async def test_a_message_without_a_text_part_says_so(tmp_path: Path) -> None:
    from activities.email.maildir import read_message
    from activities.email.readable import readable
    from activities.messages import OutgoingEmail

    provider = MaildirProvider(tmp_path)
    key = await provider.send(
        OutgoingEmail(
            message_id="m-1",
            to="ana@example.com",
            from_email="hello@laptops.example",
            subject="Nur HTML – schön",
            html="<p>Hallo</p>",
        )
    )
    text = readable(read_message(tmp_path, key))
    head, body = text.split("\n\n", 1)
    assert "Subject: Nur HTML – schön" in head.splitlines()
    assert body.splitlines() == ["(no text/plain part)", "", "other parts: text/html (13 bytes)"]


def test_an_unknown_key_is_one_line_and_exit_1(project: Path) -> None:
    missing = touchpoint(project, "zzzz")
    assert missing.returncode == 1
    assert missing.stderr.startswith("✗ no message 'zzzz' in ")
    assert len(missing.stderr.splitlines()) == 1
