"""Real delivery inside real journeys: the time-skipping server runs the example journey, the
activities render the real templates and deliver to a real Maildir, a local webhook receiver
(signatures checked with the independent ``standardwebhooks`` package), a Slack stand-in and a
shop-API stand-in; the ledger keeps every message exactly once."""

from __future__ import annotations

import base64
import logging
import mailbox
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from config.project import ProjectConfig
from language.validator import validate
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT
from tests.httpstub import HttpStub, Reply
from tests.temporal import event, running_workers, start_run
from workflows.models import Profile, RunResult, RunView, SendRequest, SendResult

SECRET = "whsec_" + base64.b64encode(b"touchpoint-test-secret-0123456789").decode()
PRODUCTS = {
    "products": [
        {
            "name": "Aero 14",
            "price": 1299,
            "currency": "EUR",
            "url": "https://shop.example/a14",
            "image_url": "https://shop.example/a.png",
            "highlights": ["14 inch"],
        }
    ]
}


def project_config(stub: HttpStub) -> ProjectConfig:
    config = validate((), root=ROOT).config
    destinations = dict(config.destinations)
    destinations["crm"] = destinations["crm"].model_copy(update={"url": stub.url("/crm")})
    connections = {
        "shop-api": config.connections["shop-api"].model_copy(update={"base_url": stub.url("/api")})
    }
    return config.model_copy(update={"destinations": destinations, "connections": connections})


def delivery(
    stub: HttpStub, tmp_path: Path, cls: type[DeliveryActivities] = DeliveryActivities
) -> DeliveryActivities:
    config = project_config(stub)
    return cls(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=Renderer(ROOT / "templates", config.defaults.locale),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"unsubscribe-secret",
        environ={
            "SLACK_SUPPORT_WEBHOOK_URL": stub.url("/slack"),
            "CRM_WEBHOOK_SECRET": SECRET,
            "SHOP_API_TOKEN": "shop-token",
        },
    )


async def until_step(env: WorkflowEnvironment, handle: WorkflowHandle, step: str) -> None:
    """Skip time until the run waits at ``step`` (polling alone does not move the clock)."""
    for _ in range(400):
        view = RunView.model_validate(await handle.query("state"))
        if view.current == step:
            return
        assert view.outcome is None, (view.outcome, view.timeline)
        await env.sleep(timedelta(hours=3))
    raise AssertionError(step)


def outbox(tmp_path: Path) -> list[Any]:
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    return sorted((message_from_bytes(m.as_bytes()) for m in box), key=lambda m: m["Date"])


async def test_the_detractor_path_delivers_every_channel(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    plan = validate((), root=ROOT).plans["post-purchase-accessories"]
    stub.reply(Reply(200, body=PRODUCTS), Reply(200, body="ok"), Reply(204))
    activities = delivery(stub, tmp_path)
    profile = Profile(
        id="max-1",
        email="max@example.com",
        locale="de",
        timezone="Europe/Berlin",
        traits={"first_name": "Max"},
    )
    async with running_workers(time_env.client, activities.all()) as prefix:
        trigger = event(
            "Order Completed",
            customer="max-1",
            order_id="O-1",
            categories=["laptops"],
            products=[{"name": "Aero 14", "category": "laptops"}],
        )
        handle = await start_run(time_env.client, plan, prefix, trigger, profile=profile, key="O-1")
        await handle.signal("event", event("Order Delivered", customer="max-1", order_id="O-1"))
        await until_step(time_env, handle, "answer")
        await handle.signal(
            "event", event("Survey Answered", customer="max-1", order_id="O-1", score=3)
        )
        result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "completed"

    mails = outbox(tmp_path)
    assert [m["X-Touchpoint-Message-Id"] is not None for m in mails] == [True] * 4
    for mail in mails:
        assert mail.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in mail.get_payload()] == ["text/plain", "text/html"]
        assert mail["To"] == "max@example.com"
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "<http://localhost:8000/unsubscribe/" in mail["List-Unsubscribe"]
    [offer_id] = [e.message_id for e in result.timeline if e.step == "accessory-offer"]
    [offer] = [m for m in mails if m["X-Touchpoint-Message-Id"] == offer_id]
    html = offer.get_payload()[1].get_payload(decode=True).decode()
    assert "1.299,00" in html, "German prices in a German email"

    [lookup, slack, crm] = stub.requests
    assert lookup.path == "/api/orders/O-1/accessories"
    assert lookup.headers["authorization"] == "Bearer shop-token"
    assert slack.path == "/slack" and "O-1" in slack.json()["text"]
    assert "max@example.com" not in slack.body.decode(), "no personal data in chat"
    payload = Webhook(SECRET).verify(crm.body, crm.headers)
    assert (
        payload["data"]["score"] == 3
        and crm.headers["idempotency-key"] == crm.headers["webhook-id"]
    )

    rows = activities.ledger.list()
    assert len(rows) == 6 and {r.status for r in rows} == {"sent"}
    assert {r.message_id for r in rows} == {e.message_id for e in result.timeline if e.message_id}


class DiesAfterTheProviderAccepted(DeliveryActivities):
    """The provider took the email, then the worker died before the activity completed."""

    async def _deliver(self, request: SendRequest) -> SendResult:
        result = await super()._deliver(request)
        if request.channel == "email" and activity.info().attempt == 1:
            raise RuntimeError("worker died after the provider accepted the message")
        return result


async def test_the_ledger_prevents_a_duplicate_after_a_crash(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    plan = validate((), root=ROOT).plans["newsletter-welcome"]
    activities = delivery(stub, tmp_path, DiesAfterTheProviderAccepted)
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Newsletter Subscribed"),
            profile=Profile(id="erika", email="erika@example.com"),
        )
        await until_step(time_env, handle, "wait-2")
        await handle.signal("cancel", {"reason": "test done"})
        result = RunResult.model_validate(await handle.result())
    [welcome] = [e for e in result.timeline if e.step == "welcome"]
    assert welcome.kind == "sent", "sent once, by the attempt that died"
    assert welcome.detail == "email: newsletter-welcome (sent by an earlier attempt)"
    assert len(outbox(tmp_path)) == 1
    [row] = activities.ledger.list()
    assert (row.status, row.attempts) == ("sent", 1)


async def test_a_customer_without_email_is_skipped_not_failed(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    plan = validate((), root=ROOT).plans["newsletter-welcome"]
    activities = delivery(stub, tmp_path)
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Newsletter Subscribed"),
            profile=Profile(id="no-mail"),
        )
        await until_step(time_env, handle, "wait-2")
        await time_env.sleep(timedelta(seconds=1))
        await handle.signal("cancel", {"reason": "test done"})
        result = RunResult.model_validate(await handle.result())
    assert result.timeline[0].kind == "skipped"
    [row] = activities.ledger.list()
    assert (row.status, row.reason) == ("skipped", "the customer has no email address")


async def _welcome_through(
    time_env: WorkflowEnvironment, activities: DeliveryActivities
) -> RunResult:
    plan = validate((), root=ROOT).plans["newsletter-welcome"]
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Newsletter Subscribed"),
            profile=Profile(id="jonas", email="jonas@example.com", locale="de"),
        )
        await until_step(time_env, handle, "wait-2")
        await handle.signal("cancel", {"reason": "test done"})
        return RunResult.model_validate(await handle.result())


async def test_the_welcome_email_goes_through_sendgrid(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    from activities.email.sendgrid import SendGridProvider
    from config.project import SendGridSettings
    from tests.sendgrid_standin import SendGridStandIn

    with SendGridStandIn() as sendgrid:
        sendgrid.answer(202, headers={"X-Message-Id": "sg-123"})
        activities = delivery(stub, tmp_path)
        activities.email = SendGridProvider(
            SendGridSettings(host=sendgrid.url, timeout="5s"), "SG.test"
        )
        result = await _welcome_through(time_env, activities)
        [request] = sendgrid.requests
    body = request.json
    assert request.path == "/v3/mail/send" and request.headers["Authorization"] == "Bearer SG.test"
    assert body["personalizations"][0]["to"] == [{"email": "jonas@example.com"}]
    assert body["custom_args"]["touchpoint_message_id"] == result.timeline[0].message_id
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "List-Unsubscribe" in body["headers"]
    [row] = activities.ledger.list()
    assert (row.status, row.provider, row.provider_id) == ("sent", "sendgrid", "sg-123")


async def test_the_welcome_email_goes_over_smtp(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    from activities.email.smtp import SmtpProvider
    from config.project import SmtpSettings
    from tests.net import free_port
    from tests.test_email import Collector

    collector, port = Collector(), free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        activities = delivery(stub, tmp_path)
        activities.email = SmtpProvider(
            SmtpSettings(host="127.0.0.1", port=port, security="none", timeout="5s"), None, None
        )
        await _welcome_through(time_env, activities)
    finally:
        controller.stop()
    [envelope] = collector.envelopes
    message = message_from_bytes(envelope.content)
    assert envelope.rcpt_tos == ["jonas@example.com"]
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


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


async def test_transactional_email_has_no_unsubscribe_headers(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    from tests.temporal import plan_from

    activities = delivery(stub, tmp_path)
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan_from(TRANSACTIONAL),
            prefix,
            event("Order Completed", order_id="O-9", products=[]),
            profile=Profile(id="c", email="c@example.com"),
        )
        result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "completed"
    [mail] = outbox(tmp_path)
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None


async def test_provider_faults_as_the_journey_sees_them(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    """SendGrid rate-limits, then accepts: sent once, after the reset. SendGrid refuses the
    address: the run fails at that step with SendGrid's own words."""
    from activities.email.sendgrid import SendGridProvider
    from config.project import SendGridSettings
    from tests.sendgrid_standin import SendGridStandIn
    from tests.temporal import plan_from

    with SendGridStandIn() as sendgrid:
        reset = int(await_time(await time_env.get_current_time()) + 120)
        sendgrid.answer(429, headers={"X-RateLimit-Reset": str(reset)})
        sendgrid.answer(202, headers={"X-Message-Id": "sg-2"})
        sendgrid.answer(
            400,
            body={
                "errors": [
                    {
                        "message": "Does not contain a valid address.",
                        "field": "personalizations.0.to.0.email",
                    }
                ]
            },
        )
        activities = delivery(stub, tmp_path)
        activities.email = SendGridProvider(
            SendGridSettings(host=sendgrid.url, timeout="5s"), "SG.k"
        )
        async with running_workers(time_env.client, activities.all()) as prefix:
            ok = await start_run(
                time_env.client,
                plan_from(TRANSACTIONAL),
                prefix,
                event("Order Completed", order_id="O-1", products=[]),
                profile=Profile(id="a", email="a@example.com"),
            )
            sent = RunResult.model_validate(await ok.result())
            bad = await start_run(
                time_env.client,
                plan_from(TRANSACTIONAL),
                prefix,
                event("Order Completed", order_id="O-1", products=[]),
                profile=Profile(id="b", email="b@example.com"),
            )
            failed = RunResult.model_validate(await bad.result())
            garbage = await start_run(
                time_env.client,
                plan_from(TRANSACTIONAL),
                prefix,
                event("Order Completed", order_id="O-1", products=[]),
                profile=Profile(id="c", email="not-an-address"),
            )
            invalid = RunResult.model_validate(await garbage.result())
        attempts = len(sendgrid.requests)
    assert sent.outcome.kind == "completed", sent.outcome
    assert sent.timeline[0].kind == "sent"
    assert failed.outcome.kind == "failed" and failed.outcome.step == "confirm"
    assert (
        failed.outcome.error is not None
        and "Does not contain a valid address" in failed.outcome.error
    )
    assert attempts == 3, "429 retried once, 400 never retried"
    assert "not-an-address" not in str(invalid.timeline), "no personal data in history"
    assert invalid.outcome.error == (
        "RecipientUnreachable: not sent: invalid email address n…: it has no @"
    )
    statuses = sorted((row.status, row.provider_id) for row in activities.ledger.list())
    assert statuses == [("failed", None), ("failed", None), ("sent", "sg-2")]


def await_time(now: object) -> float:
    from datetime import datetime

    assert isinstance(now, datetime)
    return now.timestamp()


async def test_an_expected_retry_is_one_warning_line_without_a_traceback(
    time_env: WorkflowEnvironment,
    stub: HttpStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SendGrid rate-limits once: the worker says so in one line; the SDK's "Completing
    activity as failed" warning with its traceback is for failures nobody expected."""
    from activities.email.sendgrid import SendGridProvider
    from config.project import SendGridSettings
    from tests.sendgrid_standin import SendGridStandIn
    from tests.temporal import plan_from

    caplog.set_level(logging.INFO)
    with SendGridStandIn() as sendgrid:
        sendgrid.answer(429, headers={"Retry-After": "30"})
        sendgrid.answer(202, headers={"X-Message-Id": "sg-1"})
        activities = delivery(stub, tmp_path)
        activities.email = SendGridProvider(
            SendGridSettings(host=sendgrid.url, timeout="5s"), "SG.k"
        )
        async with running_workers(time_env.client, activities.all()) as prefix:
            handle = await start_run(
                time_env.client,
                plan_from(TRANSACTIONAL),
                prefix,
                event("Order Completed", order_id="O-1", products=[]),
                profile=Profile(id="a", email="a@example.com"),
            )
            result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "completed"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage(), r.exc_info) for r in warnings] == [
        (
            "touchpoint.worker",
            f"send_email attempt 1 for {handle.id} will be retried in 30 s: RateLimited: "
            "rate limited: Too Many Requests",
            None,
        )
    ]


def test_in_flight_and_provider_retries_are_benign() -> None:
    from temporalio.exceptions import ApplicationErrorCategory

    from activities.errors import from_status, permanent, retryable

    assert retryable("another attempt is sending this message", "InFlight").category == (
        ApplicationErrorCategory.BENIGN
    )
    assert from_status(503, "down").category == ApplicationErrorCategory.BENIGN
    assert permanent("no").category == ApplicationErrorCategory.UNSPECIFIED
