"""The sms channel end to end: a journey step ``send: sms`` compiled and checked, run by the real
interpreter on Temporal's time-skipping server, delivered by the real delivery activity through
the Twilio stand-in (the exact request), recorded in the ledger; an opt-out (21610) recorded
and honoured by the policy chain; and the installed ``touchpoint`` previewing, simulating and
testing the fixture shop's SMS journey."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from language.validator import validate
from store.consent import ConsentStore
from store.database import connect
from store.ledger import Ledger
from tests.conftest import FIXTURES
from tests.temporal import event, start_run
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, TwilioStandIn
from workflows.models import Profile, RunResult

SHOP = FIXTURES / "sms-shop"
TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
MAX = Profile(id="max", phone="+49 151 2345 6789", locale="en", traits={"first_name": "Max"})


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as server:
        yield server


def shop_delivery(twilio: TwilioStandIn, tmp_path: Path) -> DeliveryActivities:
    """The real delivery activity for the fixture shop, Twilio pointed at the stand-in."""
    config = validate((), root=SHOP).config
    config = config.model_copy(
        update={"channels": {"sms": {**config.channels["sms"], "base_url": twilio.url}}}
    )
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    return DeliveryActivities(
        config=config,
        ledger=Ledger(engine),
        renderer=Renderer.for_project(SHOP, config),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        environ={"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
        consent=ConsentStore(engine),
    )


async def run_once(
    env: WorkflowEnvironment, delivery: DeliveryActivities, profile: Profile
) -> RunResult:
    from tests.temporal import running_workers

    plan = validate((), root=SHOP).plans["delivery-update"]
    async with running_workers(env.client, delivery.all()) as prefix:
        handle = await start_run(
            env.client,
            plan,
            prefix,
            event("Order Shipped", customer=profile.id, order_id="O-7", carrier="DHL"),
            profile=profile,
            key="O-7",
            workflow_id=f"sms-{uuid.uuid4()}",
        )
        return RunResult.model_validate(await handle.result())


async def test_a_journey_sends_an_sms_through_twilio_and_the_ledger_records_it(
    time_env: WorkflowEnvironment, twilio: TwilioStandIn, tmp_path: Path
) -> None:
    delivery = shop_delivery(twilio, tmp_path)
    result = await run_once(time_env, delivery, MAX)
    shipped, late = (e for e in result.timeline if e.step in ("shipped", "late"))
    assert (shipped.kind, shipped.channel, shipped.to) == ("sent", "sms", "+4915123456789")
    first = twilio.requests[0]
    assert first.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert first.form == {
        "To": "+4915123456789",
        "From": "+4930901820",
        "Body": "Hi Max, your order O-7 is on its way with DHL.",
    }
    assert late.kind == "sent" and len(twilio.requests) == 2  # nobody reported the delivery
    rows = delivery.ledger.list()
    assert {(r.channel, r.status, r.provider) for r in rows} == {("sms", "sent", "twilio")}
    assert all(r.provider_id and r.provider_id.startswith("SM") for r in rows)


async def test_a_number_that_is_not_e164_fails_the_step_without_asking_twilio(
    time_env: WorkflowEnvironment, twilio: TwilioStandIn, tmp_path: Path
) -> None:
    nobody = Profile(id="nobody", phone="call me maybe", locale="en")
    result = await run_once(time_env, shop_delivery(twilio, tmp_path), nobody)
    assert result.outcome.kind == "failed" and result.outcome.step == "shipped"
    assert "invalid phone number" in (result.outcome.error or "")
    assert "call me" not in (result.outcome.error or ""), "no personal data in the error"
    assert twilio.requests == []


async def test_an_opt_out_is_recorded_and_the_next_sms_is_skipped_by_policy(
    time_env: WorkflowEnvironment, twilio: TwilioStandIn, tmp_path: Path
) -> None:
    delivery = shop_delivery(twilio, tmp_path)
    twilio.error(400, 21610, "Attempt to send to unsubscribed recipient")
    failed = await run_once(time_env, delivery, MAX)
    assert failed.outcome.kind == "failed"
    assert "code 21610" in (failed.outcome.error or "")
    assert ConsentStore(delivery.ledger.engine).blocked("max", "sms") == (
        "opted_out (replied STOP (Twilio 21610))"
    )
    again = await run_once(time_env, delivery, MAX)
    shipped = next(e for e in again.timeline if e.step == "shipped")
    assert shipped.kind == "skipped" and "opted_out" in shipped.detail
    assert len(twilio.requests) == 1, "the policy chain, not Twilio, stopped the second one"


def touchpoint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOUCHPOINT, *args, "-C", str(SHOP)], capture_output=True, text=True, timeout=120
    )


def test_the_installed_touchpoint_previews_simulates_and_tests_the_sms_journey(
    tmp_path: Path,
) -> None:
    sample = tmp_path / "max.yaml"
    sample.write_text(
        'id: max\nphone: "+49 151 2345 6789"\nlocale: de\ntraits: {first_name: Max}\n'
        "event: {properties: {order_id: O-7, carrier: DHL}}\n"
    )
    preview = touchpoint("preview", "delivery-update", "shipped", "--profile", str(sample))
    assert preview.returncode == 0, preview.stderr
    assert "Hallo Max, deine Bestellung O-7 ist mit DHL unterwegs." in preview.stdout

    customer = tmp_path / "customer.yaml"
    customer.write_text('id: max\nphone: "+49 151 2345 6789"\nlocale: de\n')
    events = tmp_path / "events.yaml"
    events.write_text('- {at: "+0", event: Order Shipped, properties: {order_id: O-7}}\n')
    simulated = touchpoint(
        "simulate", "delivery-update", "--profile", str(customer), "--events", str(events),
        "--until", "7d",
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    assert "→ sms to +4915123456789 (order-shipped)" in simulated.stdout
    assert "→ sms to +4915123456789 (delivery-late)" in simulated.stdout

    tested = touchpoint("test")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed, 0 failed" in tested.stdout


def test_sms_steps_are_checked_at_validate_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (tmp_path / "touchpoint.yaml").write_text((SHOP / "touchpoint.yaml").read_text())
    (tmp_path / "templates").symlink_to(SHOP / "templates")
    (journeys / "bad.yaml").write_text(
        "id: bad\nname: Bad\ncategory: transactional\ntrigger:\n  event: X\nsteps:\n"
        "  - send: sms\n    template: order-shipped\n    to: support-team\n"
        "  - send: sms\n    template: no-such-template\n"
    )
    report = validate((), root=tmp_path)
    assert [p.format() for p in report.problems] == [
        "journeys/bad.yaml:9:9: steps[0].to: sms goes to the customer's own number; "
        '"to" names a webhook or chat destination (hint: remove "to")',
        'journeys/bad.yaml:11:15: steps[1].template: unknown template "no-such-template" '
        "(hint: create templates/no-such-template/en.txt)",
    ]
