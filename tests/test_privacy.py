"""Privacy by design (issue 16): what a journey never reads does not reach its runs; admin keys;
``touchpoint export`` and ``GET /v1/customers/{id}/export`` hold everything kept about a
customer — on SQLite and PostgreSQL, with runs on the real Temporal dev server, a real worker
(real delivery into the Maildir outbox, the real ledger), the real API and a signed SendGrid
event — and the logs of all of it never name the customer."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.testing import WorkflowEnvironment

from ingestion.api import Api, create_app
from ingestion.router import Routes
from ingestion.service import Ingestion
from language.analysis import event_properties
from language.expressions import parse_expression
from language.validator import validate
from ops.export import Exporter
from store.analytics import Analytics
from store.consent import ConsentStore
from store.database import connect
from store.entries import EntryStore
from store.keys import ADMIN, WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import EXAMPLE_SECRETS, ROOT, Database
from tests.httpstub import HttpStub, Reply
from tests.temporal import event, plan_from
from workflows.analytics import RunEntered
from workflows.models import RunView, customer_hash

CUSTOMER = "erika-7"
EMAIL = "Erika.Mustermann@example.de"
NAME = "Erika Mustermann"
UNREAD = "UNREAD-PROPERTY-VALUE"  # a property no journey reads: it must reach no history


# --- what a journey reads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.properties.order_id == 'x'", {"order_id"}),
        ("event.properties['total'] > 10 and events.answer.properties.score", {"total", "score"}),
        ("event.event == 'x' and event.timestamp", set()),
        ("profile.traits.email_opt_in", set()),
        ("event.properties | length", None),  # the properties whole
        ("event.properties[vars.name]", None),  # a name chosen at run time
        ("event.properties.get('x')", None),
        ("event", None),
        ("events.answer", None),
    ],
)
def test_the_event_properties_an_expression_reads(source: str, expected: set[str] | None) -> None:
    found = event_properties(parse_expression(source), ("event", "events", "profile", "vars"))
    assert found == (None if expected is None else frozenset(expected))


def test_the_compiled_examples_name_the_properties_they_read() -> None:
    """Expressions, lookups and templates (layouts and partials too) together."""
    plans = validate((), root=ROOT).plans
    assert plans["newsletter-welcome"].event_properties == ()
    assert plans["laptop-recommendation"].event_properties == ("categories", "category", "step")
    assert plans["post-purchase-accessories"].event_properties == (
        "categories",
        "order_id",
        "products",
        "score",
    )


def test_runs_get_only_the_properties_of_every_version_of_their_journey() -> None:
    one = plan_from(JOURNEY.format(read="event.properties.a"))
    two = plan_from(JOURNEY.format(read="event.properties.b"))
    whole = plan_from(JOURNEY.format(read="event.properties | length"))
    shop_event = event("Signed Up", a=1, b=2, c=UNREAD)
    assert Routes.of({"j": one}).for_run("j", shop_event).properties == {"a": 1}
    assert Routes.of({"j": two}, [one]).for_run("j", shop_event).properties == {"a": 1, "b": 2}
    assert Routes.of({"j": whole}, [one]).for_run("j", shop_event) is shop_event
    assert one.version != plan_from(JOURNEY.format(read="event.properties.b")).version


JOURNEY = """
id: j
name: J
category: transactional
trigger:
  event: Signed Up
  if: "{read}"
steps:
  - wait: 1d
"""


# --- admin keys ---------------------------------------------------------------------------------


async def test_admin_endpoints_need_an_admin_key(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 't.db'}")
    keys = WriteKeys(engine)
    write_key, admin_key = keys.create("web shop"), keys.create("backend", ADMIN)
    assert admin_key.startswith("tpa_") and keys.source(admin_key) is None
    ProfileStore(engine).upsert(CUSTOMER, {"email": EMAIL, "name": NAME})
    app = create_app(
        Api(
            Ingestion(ProfileStore(engine), ProcessedMessages(engine), _no_route),
            keys,
            export=Exporter(engine, None).export,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        path = f"/v1/customers/{CUSTOMER}/export"
        assert (await http.get(path)).status_code == 401
        unknown = await http.get(path, headers={"Authorization": "Bearer tpa_nothing"})
        assert unknown.status_code == 401
        assert "admin key" in unknown.json()["message"]
        refused = await http.get(path, auth=(write_key, ""))
        assert refused.status_code == 403
        assert refused.json()["message"].startswith("a write key cannot do this")
        answer = await http.get(path, headers={"Authorization": f"Bearer {admin_key}"})
        assert answer.status_code == 200
        assert answer.json()["profile"]["traits"]["name"] == NAME
        assert (await http.get(path, auth=(admin_key, ""))).status_code == 200
        # an admin key is not a write key: it sends no events
        track = {"userId": CUSTOMER, "event": "Signed Up"}
        assert (await http.post("/v1/track", json=track, auth=(admin_key, ""))).status_code == 401


async def _no_route(*_: Any) -> list[Any]:
    return []


# --- the store's part of an export, on both databases -----------------------------------------


async def test_the_export_holds_what_the_store_keeps(database: Database, tmp_path: Path) -> None:
    engine = database.connect()
    profiles = ProfileStore(engine)
    profiles.upsert(CUSTOMER, {"email": EMAIL, "name": NAME, "plan": "gold"}, locale="de")
    profiles.link("anon-1", CUSTOMER)
    ConsentStore(engine).withdraw(CUSTOMER, "one-click")
    Suppressions(engine).add(
        EMAIL, "bounce", detail="550 no such user", source="sendgrid", actor="sendgrid"
    )
    ledger = Ledger(engine)
    for message_id, customer in (("msg-1", CUSTOMER), ("msg-2", "anon-1"), ("other", "max")):
        ledger.claim(message_id, "welcome", "hello", "email", customer_hash(customer))
        ledger.mark(message_id, "sent", provider="maildir", provider_id=f"<{message_id}>")
    entries = EntryStore(engine)
    now = entries_time()
    for journey, subject in (("welcome", CUSTOMER), ("orders", f"{CUSTOMER}\x00O-1")):
        entries.enter(journey, customer_hash(subject), now, once=False, cooldown_seconds=0)
        entries.record_entry(journey, customer_hash(subject), now)

    Analytics(engine).record(
        [
            RunEntered("journey/welcome/abc", "welcome", "v1", customer_hash(CUSTOMER), now),
            RunEntered("journey/welcome/def", "welcome", "v1", customer_hash("max"), now),
        ]
    )

    document = await Exporter(engine, None).export(CUSTOMER)

    assert document["found"] and document["customer_id"] == CUSTOMER
    [recorded] = document["recorded_runs"]
    assert recorded["run"] == "journey/welcome/abc" and recorded["outcome"] is None
    assert document["linked_ids"] == ["anon-1"]
    assert document["profile"]["email"] == EMAIL
    assert document["profile"]["traits"]["plan"] == "gold" and document["profile"]["locale"] == "de"
    assert document["consent"]["marketing"]["status"] == "unsubscribed"
    assert document["consent"]["marketing"]["channels"] == ["email"]
    assert document["consent"]["sms"]["status"] == "not withdrawn"
    [suppression] = document["suppressions"]
    assert suppression["address"] == EMAIL.lower() and suppression["reason"] == "bounce"
    assert [a["action"] for a in suppression["audit"]] == ["added"]
    assert [(m["message_id"], m["status"]) for m in document["messages"]] == [
        ("msg-1", "sent"),
        ("msg-2", "sent"),
    ]
    # a keyed entry is found only through a run's key: without Temporal, only the plain one
    assert [e["journey_id"] for e in document["entries"]] == ["welcome"]
    assert document["runs"] == [] and "no Temporal connection" in document["notes"][0]
    json.dumps(document)  # one JSON document

    nobody = await Exporter(engine, None).export("nobody")
    assert not nobody["found"] and nobody["profile"] is None and nobody["messages"] == []


def entries_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 12, 1, 9, tzinfo=UTC)


# --- end to end on the dev server ---------------------------------------------------------------

HOUR_IN_SECONDS = 1 / 3600  # a waiting hour lasts a second: the runs are still going at export
PRODUCTS = {"products": [{"name": "Aero 14", "price": 1299.0, "currency": "EUR", "url": "u"}]}


@pytest.fixture
def project(tmp_path: Path, stub: HttpStub) -> Path:
    """The example project, its shop API a local stub."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("journeys", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    config = yaml.safe_load((ROOT / "touchpoint.yaml").read_text())
    config["connections"]["shop-api"]["base_url"] = stub.url("/api/")
    caps = config["policies"]["frequency_caps"]  # the story's days pass in seconds here:
    config["policies"]["frequency_caps"] = [c for c in caps if c["per"] != "24h"]  # no daily cap
    (folder / "touchpoint.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    for _ in range(20):
        stub.reply(Reply(200, body=PRODUCTS))
    return folder


@pytest.fixture
async def stack(
    dev_env: WorkflowEnvironment,
    database: Database,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[dict[str, Any]]:
    """A real worker (in this process) and the real API app, on the dev server and ``database``."""
    from ops.api_server import build_api
    from worker import run_worker

    signing_key = ec.generate_private_key(ec.SECP256R1())
    der = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = {
        **EXAMPLE_SECRETS,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_DATABASE_URL": database.url,
        "TOUCHPOINT_QUEUE_PREFIX": f"priv{uuid.uuid4().hex[:6]}-",
        "TOUCHPOINT_TIME_SCALE": str(HOUR_IN_SECONDS),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(der).decode(),
        "TOUCHPOINT_ERASURE_SECRET": "privacy-test-erasure-key",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(project, "all", stop))
    api = await build_api(project)
    engine = database.connect()
    keys = WriteKeys(engine)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(api)), base_url="http://a"
    )
    try:
        yield {
            "http": http,
            "engine": engine,
            "write_key": keys.create("web shop"),
            "admin_key": keys.create("backend", ADMIN),
            "signing_key": signing_key,
            "env": env,
            "client": dev_env.client,
        }
    finally:
        await http.aclose()
        stop.set()
        await asyncio.wait_for(worker, 60)
        api.service.profiles.engine.dispose()  # the API's own engine (the worker disposes its)


@pytest.mark.timeout(600)  # about 30 s; far more on a busy machine
async def test_export_end_to_end_and_no_personal_data_in_logs_or_unread_properties(
    stack: dict[str, Any],
    project: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    customer = f"erika-{uuid.uuid4().hex[:8]}"  # the dev server is shared: runs of other tests
    http, client, ledger = stack["http"], stack["client"], Ledger(stack["engine"])
    auth = (stack["write_key"], "")

    async def track(event_name: str, **properties: Any) -> None:
        body = {"userId": customer, "event": event_name, "properties": properties}
        answer = await http.post("/v1/track", json=body, auth=auth)
        assert answer.status_code == 200, answer.text

    async def sent(template_step: str) -> str:
        deadline = time.monotonic() + 120  # a loaded machine
        while time.monotonic() < deadline:
            for message in ledger.list(customer_hash(customer)):
                if message.step_id == template_step and message.status == "sent":
                    return message.message_id
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {template_step} message was sent")

    traits = {"email": EMAIL, "name": NAME, "email_opt_in": True, "interests": ["laptops"]}
    identify = {"userId": customer, "traits": traits}
    assert (await http.post("/v1/identify", json=identify, auth=auth)).status_code == 200

    await track("Newsletter Subscribed", source="footer", note=UNREAD, name=NAME)
    await sent("welcome")
    await track("Product Category Viewed", category="laptops", referrer=UNREAD, name=NAME)
    picks = await sent("recommend")
    await _wait_until_waiting(stack, customer, "laptop-recommendation", "clicked")
    await _sendgrid_click(stack, picks)
    await track(
        "Order Completed",
        order_id="O-77",
        categories=["monitors"],  # not a laptop: the other runs go on
        products=[{"name": "Monitor 27"}],
        billing_name=NAME,
        billing_email=EMAIL,
        note=UNREAD,
    )
    await track("Order Completed", order_id="O-78", categories=["laptops"], note=UNREAD)
    await track("Order Delivered", order_id="O-78", carrier=UNREAD, signed_by=NAME)
    await sent("setup-guide")

    admin = {"Authorization": f"Bearer {stack['admin_key']}"}
    answer = await http.get(f"/v1/customers/{customer}/export", headers=admin)
    assert answer.status_code == 200, answer.text
    document = answer.json()

    runs = document["runs"]
    assert {run["journey_id"] for run in runs} == {
        "newsletter-welcome",
        "laptop-recommendation",
        "post-purchase-accessories",
    }
    for run in runs:
        assert run["timeline"], run["workflow_id"]
        assert run["events"] and run["events"][0]["customer_id"] == customer
    laptop = next(r for r in runs if r["journey_id"] == "laptop-recommendation")
    assert "email.clicked" in [e["event"] for e in laptop["events"]]
    by_step = {m["step_id"]: m for m in document["messages"]}
    assert {"welcome", "recommend"} <= set(by_step)
    assert [e["event"] for e in by_step["recommend"]["provider_events"]] == ["email.clicked"]
    for message in document["messages"]:
        if message["status"] == "sent" and message["channel"] == "email":
            assert EMAIL.lower() in message["outbox"]["to"].lower()
    assert document["profile"]["traits"]["name"] == NAME
    assert {e["journey_id"] for e in document["entries"]} == {r["journey_id"] for r in runs}

    # minimisation: runs carry only the properties their journey reads
    plans = validate((), root=project).plans
    for run in runs:
        reads = set(plans[run["journey_id"]].event_properties or ())
        for shop_event in run["events"]:
            if not shop_event["message_id"].startswith("sendgrid:"):
                assert set(shop_event["properties"]) <= reads, (run["journey_id"], shop_event)
        history = await client.get_workflow_handle(
            run["workflow_id"], run_id=run["run_id"]
        ).fetch_history()
        assert UNREAD not in history.to_json()

    # the command line gives the same document (its own process: its stderr is read too)
    out = project / "export.json"
    command = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "export", customer, "--out", str(out)],
        cwd=project,
        env={**os.environ, **stack["env"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert command.returncode == 0, command.stderr
    assert "3 run(s)" in command.stderr or "run(s)" in command.stderr
    written = json.loads(out.read_text())
    assert {r["workflow_id"] for r in written["runs"]} == {r["workflow_id"] for r in runs}
    assert written["messages"][0]["message_id"] == document["messages"][0]["message_id"]

    # no log line of any of it names the customer (ids and hashes only)
    printed = capsys.readouterr()
    logs = "\n".join([caplog.text, command.stderr, printed.out, printed.err]).lower()
    assert len(caplog.records) > 0
    for personal in (EMAIL.lower(), NAME.lower(), "mustermann"):
        leaking = {r.name for r in caplog.records if personal in r.getMessage().lower()}
        assert personal not in logs, leaking

    # erasure through the API: an admin key only; then nothing is held, and no log names them
    path = f"/v1/customers/{customer}"
    assert (await http.delete(path)).status_code == 401
    assert (await http.delete(path, auth=auth)).status_code == 403
    caplog.clear()
    erased = await http.delete(path, headers={**admin, "X-Request-Id": "ticket-4711"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased"] is True and erased.json()["request_id"] == "ticket-4711"
    assert erased.json()["runs"] >= 1 and erased.json()["messages"] >= 2
    after = (await http.get(f"/v1/customers/{customer}/export", headers=admin)).json()
    assert after["found"] is False and after["runs"] == [] and after["profile"] is None
    assert after["messages"] == [] and after["entries"] == []
    again = await http.delete(path, headers={**admin, "X-Request-Id": "ticket-4711"})
    assert again.status_code == 200 and again.json()["runs"] == 0, again.text
    served = [r for r in caplog.records if r.name != "httpx"]  # not this test's own client
    assert any(r.name == "touchpoint.privacy" for r in served)
    for personal in (EMAIL.lower(), NAME.lower(), customer):
        assert not [r.getMessage() for r in served if personal in r.getMessage().lower()]


async def _wait_until_waiting(
    stack: dict[str, Any], customer: str, journey: str, step: str
) -> None:
    client = stack["client"]
    query = f"TouchpointJourney = '{journey}' AND TouchpointCustomer = '{customer_hash(customer)}'"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async for run in client.list_workflows(query):
            view = RunView.model_validate(await client.get_workflow_handle(run.id).query("state"))
            if view.current == step:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{journey} never waited at {step}")


async def _sendgrid_click(stack: dict[str, Any], message_id: str) -> None:
    """SendGrid's signed Event Webhook: the customer clicked the picks email."""
    body = json.dumps(
        [
            {
                "email": EMAIL,
                "event": "click",
                "timestamp": int(time.time()),
                "sg_event_id": f"sg-{uuid.uuid4().hex}",
                "url": "https://shop.example/a14",
                "touchpoint_message_id": message_id,
                "journey": "laptop-recommendation",
                "step": "recommend",
            }
        ]
    ).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(
        stack["signing_key"].sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()
    answer = await stack["http"].post(
        "/webhooks/sendgrid",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )
    assert answer.status_code == 200, answer.text
