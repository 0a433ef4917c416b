"""End to end on the real Temporal dev server: a real worker process, events through the router,
the three example journeys (a day lasts a second), search attributes, races and fan-out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from config.settings import load_settings
from ingestion.router import Router
from language.validator import validate
from ops.workers import worker_options
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from tests import corpus
from tests.conftest import EXAMPLE_SECRETS, ROOT
from tests.net import free_port
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import Profile, RunResult, RunSettings, RunView
from workflows.search import JOURNEY_ID, JOURNEY_OUTCOME

DAY_IN_SECONDS = 1 / 86_400
STORIES = {  # what the example runs of the end-to-end test show, for the replay corpus
    "whole-series": "A subscriber gets the whole welcome series: welcome, recommendations, "
    "and the incentive of the split path they land on",
    "clicked-and-invited-to-the-store": "A customer viewed laptops, got three picks from the "
    "shop's API, clicked, and was invited to the store on the next opening day",
    "bought-a-laptop-goal": "A customer viewed laptops, got three picks, and bought a laptop "
    "while the run waited for a click: the goal converts the run",
    "detractor-six-messages": "A laptop is delivered; setup guide, accessory offer (after a "
    "wait_until five days after delivery), survey; a detractor score alerts support, tells "
    "the CRM and apologises: six messages",
}
LOOKUPS = {
    "shop-api": {
        "products": [
            {
                "name": "Aero 14",
                "price": 1299.0,
                "currency": "EUR",
                "url": "https://shop.example/a14",
                "image_url": "https://shop.example/a14.png",
                "highlights": ["14 inch", "1.2 kg"],
            },
            {
                "name": "Work 15",
                "price": 999.0,
                "currency": "EUR",
                "url": "https://shop.example/w15",
                "image_url": "https://shop.example/w15.png",
                "highlights": ["15 inch"],
            },
        ]
    },
}


@pytest.fixture
def worker_process(dev_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``python worker.py`` in its own process, against the dev server."""
    prefix = f"e2e{uuid.uuid4().hex[:6]}-"
    metrics_port = free_port()
    record = tmp_path / "sent.jsonl"
    fixtures = tmp_path / "lookups.json"
    fixtures.write_text(json.dumps(LOOKUPS))
    env = {
        **os.environ,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_QUEUE_PREFIX": prefix,
        "TOUCHPOINT_RECORD_FILE": str(record),
        "TOUCHPOINT_LOOKUP_FIXTURES": str(fixtures),
        "TOUCHPOINT_TIME_SCALE": str(DAY_IN_SECONDS),
        "TOUCHPOINT_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        # the store the commands of a test share with the worker (its analytics: runs list)
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path}/touchpoint.db",
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--project", str(ROOT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    assert "touchpoint worker ready" in ready, (tmp_path / "worker.log").read_text()
    yield {
        "process": process,
        "prefix": prefix,
        "record": record,
        "metrics_port": metrics_port,
        "env": env,
    }
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()
    log.close()


def recorded(record: Path, customer: str, journey: str) -> list[str]:
    if not record.exists():
        return []
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return [
        line["template"]
        for line in lines
        if line["customer_id"] == customer and line["journey_id"] == journey
    ]


async def wait_for_step(client: Client, workflow_id: str | None, step: str) -> None:
    assert workflow_id is not None
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        view = RunView.model_validate(await handle.query("state"))
        if view.current == step or view.outcome is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never reached {step}")


async def outcome_of(client: Client, workflow_id: str | None) -> RunResult:
    assert workflow_id is not None
    result = await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 120)
    return RunResult.model_validate(result)


@pytest.mark.records_history
async def test_the_three_examples_end_to_end(
    dev_env: WorkflowEnvironment, worker_process: dict[str, Any], tmp_path: Path
) -> None:
    client = dev_env.client
    report = validate((), root=ROOT)
    settings = RunSettings(
        queue_prefix=worker_process["prefix"],
        time_scale=DAY_IN_SECONDS,
        default_timezone="Europe/Berlin",
    )
    router = Router(
        client, report.plans, EntryStore(connect(f"sqlite:///{tmp_path}/t.db")), settings
    )
    record = worker_process["record"]

    stories: dict[str, str] = {}  # scenario → workflow id, for the replay corpus

    async def newsletter() -> RunResult:
        profile = Profile(id="max", email="max@example.com", traits={"interests": ["laptops"]})
        [routed] = await router.route(event("Newsletter Subscribed", customer="max"), profile)
        assert routed.action == "started" and routed.workflow_id is not None
        stories["whole-series"] = routed.workflow_id
        return await outcome_of(client, routed.workflow_id)

    async def laptop_click() -> RunResult:
        profile = Profile(id="erika", email="erika@example.com", traits={"email_opt_in": True})
        [routed] = await router.route(
            event("Product Category Viewed", customer="erika", category="laptops"), profile
        )
        assert routed.workflow_id is not None
        stories["clicked-and-invited-to-the-store"] = routed.workflow_id
        await wait_for_step(client, routed.workflow_id, "clicked")
        await router.route(event("email.clicked", customer="erika", step="recommend"), profile)
        return await outcome_of(client, routed.workflow_id)

    async def laptop_purchase() -> RunResult:
        profile = Profile(id="jonas", email="jonas@example.com", traits={"email_opt_in": True})
        [routed] = await router.route(
            event("Product Category Viewed", customer="jonas", category="laptops"), profile
        )
        assert routed.workflow_id is not None
        stories["bought-a-laptop-goal"] = routed.workflow_id
        await wait_for_step(client, routed.workflow_id, "clicked")
        await router.route(
            event("Order Completed", customer="jonas", order_id="J-1", categories=["laptops"]),
            profile,
        )
        return await outcome_of(client, routed.workflow_id)

    async def after_purchase() -> RunResult:
        profile = Profile(id="lena", email="lena@example.com")
        routed = await router.route(
            event(
                "Order Completed",
                customer="lena",
                order_id="O-7",
                categories=["laptops"],
                products=[],
            ),
            profile,
        )
        [started] = [r for r in routed if r.journey_id == "post-purchase-accessories"]
        assert started.workflow_id is not None
        stories["detractor-six-messages"] = started.workflow_id
        await router.route(event("Order Delivered", customer="lena", order_id="O-7"), profile)
        await wait_for_step(client, started.workflow_id, "answer")
        await router.route(
            event("Survey Answered", customer="lena", order_id="O-7", score=3), profile
        )
        return await outcome_of(client, started.workflow_id)

    welcome, clicked, bought, post = await asyncio.gather(
        newsletter(), laptop_click(), laptop_purchase(), after_purchase()
    )
    assert welcome.outcome.kind == "completed"
    assert recorded(record, "max", "newsletter-welcome")[:2] == [
        "newsletter-welcome",
        "newsletter-recommendations",
    ]
    assert clicked.outcome.kind == "completed"
    assert recorded(record, "erika", "laptop-recommendation") == [
        "laptop-picks",
        "laptop-store-invite",
    ]
    assert (bought.outcome.kind, bought.outcome.reason) == ("converted", "Order Completed")
    assert recorded(record, "jonas", "laptop-recommendation") == ["laptop-picks"]
    assert post.outcome.kind == "completed"
    assert recorded(record, "lena", "post-purchase-accessories") == [
        "laptop-setup",
        "accessory-offer",
        "satisfaction-survey",
        "detractor-alert",
        "crm-detractor",
        "apology",
    ]

    query = f"{JOURNEY_ID.name} = 'post-purchase-accessories' AND ExecutionStatus = 'Completed'"
    found = [run.id async for run in client.list_workflows(query)]
    assert found, "runs can be found by the Touchpoint search attributes"
    # runs of input version 4 keep their step and outcome in the analytics store only
    for workflow_id in stories.values():
        described = await client.get_workflow_handle(workflow_id).describe()
        assert described.typed_search_attributes.get(JOURNEY_OUTCOME) is None, workflow_id

    # the replay corpus: these runs replay today; `make histories` stores them
    worker = worker_options(load_settings(report.config, worker_process["env"])).deployment
    for scenario, story in STORIES.items():
        await corpus.record(
            client, stories[scenario], scenario, story,
            recorded_on=corpus.DEV_SERVER, plans=report.plans.values(), deployment=worker,
        )  # fmt: skip

    import httpx

    metrics = httpx.get(f"http://127.0.0.1:{worker_process['metrics_port']}/metrics").text
    assert "temporal_workflow_completed" in metrics, "the worker serves Temporal SDK metrics"
    ended = {  # and its own, by journey and outcome (tests/test_metrics.py: the rest)
        (s.labels["journey"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "touchpoint_runs_ended_total"
    }
    assert ended[("laptop-recommendation", "converted")] == 1
    assert ended[("laptop-recommendation", "completed")] == 1
    assert ended[("post-purchase-accessories", "completed")] >= 1

    process = worker_process["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, "SIGTERM shuts the worker down gracefully"
    assert "touchpoint worker stopped" in process.stdout.read()


@pytest.mark.records_history
async def test_an_event_and_a_timeout_that_race_resolve_for_the_event(
    dev_env: WorkflowEnvironment,
) -> None:
    """The timer fires and the event arrives while no worker runs: the workflow sees both in one
    activation, and the event counts (it was delivered before the run moved on)."""
    plan = plan_from("""
id: race
name: Race
category: marketing
trigger:
  event: Signed Up
steps:
  - id: delivered
    wait_for: Order Delivered
    timeout: 2s
    on_timeout: late
  - send: email
    template: laptop-setup
  - end
  - id: late
    send: chat
    to: support-team
    template: delivery-late-alert
""")
    recorder = RecordingActivities()
    prefix = f"race{uuid.uuid4().hex[:6]}-"
    async with running_workers(dev_env.client, recorder.all(), prefix):
        handle = await start_run(
            dev_env.client, plan, prefix, event("Signed Up"), by_reference=True
        )
        await wait_for_step(dev_env.client, handle.id, "delivered")
    await asyncio.sleep(3)  # the 2 s timer fires while no worker polls
    await handle.signal("event", event("Order Delivered"))
    async with running_workers(dev_env.client, recorder.all(), prefix):
        result = RunResult.model_validate(await asyncio.wait_for(handle.result(), 60))
    assert [(e.step, e.kind) for e in result.timeline] == [
        ("delivered", "event"),
        ("send-2", "sent"),
    ]
    history = await handle.fetch_history()
    assert raced(history), "the timer fired, then the event arrived, and one task saw both"
    await corpus.record(
        dev_env.client, handle.id, "event-and-timeout-in-one-task",
        "The wait_for timer fires and the event arrives while no worker runs: one workflow "
        "task sees both, and the event counts",
        recorded_on=corpus.DEV_SERVER, plans=[plan],
    )  # fmt: skip


def raced(history: WorkflowHistory) -> bool:
    """Did the run's timer fire before the event signal arrived, with no workflow task
    completed in between (so the workflow saw both at once)?"""
    kinds = [e.event_type for e in history.events]
    if EventType.EVENT_TYPE_TIMER_FIRED not in kinds:
        return False  # the event came first and cancelled the timer
    fired = kinds.index(EventType.EVENT_TYPE_TIMER_FIRED)
    signalled = [
        n
        for n, e in enumerate(history.events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "event"
    ]
    return any(
        fired < n and EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in kinds[fired:n]
        for n in signalled
    )


async def test_a_keyless_exit_reaches_every_run_of_an_every_time_journey(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    plan = plan_from("""
id: every-time-fanout
name: Fan-out
category: marketing
trigger:
  event: Item Viewed
entry:
  reentry: every_time
exit_when:
  - event: Unsubscribed
    reason: unsubscribed
steps:
  - wait: 30d
  - send: email
    template: apology
""")
    recorder = RecordingActivities()
    async with running_workers(dev_env.client, recorder.all()) as prefix:
        router = Router(
            dev_env.client,
            {plan.journey_id: plan},
            EntryStore(connect(f"sqlite:///{tmp_path}/t.db")),
            RunSettings(queue_prefix=prefix),
        )
        customer = f"fan-{uuid.uuid4().hex[:6]}"
        first = await router.route(event("Item Viewed", customer=customer), Profile(id=customer))
        second = await router.route(event("Item Viewed", customer=customer), Profile(id=customer))
        for routed in (*first, *second):
            await wait_for_step(dev_env.client, routed.workflow_id, "wait-1")
        exits: list[Any] = []
        for _ in range(50):  # visibility is eventually consistent
            exits = await router.route(
                event("Unsubscribed", customer=customer), Profile(id=customer)
            )
            if len([e for e in exits if e.action == "signalled"]) == 2:
                break
            await asyncio.sleep(0.2)
        results = [await outcome_of(dev_env.client, r.workflow_id) for r in (*first, *second)]
    assert {e.workflow_id for e in exits} == {first[0].workflow_id, second[0].workflow_id}
    assert [(r.outcome.kind, r.outcome.reason) for r in results] == [("exited", "unsubscribed")] * 2
    assert recorder.sent == []


def test_timedelta_days_become_seconds() -> None:
    assert timedelta(days=14).total_seconds() * DAY_IN_SECONDS == 14


async def test_emit_and_runs_commands(
    dev_env: WorkflowEnvironment, worker_process: dict[str, Any], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_QUEUE_PREFIX": worker_process["prefix"],
        "TOUCHPOINT_DATABASE_URL": worker_process["env"]["TOUCHPOINT_DATABASE_URL"],
        # an hour a second: the run must still be waiting when the test cancels it
        "TOUCHPOINT_TIME_SCALE": str(1 / 3600),
    }
    touchpoint = str(Path(sys.executable).parent / "touchpoint")

    async def run(*args: str) -> str:
        return (await run_both(*args))[0]

    async def run_both(*args: str) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            touchpoint,
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return out.decode(), err.decode()

    customer = f"cli-{uuid.uuid4().hex[:6]}"
    identified = await run(
        "identify", customer, "--trait", "email=cli@example.com", "--trait", 'interests=["laptops"]'
    )
    assert identified.strip() == f"{customer}: 2 trait(s)"
    too_large = await asyncio.create_subprocess_exec(
        touchpoint, "identify", customer, "--trait", "bio=" + "x" * 70_000,
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(too_large.communicate(), 60)
    assert too_large.returncode == 1, err.decode()
    assert (
        err.decode()
        .splitlines()[-1]
        .startswith("✗ traits.bio: the profile's traits would take 70,")
    )
    emitted = await run("emit", "Newsletter Subscribed", "--user", customer)
    assert emitted.strip() == "newsletter-welcome: started"
    again = await run("emit", "Newsletter Subscribed", "--user", customer)
    assert again.strip() == "newsletter-welcome: skipped (already entered once)"
    calls = tmp_path / "calls.ndjson"
    other = f"file-{uuid.uuid4().hex[:6]}"
    calls.write_text(
        json.dumps({"type": "identify", "userId": other, "traits": {"email": "f@example.com"}})
        + "\n"
        + json.dumps({"type": "track", "userId": other, "event": "Newsletter Subscribed"})
        + "\n"
        + json.dumps({"type": "track", "userId": other, "event": "Page Viewed"})
        + "\n"
    )
    from_file = await run("emit", "--file", str(calls))
    assert from_file.strip() == "3 call(s): 1 identified, 1 started"
    # the event log has every call these commands applied, and not the refused identify
    assert (await run("events", "count")).strip() == "6"
    tail = (await run("events", "tail")).splitlines()
    assert [line.split()[2:4] for line in tail] == [
        [customer, "identify"],
        [customer, "track"],
        [customer, "track"],
        [other, "identify"],
        [other, "track"],
        [other, "track"],
    ]
    listed = ""
    for _ in range(50):  # visibility is eventually consistent
        listed = await run("runs", "list", "--customer", customer)
        if listed.strip():
            break
        await asyncio.sleep(0.2)
    header, row = listed.splitlines()
    assert header.split() == ["WORKFLOW", "ID", "STATUS", "STEP", "OUTCOME", "STARTED"]
    run_id, status = row.split()[:2]
    assert header.index("STATUS") == row.index(status), "aligned under the header"
    assert run_id.startswith("journey/newsletter-welcome/") and customer not in run_id
    cut, said = await run_both("runs", "list", "--limit", "1")
    assert (
        len(cut.splitlines()) == 2
        and said == "1 run(s); showing the newest 1; --limit N for more\n"
    )
    shown = await run("show", run_id)
    assert "next wake-up:" in shown
    assert (await run("cancel", run_id, "--reason", "support ticket 42")).startswith("cancelled")
    result = RunResult.model_validate(await dev_env.client.get_workflow_handle(run_id).result())
    assert (result.outcome.kind, result.outcome.reason) == ("cancelled", "support ticket 42")
    again = await asyncio.create_subprocess_exec(
        touchpoint, "cancel", run_id, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 1 and "no running run" in err.decode()  # an ended run: no crash
    assert shown.startswith("newsletter-welcome (version ")
    # the step it waited at and its outcome come from the analytics store (input version 4
    # upserts neither), and --outcome finds it there
    ended = ""
    for _ in range(50):
        ended = await run("runs", "list", "--customer", customer, "--outcome", "cancelled")
        if ended.strip():
            break
        await asyncio.sleep(0.2)
    (cancelled,) = ended.splitlines()[1:]
    assert cancelled.split()[:4] == [run_id, "completed", row.split()[2], "cancelled"]
    assert row.split()[2].startswith("wait"), row  # the welcome series' first wait
    none = await run("runs", "list", "--customer", customer, "--outcome", "converted")
    assert none.strip() == ""
    # the store unreachable: the runs are listed all the same, without its columns, and said so
    unreachable = {**env, "TOUCHPOINT_DATABASE_URL": "postgresql://touchpoint@127.0.0.1:1/none"}
    listing = await asyncio.create_subprocess_exec(
        touchpoint, "runs", "list", "--customer", customer, cwd=ROOT, env=unreachable,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0, err.decode()
    assert out.decode().splitlines()[1].split()[:4] == [run_id, "completed", "-", "-"]
    assert "! step and outcome not read from the store: " in err.decode()


async def test_show_says_how_a_run_ended(
    dev_env: WorkflowEnvironment, worker_process: dict[str, Any], tmp_path: Path
) -> None:
    """A converted run reads "converted (goal …) at <step>", not "completed"."""
    env = {
        **os.environ,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_QUEUE_PREFIX": worker_process["prefix"],
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path}/show.db",
        "TOUCHPOINT_TIME_SCALE": str(1 / 3600),  # an hour a second: the 2-day wait holds
    }
    touchpoint = str(Path(sys.executable).parent / "touchpoint")

    def run(*args: str) -> str:
        return subprocess.run(
            [touchpoint, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout

    buyer = f"buyer-{uuid.uuid4().hex[:6]}"
    run("identify", buyer, "--trait", "email=buyer@example.com")
    assert run("emit", "Newsletter Subscribed", "--user", buyer).strip() == (
        "newsletter-welcome: started"
    )
    listed = ""
    for _ in range(50):  # visibility is eventually consistent
        listed = run("runs", "list", "--customer", buyer)
        if listed:
            break
        await asyncio.sleep(0.2)
    run_id = listed.splitlines()[1].split()[0]
    await wait_for_step(dev_env.client, run_id, "wait-2")
    waiting = run("show", run_id).splitlines()
    assert waiting[0].endswith(" at wait-2") and waiting[1] == "outcome: running"
    run("emit", "Order Completed", "--user", buyer)
    await outcome_of(dev_env.client, run_id)
    ended = run("show", run_id).splitlines()
    assert re.fullmatch(r"newsletter-welcome \(version \w+\)", ended[0]), ended[0]
    assert re.fullmatch(
        r"outcome: converted \(goal Order Completed\) at wait-2, \d{4}-\d\d-\d\dT[\d:]+\+00:00",
        ended[1],
    ), ended[1]
    assert not any(line.startswith(("waiting for:", "next wake-up:")) for line in ended)


async def test_the_api_process_feeds_the_worker_process(
    dev_env: WorkflowEnvironment, worker_process: dict[str, Any], tmp_path: Path
) -> None:
    """``touchpoint api`` and ``python worker.py`` as separate processes: an HTTP track call
    with a write key from ``touchpoint keys create`` starts a journey whose email is sent."""
    import httpx

    env = {
        **os.environ,
        **EXAMPLE_SECRETS,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_QUEUE_PREFIX": worker_process["prefix"],
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "TOUCHPOINT_TIME_SCALE": str(DAY_IN_SECONDS),
    }
    touchpoint = str(Path(sys.executable).parent / "touchpoint")
    key = subprocess.run(
        [touchpoint, "keys", "create", "web-shop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [touchpoint, "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=(key, "")) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            ready = (await http.get("/readyz")).json()
            assert ready == {"ready": True, "temporal": True, "store": True}
            identified = await http.post(
                "/v1/identify",
                json={"userId": "ada", "traits": {"email": "ada@example.com", "interests": []}},
            )
            tracked = await http.post(
                "/v1/track",
                json={"userId": "ada", "event": "Newsletter Subscribed", "messageId": "ada-1"},
            )
            assert identified.status_code == tracked.status_code == 200
            for _ in range(200):
                if recorded(worker_process["record"], "ada", "newsletter-welcome"):
                    break
                await asyncio.sleep(0.1)
    finally:
        api.send_signal(signal.SIGINT)
        api.wait(timeout=20)
        log.close()
    assert (
        recorded(worker_process["record"], "ada", "newsletter-welcome")[0] == "newsletter-welcome"
    )
