"""Delivery policies end to end on the real stack: the Temporal dev server, ``python worker.py``
and ``touchpoint api`` as separate processes, a SQLite store and the Maildir outbox. Four
journeys write to one customer; the frequency cap, quiet hours and a topic left by the
one-click link decide what reaches the outbox, and the ledger and the runs' timelines say why.

The quiet window is set around the wall clock of the test (in UTC), so its end is at most
about a minute and a half away: the deferred message is really waited for.
"""

from __future__ import annotations

import asyncio
import mailbox
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import httpx
import yaml
from temporalio.client import Client

from activities.email.maildir import list_messages
from ingestion.unsubscribe import verify_token
from store.keys import WriteKeys
from store.ledger import Delivery
from tests.faults.stack import (
    OUTBOX,
    UNSUBSCRIBE_SECRET,
    connect,
    database_url,
    ledger_of,
    processes,
    ready,
    store_of,
)
from workflows.models import RunResult
from workflows.search import JOURNEY_ID

MARKETING_TEMPLATES = ("welcome-mail", "news-2", "offer-mail", "offer-2", "late-news")
TEMPLATE = """---
subject: "{name} for you"
---
<p>Hello {{{{ profile.traits.first_name }}}}, this is {name}.</p>
"""


def journeys(quiet_from: str, quiet_to: str) -> dict[str, str]:
    return {
        "welcome": """
id: welcome
name: Welcome
category: marketing
topic: news
trigger: {event: Signed Up}
steps:
  - {id: welcome-mail, send: email, template: welcome-mail}
  - wait: 6s
  - {id: news-2, send: email, template: news-2}
""",
        "offers": """
id: offers
name: Offers
category: marketing
topic: offers
trigger: {event: Signed Up}
steps:
  - wait: 3s
  - {id: offer-mail, send: email, template: offer-mail}
  - wait: 40s
  - {id: offer-2, send: email, template: offer-2}
""",
        "late-news": f"""
id: late-news
name: Late news
category: marketing
topic: news
trigger: {{event: Signed Up}}
policies:
  quiet_hours:
    - {{name: test-window, from: "{quiet_from}", to: "{quiet_to}", channels: [email]}}
  exempt: [marketing-email-daily]
steps:
  - {{id: late-news, send: email, template: late-news}}
""",
        "receipt": """
id: receipt
name: Receipt
category: transactional
trigger: {event: Order Completed}
steps:
  - {id: receipt, send: email, template: receipt}
""",
    }


def make_project(root: Path, quiet_from: str, quiet_to: str) -> Path:
    (root / "journeys").mkdir(parents=True)
    for journey_id, text in journeys(quiet_from, quiet_to).items():
        (root / "journeys" / f"{journey_id}.yaml").write_text(text)
    for name in (*MARKETING_TEMPLATES, "receipt"):
        (root / "templates" / name).mkdir(parents=True)
        (root / "templates" / name / "en.html").write_text(TEMPLATE.format(name=name))
    config = {
        "defaults": {"timezone": "UTC", "sender": {"email": "shop@policies.example"}},
        "email": {"provider": "maildir", "maildir": {"path": OUTBOX}},
        "topics": {
            "news": {"name": "News", "description": "What is new in the shop"},
            "offers": {"name": "Offers", "description": "Discounts and deals"},
        },
        "policies": {
            "frequency_caps": [
                {"name": "marketing-email-daily", "limit": 2, "per": "24h", "channels": ["email"]}
            ]
        },
    }
    (root / "touchpoint.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def quiet_window(now: datetime) -> tuple[str, str, datetime]:
    """A window that holds ``now`` and ends on a minute boundary 30–90 seconds later."""
    end = (now + timedelta(seconds=90)).replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), end


async def result_of(client: Client, journey_id: str, seconds: float = 180) -> RunResult:
    deadline = time.monotonic() + seconds
    while True:
        runs = [r async for r in client.list_workflows(f"{JOURNEY_ID.name} = '{journey_id}'")]
        if runs:
            handle = client.get_workflow_handle(runs[0].id)
            remaining = deadline - time.monotonic()
            return RunResult.model_validate(await asyncio.wait_for(handle.result(), remaining))
        assert time.monotonic() < deadline, f"no run of {journey_id}"
        await asyncio.sleep(0.2)


async def outbox_subject(project: Path, subject: str, seconds: float = 60) -> str:
    """The one-click token of the outbox message with ``subject``, once it is there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outbox = project / OUTBOX
        for message in mailbox.Maildir(outbox, create=False) if outbox.exists() else ():
            if message["Subject"] == subject:
                header = message["List-Unsubscribe"] or ""
                link = re.search(r"<https?://[^>]*/unsubscribe/([^>]+)>", header)
                assert link is not None, header
                return link.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {subject!r} in the outbox")


def by_template(ledger: list[Delivery]) -> dict[str, Delivery]:
    return {row.step_id: row for row in ledger}


async def test_caps_quiet_hours_and_topics_decide_what_one_customer_gets(tmp_path: Path) -> None:
    began = datetime.now(UTC)
    quiet_from, quiet_to, quiet_end = quiet_window(began)
    project = make_project(tmp_path / "project", quiet_from, quiet_to)
    with processes(tmp_path) as stack:
        server = stack.server().start()
        stack.worker(project, server).start()
        api = stack.api(project, server).start()
        await ready([api], stack)
        key = WriteKeys(store_of(database_url(project))).create("shop")
        client = await connect(server)
        async with httpx.AsyncClient(base_url=api.url, auth=(key, "")) as http:
            traits = {"email": "max@example.com", "first_name": "Max"}
            identify = {"userId": "max", "traits": traits}
            assert (await http.post("/v1/identify", json=identify)).status_code == 200
            signed_up = {"userId": "max", "event": "Signed Up", "messageId": "max-signed-up"}
            assert (await http.post("/v1/track", json=signed_up)).status_code == 200
            # the offer went out: Max leaves the offers topic with the message's own link
            token = await outbox_subject(project, "offer-mail for you")
            assert verify_token(UNSUBSCRIBE_SECRET.encode(), token).topic == "offers"
            async with httpx.AsyncClient(base_url=api.url) as mail_app:  # no key: a mail app
                clicked = await mail_app.post(
                    f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
                )
            assert clicked.status_code == 200, clicked.text
            await asyncio.sleep(4)  # news-2 has met the full cap by now
            ordered = {"userId": "max", "event": "Order Completed", "messageId": "max-order-1"}
            assert (await http.post("/v1/track", json=ordered)).status_code == 200
        results = {j: await result_of(client, j) for j in ("welcome", "offers", "receipt")}
        results["late-news"] = await result_of(client, "late-news")
        ledger = by_template(ledger_of(project))
        outbox = list_messages(project / OUTBOX)

    # the outbox: two marketing emails (the cap), the transactional receipt, the late news
    subjects = sorted(entry.subject for entry in outbox)
    assert subjects == sorted(
        f"{name} for you" for name in ("welcome-mail", "offer-mail", "receipt", "late-news")
    )
    assert {parseaddr(entry.to)[1] for entry in outbox} == {"max@example.com"}

    # the ledger: one row per message, with what became of it and why
    assert {step: row.status for step, row in ledger.items()} == {
        "welcome-mail": "sent",
        "offer-mail": "sent",
        "news-2": "skipped",
        "receipt": "sent",
        "late-news": "sent",
    }, "offer-2 never reached: the offers run ended when Max left the topic"
    assert ledger["news-2"].reason is not None
    assert 'frequency cap "marketing-email-daily"' in ledger["news-2"].reason
    assert ledger["late-news"].attempts >= 2  # asked, deferred, asked again

    # the timelines
    def sends(journey_id: str) -> list[tuple[str, str]]:
        return [(e.kind, e.detail) for e in results[journey_id].timeline if e.channel]

    welcome = sends("welcome")
    assert [kind for kind, _ in welcome] == ["sent", "skipped"]
    assert 'frequency cap "marketing-email-daily" (2 per 24h)' in welcome[1][1]
    assert results["welcome"].outcome.kind == "completed"

    offers = results["offers"].outcome
    assert (offers.kind, offers.reason) == ("exited", "unsubscribed from offers")
    assert [kind for kind, _ in sends("offers")] == ["sent"]

    late = sends("late-news")
    assert [kind for kind, _ in late] == ["deferred", "sent"]
    assert f'quiet hours "test-window" until {quiet_to} UTC' in late[0][1]
    sent_at = next(e.at for e in results["late-news"].timeline if e.kind == "sent")
    assert sent_at >= quiet_end, "sent when the window ended, not before"

    assert [kind for kind, _ in sends("receipt")] == ["sent"], "transactional: never capped"
