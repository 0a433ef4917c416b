"""One rule for recipients' email addresses, whatever the provider: a bare addr-spec or a
refusal that names no address. Checked against a real SendGrid stand-in (HTTP), a real SMTP
server (aiosmtpd) and a Maildir on disk, and through a real journey run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.address import InvalidEmailAddress, email_address, mask
from activities.email.maildir import MaildirProvider, list_messages
from activities.email.sendgrid import SendGridProvider
from activities.email.smtp import SmtpProvider
from activities.http import make_client
from activities.messages import OutgoingEmail
from activities.rendering import Renderer
from config.project import SendGridSettings, SmtpSettings
from language.validator import validate
from store.database import connect
from store.ledger import Ledger
from store.suppressions import Suppressions
from tests.conftest import ROOT
from tests.net import free_port
from tests.sendgrid_standin import SendGridStandIn
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import Profile, RunResult

HOSTILE = [
    pytest.param("Evil<victim@example.com>", id="display-name"),
    pytest.param("Evil <victim@example.com>", id="display-name-spaced"),
    pytest.param('"Evil" <victim@example.com>', id="quoted-display-name"),
    pytest.param("<victim@example.com>", id="angle-brackets"),
    pytest.param("victim@example.com (Evil)", id="comment"),
    pytest.param("victim(x)@example.com", id="comment-inside"),
    pytest.param("shop@example.com, victim@example.com", id="two-addresses"),
    pytest.param("shop@example.com;victim@example.com", id="two-addresses-semicolon"),
    pytest.param("victim@example.com\r\nBcc: all@example.com", id="header-injection"),
    pytest.param("victim@example.com\n", id="trailing-newline"),
    pytest.param("vic\x00tim@example.com", id="nul"),
    pytest.param("vic\u200btim@example.com", id="zero-width-space"),
    pytest.param("victim@example.com\u202e", id="bidi-override"),
    pytest.param('"victim"@example.com', id="quoted-local-part"),
    pytest.param("victim@[192.0.2.1]", id="address-literal"),
    pytest.param("victim@@example.com", id="two-at"),
    pytest.param("group: victim@example.com;", id="group"),
    pytest.param("victim", id="no-at"),
    pytest.param("victim@localhost", id="no-dot"),
    pytest.param("victim@example.com.", id="trailing-dot"),
    pytest.param("vic..tim@example.com", id="double-dot"),
    pytest.param("müller@example.com", id="non-ascii-local-part"),
    pytest.param("victim@ｅxample.com", id="full-width-letter"),
    pytest.param("victim@exa mple.com", id="space"),
    pytest.param("v" * 65 + "@example.com", id="local-part-too-long"),
    pytest.param("v@" + ".".join(["d" * 63] * 4) + ".com", id="too-long"),
]

VALID = [
    ("max@example.com", "max@example.com"),
    ("  max@example.com\t", "max@example.com"),  # surrounding spaces and tabs are dropped
    ("o'brien+news@mail.example.co.uk", "o'brien+news@mail.example.co.uk"),
    ("a.b-c_d@sub-domain.example", "a.b-c_d@sub-domain.example"),
    ("max@bücher.de", "max@xn--bcher-kva.de"),  # IDN: sent in ASCII form
    ("max@BÜCHER.de", "max@xn--bcher-kva.de"),
    ("max@xn--bcher-kva.de", "max@xn--bcher-kva.de"),
    ("m@" + ".".join(["d" * 63] * 3) + "." + "d" * 56 + ".com", None),  # exactly 254
]


def email_to(to: str) -> OutgoingEmail:
    return OutgoingEmail(
        message_id="msg_addresses_1",
        to=to,
        from_email="news@shop.example",
        from_name="Shop",
        subject="Hello",
        text="Hello\n",
        html="<p>Hello</p>",
        marketing=False,
    )


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_a_bare_address_is_accepted(text: str, expected: str | None) -> None:
    sent = email_address(text)
    assert sent == (expected or text)
    assert len(sent) <= 254


def test_the_length_limit_is_254_as_sent() -> None:
    fits = "m@" + ".".join(["d" * 63] * 3) + "." + "d" * 56 + ".com"
    assert len(fits) == 254 and email_address(fits) == fits
    with pytest.raises(InvalidEmailAddress, match="longer than 254 characters"):
        email_address("mm" + fits[1:])


@pytest.mark.parametrize("text", HOSTILE)
def test_anything_but_a_bare_address_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(InvalidEmailAddress) as caught:
        email_address(text)
    message = str(caught.value)
    assert message.startswith("invalid email address")
    assert "victim" not in message and "\n" not in message and "\r" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Evil<victim@example.com>",
            "invalid email address E…@example.com>: give the bare address (name@example.com): "
            "no display name, angle brackets, comments or quotes",
        ),
        ("a@x.com, b@y.com", "invalid email address a…@y.com: give one address, not a list"),
        (
            "a@x.com\r\nBcc: b@y.com",
            "invalid email address a…@y.com: it contains a line break or a control character",
        ),
        ("max", "invalid email address m…: it has no @"),
        ("", "invalid email address: it is empty"),
        (None, "invalid email address: expected text"),
    ],
)
def test_the_reason_is_worded_for_people(text: Any, message: str) -> None:
    with pytest.raises(InvalidEmailAddress) as caught:
        email_address(text)
    assert str(caught.value) == message


def test_the_mask_shows_the_first_letter_and_the_domain() -> None:
    assert mask("max.mustermann@example.com") == "m…@example.com"
    assert mask("max") == "m…"
    assert mask("a\nb@x.com") == "a…@x.com"
    assert mask("x@a\nb") == "x…@a\\u000ab"


# --- every provider: the same refusals, nothing handed over -------------------------------------


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[SendGridStandIn]:
    with SendGridStandIn() as server:
        yield server


class Collector:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Collector, int]]:
    collector, port = Collector(), free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


def providers(sendgrid: SendGridStandIn, smtp: tuple[Collector, int], tmp_path: Path) -> list[Any]:
    sendgrid.reset()
    smtp[0].envelopes.clear()
    settings = SmtpSettings(host="127.0.0.1", port=smtp[1], security="none", timeout="2s")
    return [
        SendGridProvider(SendGridSettings(host=sendgrid.url, timeout="2s"), "SG.key"),
        SmtpProvider(settings),
        MaildirProvider(tmp_path / "outbox"),
    ]


@pytest.mark.parametrize("text", HOSTILE)
async def test_no_provider_is_handed_a_hostile_address(
    sendgrid: SendGridStandIn,
    smtp: tuple[Collector, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    refusals = []
    for provider in providers(sendgrid, smtp, tmp_path):
        with pytest.raises(ApplicationError) as caught:
            await provider.send(email_to(text))
        error = caught.value
        assert (error.type, error.non_retryable, error.next_retry_delay) == (
            "RecipientUnreachable",
            True,
            None,
        )
        assert "victim" not in error.message
        refusals.append(error.message)
    assert len(set(refusals)) == 1, "SendGrid, SMTP and Maildir refuse it in the same words"
    assert refusals[0].startswith("not sent: invalid email address")
    assert sendgrid.requests == [] and smtp[0].envelopes == []
    assert list_messages(tmp_path / "outbox") == []


async def test_every_provider_sends_an_international_domain_in_ascii(
    sendgrid: SendGridStandIn,
    smtp: tuple[Collector, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for provider in providers(sendgrid, smtp, tmp_path):
        await provider.send(email_to("Max@Bücher.de"))
    [request] = sendgrid.requests
    assert request.json["personalizations"] == [{"to": [{"email": "Max@xn--bcher-kva.de"}]}]
    [envelope] = smtp[0].envelopes
    assert envelope.rcpt_tos == ["Max@xn--bcher-kva.de"]
    [stored] = list_messages(tmp_path / "outbox")
    assert stored.to == "Max@xn--bcher-kva.de"


# --- through a journey: the step fails as a refusal, the history holds no address -------------

TRANSACTIONAL = """
id: order-confirmation
name: Order confirmation
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: laptop-setup
"""


async def test_a_hostile_address_in_a_profile_never_reaches_sendgrid(
    time_env: WorkflowEnvironment,
    sendgrid: SendGridStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sendgrid.reset()
    config = validate((), root=ROOT).config
    activities = DeliveryActivities(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=Renderer(ROOT / "templates", config.defaults.locale),
        email=SendGridProvider(SendGridSettings(host=sendgrid.url, timeout="2s"), "SG.key"),
        http=make_client(),
    )
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan_from(TRANSACTIONAL),
            prefix,
            event("Order Completed", order_id="O-1", products=[]),
            profile=Profile(id="c", email="Evil<victim@example.com>"),
        )
        result = RunResult.model_validate(await handle.result())
    assert (result.outcome.kind, result.outcome.step) == ("failed", "confirm")
    assert result.outcome.error == (
        "RecipientUnreachable: not sent: invalid email address E…@example.com>: give the bare "
        "address (name@example.com): no display name, angle brackets, comments or quotes"
    )
    assert "victim" not in str(result)
    assert sendgrid.requests == []
    [row] = activities.ledger.list()
    assert row.status == "failed" and "victim" not in (row.reason or "")


def test_a_suppressed_international_address_is_recognised_in_either_form(tmp_path: Path) -> None:
    from activities.policies import SuppressedAddress

    suppressions = Suppressions(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
    suppressions.add("max@xn--bcher-kva.de", "bounce", source="sendgrid", actor="sendgrid")
    policy = SuppressedAddress(suppressions)

    message = SimpleNamespace(recipient="max@bücher.de", channel=SimpleNamespace(recipient="email"))
    decision = policy.decide(message)  # type: ignore[arg-type]
    assert decision is not None and decision.action == "skip"
