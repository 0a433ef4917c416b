"""Customer data in a chat message is escaped for its platform; the template's own formatting
is not. The chat send activity renders a real template and posts to a local HTTP server
standing in for Slack, Teams and Telegram; the tests read the exact body it received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.chat import WORD_JOINER, slack_escape, teams_escape, telegram_escape
from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from config.project import (
    ProjectConfig,
    SlackDestination,
    TeamsDestination,
    TelegramDestination,
)
from store.database import connect
from store.ledger import Ledger
from tests.httpstub import HttpStub, Reply
from workflows.models import Profile, SendRequest, SendResult

WJ = WORD_JOINER
TOKEN = "123456789:AAEhBOweik9ai2o4-TelegramSecretToken_xyz"

# What the marketer wrote: Slack link syntax, Markdown bold, a literal "<", "&" and "@".
TEMPLATE = (
    "*Detractor* for {{ profile.traits.name }}: "
    "<https://admin.shop.example/orders|open the order> & ask @support-lead\n"
    "Comment: {{ event.properties.comment }}\n"
    "Score {{ vars.score }} < 7 · **{{ profile.traits.company }}**\n"
)
HOSTILE = {
    "name": "<!channel>",
    "comment": "<https://evil.example|click here> & [click](https://evil.example) @everyone",
    "company": "&lt;!here&gt; (Acme)",
}


def project(tmp_path: Path, stub: HttpStub) -> tuple[DeliveryActivities, Path]:
    templates = tmp_path / "templates"
    (templates / "alert").mkdir(parents=True)
    (templates / "alert" / "en.md").write_text(TEMPLATE, encoding="utf-8")
    config = ProjectConfig(
        destinations={
            "slack-team": SlackDestination(type="slack", url=stub.url("/slack")),
            "teams-team": TeamsDestination(type="teams", url=stub.url("/teams")),
            "telegram-team": TelegramDestination(
                type="telegram", bot_token=TOKEN, chat_id="-100123"
            ),
        }
    )
    activities = DeliveryActivities(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=Renderer(templates, "en"),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        telegram_api=stub.url("/telegram"),
    )
    return activities, templates


def alert(destination: str, traits: dict[str, Any], comment: str) -> SendRequest:
    return SendRequest(
        message_id=f"msg-{destination}",
        journey_id="detractors",
        journey_version="v1",
        category="transactional",
        step_id="alert",
        channel="chat",
        template="alert",
        destination=destination,
        customer_id="max-1",
        profile=Profile(id="max-1", traits=traits),
        context={
            "event": {"event": "Survey Answered", "properties": {"comment": comment}},
            "vars": {"score": 3},
        },
    )


async def send(activities: DeliveryActivities, request: SendRequest) -> SendResult:
    result: SendResult = await ActivityEnvironment().run(activities.sends["chat"], request)
    return result


def hostile(destination: str) -> SendRequest:
    traits = {"name": HOSTILE["name"], "company": HOSTILE["company"]}
    return alert(destination, traits, HOSTILE["comment"])


async def test_slack_gets_data_escaped_and_the_templates_markup_as_written(
    stub: HttpStub, tmp_path: Path
) -> None:
    activities, _ = project(tmp_path, stub)
    stub.reply(Reply(200, body="ok"))
    await send(activities, hostile("slack-team"))
    [request] = stub.requests
    assert request.path == "/slack"
    assert request.json() == {
        "text": "*Detractor* for &lt;!channel&gt;: "
        "<https://admin.shop.example/orders|open the order> & ask @support-lead\n"
        "Comment: &lt;https://evil.example|click here&gt; &amp; [click](https://evil.example) "
        "@everyone\n"
        "Score 3 < 7 · **&amp;lt;!here&amp;gt; (Acme)**\n"
    }
    text = request.json()["text"]
    assert "<!channel>" not in text and "<https://evil" not in text and "<!here>" not in text


async def test_telegram_gets_plain_text_with_no_mention_from_data(
    stub: HttpStub, tmp_path: Path
) -> None:
    activities, _ = project(tmp_path, stub)
    stub.reply(Reply(200, body={"ok": True, "result": {"message_id": 7}}))
    await send(activities, hostile("telegram-team"))
    [request] = stub.requests
    assert request.path == f"/telegram/bot{TOKEN}/sendMessage"
    assert request.json() == {
        "chat_id": "-100123",
        "text": "*Detractor* for <!channel>: "
        "<https://admin.shop.example/orders|open the order> & ask @support-lead\n"
        "Comment: <https://evil.example|click here> & [click](https://evil.example) "
        f"@{WJ}everyone\n"
        "Score 3 < 7 · **&lt;!here&gt; (Acme)**\n",
    }  # no parse_mode: Telegram reads none of it as markup


async def test_teams_gets_no_markdown_link_from_data(stub: HttpStub, tmp_path: Path) -> None:
    activities, _ = project(tmp_path, stub)
    stub.reply(Reply(202))
    await send(activities, hostile("teams-team"))
    [request] = stub.requests
    [block] = request.json()["attachments"][0]["content"]["body"]
    assert block == {
        "type": "TextBlock",
        "text": "*Detractor* for <!channel>: "
        "<https://admin.shop.example/orders|open the order> & ask @support-lead\n"
        "Comment: <https://evil.example|click here> & "
        f"[click]{WJ}{WJ}(https://evil.example) @everyone\n"
        f"Score 3 < 7 · **&lt;!here&gt; {WJ}(Acme)**\n",
        "wrap": True,
    }
    assert "](" not in block["text"].split("Comment:")[1]


async def test_ordinary_data_reads_the_same_on_every_platform(
    stub: HttpStub, tmp_path: Path
) -> None:
    activities, _ = project(tmp_path, stub)
    stub.reply(Reply(200, body="ok"), Reply(202), Reply(200, body={"ok": True, "result": {}}))
    request = alert("slack-team", {"name": "Max Müller", "company": "Acme"}, "Late, max@x.de")
    for destination in ("slack-team", "teams-team", "telegram-team"):
        update = {"destination": destination, "message_id": f"msg-{destination}"}
        await send(activities, request.model_copy(update=update))
    slack, teams, telegram = (r.json() for r in stub.requests)
    expected = (
        "*Detractor* for Max Müller: <https://admin.shop.example/orders|open the order> & ask "
        "@support-lead\nComment: Late, max@x.de\nScore 3 < 7 · **Acme**\n"
    )
    assert slack["text"] == expected
    assert teams["attachments"][0]["content"]["body"][0]["text"] == expected
    assert telegram["text"] == expected


async def test_safe_prints_a_value_as_it_is(stub: HttpStub, tmp_path: Path) -> None:
    activities, templates = project(tmp_path, stub)
    (templates / "alert" / "en.md").write_text(
        "{% set link %}<https://shop.example/o/{{ vars.order }}|order>{% endset %}"
        "{{ link | safe }} {{ link }}\n",
        encoding="utf-8",
    )
    stub.reply(Reply(200, body="ok"))
    request = alert("slack-team", {}, "")
    request.context["vars"] = {"order": "<!channel>"}
    await send(activities, request)
    assert stub.requests[0].json()["text"] == (
        "<https://shop.example/o/&lt;!channel&gt;|order> "
        "&lt;https://shop.example/o/&amp;lt;!channel&amp;gt;|order&gt;\n"
    )


def test_email_and_sms_templates_are_not_chat_escaped(tmp_path: Path) -> None:
    """Only chat passes an escape: the same value prints unchanged elsewhere."""
    templates = tmp_path / "templates"
    (templates / "note").mkdir(parents=True)
    (templates / "note" / "en.txt").write_text("Hi {{ profile.traits.name }}\n")
    renderer = Renderer(templates, "en")
    request = SendRequest(
        message_id="m",
        journey_id="j",
        journey_version="v1",
        category="transactional",
        step_id="s",
        channel="sms",
        template="note",
        customer_id="c",
        profile=Profile(id="c", traits={"name": "<b>&@you"}),
    )
    assert renderer.render(request).text == "Hi <b>&@you\n"


@pytest.mark.parametrize(
    ("value", "slack", "telegram", "teams"),
    [
        ("<!channel>", "&lt;!channel&gt;", "<!channel>", "<!channel>"),
        ("<@U123|boss>", "&lt;@U123|boss&gt;", f"<@{WJ}U123|boss>", "<@U123|boss>"),
        ("a & b", "a &amp; b", "a & b", "a & b"),
        ("@here @channel", "@here @channel", f"@{WJ}here @{WJ}channel", "@here @channel"),
        ("max@example.com", "max@example.com", "max@example.com", "max@example.com"),
        ("[x](y)", "[x](y)", "[x](y)", f"[x]{WJ}{WJ}(y)"),
        (42, "42", "42", "42"),
    ],
)
def test_each_platforms_escape(value: Any, slack: str, telegram: str, teams: str) -> None:
    assert (slack_escape(value), telegram_escape(value), teams_escape(value)) == (
        slack,
        telegram,
        teams,
    )
