"""Many processes, one system, on PostgreSQL: two ``touchpoint api`` processes, two
``touchpoint worker`` processes and one Temporal dev server share one PostgreSQL store.

Events for 1,000 customers are spread over both APIs with a real HTTP client; every call is
delivered twice, to the two APIs at the same moment (the same ``messageId``); some customers
sign up a second time (a new message) on the other API at the same moment too. One worker is
killed with ``kill -9`` part-way through the sending. Then:

* every journey started once per customer (``welcome``, ``reentry: once``) and once per
  customer and order (``receipt``, keyed by the order id): Temporal's visibility lists each
  expected workflow id exactly once and no other, and the store's entry records agree;
* every email was sent exactly once: the ledger holds each expected message as ``sent``, the
  Maildir outbox holds the same message ids, none twice;
* nothing is lost: each customer's address got one welcome and one receipt per order.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from email.utils import parseaddr
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.email.maildir import list_messages
from store.database import journey_entries
from store.keys import WriteKeys
from store.ledger import Delivery
from tests.faults.runs import activities_held_by, activity_starts, kill_mid_send
from tests.faults.stack import (
    OUTBOX,
    ApiProcess,
    Processes,
    connect,
    database_url,
    ledger_of,
    make_project,
    outbox_ids,
    ready,
    store_of,
)
from tests.postgres import Postgres
from workflows.models import customer_hash, workflow_id
from workflows.search import JOURNEY_ID

pytestmark = pytest.mark.chaos

WELCOME = """
id: welcome
name: Welcome
category: marketing
trigger:
  event: Signed Up
entry:
  reentry: once
steps:
  - send: email
    template: note
"""
RECEIPT = """
id: receipt
name: Receipt
category: marketing
trigger:
  event: Order Completed
  key: event.properties.order_id
entry:
  reentry: every_time
steps:
  - send: email
    template: note
"""
CUSTOMERS = int(os.environ.get("CHAOS_CUSTOMERS", "1000"))  # fewer to try it on a busy laptop
IN_FLIGHT = 8  # customers whose calls are on the wire at once (each sends 2 to 8 requests)
RETRIES = 8


def orders_of(number: int) -> list[str]:
    """Every customer orders once; every third orders twice."""
    return [f"o{number}-{n}" for n in range(2 if number % 3 == 0 else 1)]


def signs_up_again(number: int) -> bool:
    """Every fifth customer signs up a second time (a new message), at the same moment."""
    return number % 5 == 0


EXPECTED_MESSAGES = sum(1 + len(orders_of(n)) for n in range(CUSTOMERS))


class Shop:
    """A client of the APIs: each call is delivered to both of them at the same moment, with
    one message id (as a sender retrying against a load balancer would). Like Segment's
    libraries, it sends a call again (same message id) when the connection fails or the API
    answers 5xx; anything else but 200 fails the test."""

    def __init__(self, http: httpx.AsyncClient, apis: list[ApiProcess], key: str) -> None:
        self.http, self.apis, self.key = http, apis, key
        self.calls = 0
        self.retries: Counter[str] = Counter()  # why calls were sent again

    async def twice(self, path: str, body: dict[str, object]) -> None:
        await asyncio.gather(*(self.send(api, path, body) for api in self.apis))

    async def send(self, api: ApiProcess, path: str, body: dict[str, object]) -> None:
        for attempt in range(RETRIES + 1):
            self.calls += 1
            try:
                answer = await self.http.post(f"{api.url}{path}", json=body, auth=(self.key, ""))
            except httpx.TransportError as error:
                why = type(error).__name__
            else:
                if answer.status_code < 500:
                    assert answer.status_code == 200, f"{answer.status_code} {answer.text}"
                    return
                why = f"{answer.status_code} {answer.text[:200]}"
            self.retries[why] += 1
            await asyncio.sleep(min(2**attempt * 0.1, 5))
        raise AssertionError(f"{path} failed {RETRIES + 1} times: {self.retries}")

    async def customer(self, number: int) -> None:
        customer = f"c{number}"
        await self.twice(
            "/v1/identify",
            {
                "userId": customer,
                "messageId": f"{customer}-identify",
                "traits": {"email": f"{customer}@faults.example"},
            },
        )
        sign_ups = [f"{customer}-signup"] + (
            [f"{customer}-again"] if signs_up_again(number) else []
        )
        await asyncio.gather(
            *(
                self.twice(
                    "/v1/track", {"userId": customer, "event": "Signed Up", "messageId": message}
                )
                for message in sign_ups
            ),
            *(
                self.twice(
                    "/v1/track",
                    {
                        "userId": customer,
                        "event": "Order Completed",
                        "messageId": f"{customer}-{order}",
                        "properties": {"order_id": order},
                    },
                )
                for order in orders_of(number)
            ),
        )


async def feed(shop: Shop) -> None:
    """Every customer's calls, ``IN_FLIGHT`` customers at a time, in both APIs."""
    waiting = iter(range(CUSTOMERS))

    async def lane() -> None:
        for number in waiting:
            await shop.customer(number)

    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))


async def runs_by_id(client: Client, journey_id: str) -> Counter[str]:
    """How many runs (open or closed) Temporal lists under each workflow id of a journey."""
    query = f"{JOURNEY_ID.name} = '{journey_id}'"
    return Counter([run.id async for run in client.list_workflows(query)])


def runs_of(number: int) -> dict[str, list[str]]:
    """The workflow ids of a customer's runs, per journey."""
    customer = f"c{number}"
    return {
        "welcome": [workflow_id("welcome", customer, None, None)],
        "receipt": [workflow_id("receipt", customer, order, None) for order in orders_of(number)],
    }


def expected_runs() -> dict[str, set[str]]:
    return {
        journey: {run for n in range(CUSTOMERS) for run in runs_of(n)[journey]}
        for journey in ("welcome", "receipt")
    }


async def all_sent(project: Path, client: Client, seconds: float) -> None:
    """Wait until the ledger holds every expected message as sent and no run is open."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(ledger_of, project)
        if sum(1 for row in rows if row.status == "sent") >= EXPECTED_MESSAGES:
            open_runs = await client.count_workflows("ExecutionStatus = 'Running'")
            if open_runs.count == 0:
                return
        await asyncio.sleep(1)
    sent = sum(1 for row in await asyncio.to_thread(ledger_of, project) if row.status == "sent")
    raise AssertionError(f"{sent} of {EXPECTED_MESSAGES} messages sent after {seconds:.0f} s")


async def listed(client: Client, seconds: float) -> dict[str, Counter[str]]:
    """The runs Temporal lists per journey, once its visibility has caught up (it is
    eventually consistent): as many as expected, or what it lists after ``seconds``."""
    expected = {journey: len(ids) for journey, ids in expected_runs().items()}
    deadline = time.monotonic() + seconds
    while True:
        found = {journey: await runs_by_id(client, journey) for journey in expected}
        counts = {journey: sum(runs.values()) for journey, runs in found.items()}
        if counts == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1)


@pytest.mark.timeout(1500)  # a safety stop: about 4 minutes on a quiet two-core machine
async def test_two_apis_two_workers_on_postgresql_start_each_journey_once_and_send_each_email_once(
    stack: Processes, tmp_path: Path, postgres: Postgres
) -> None:
    database = postgres.create_database()
    project = make_project(
        tmp_path / "project", {"welcome": WELCOME, "receipt": RECEIPT}, database=database
    )
    server = stack.server().start()
    workers = [stack.worker(project, server, f"worker-{n}", executable=True) for n in (1, 2)]
    apis = [stack.api(project, server, f"api-{n}") for n in (1, 2)]
    for process in [*workers, *apis]:  # all at once, on an empty database: one migrates it
        process.launch()
    for worker in workers:
        worker.wait_until_ready()
    await ready(apis, stack)
    client = await connect(server)
    key = WriteKeys(store_of(database_url(project))).create("shop")
    began = time.monotonic()

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as http:
        shop = Shop(http, apis, key)
        feeding = asyncio.create_task(feed(shop))
        held: list[str] = []  # the runs whose activities the killed worker held

        async def holding() -> bool:
            held[:] = await activities_held_by(client, workers[0].identity)
            return bool(held)

        async def kill() -> tuple[list[Delivery], float]:
            """The ledger at the kill, and when it was (seconds after the first call)."""
            rows = await kill_mid_send(
                workers[0],
                project,
                EXPECTED_MESSAGES,
                claimed=True,
                held=holding,
                seconds=900,
                poll=0.5,
            )
            return rows, time.monotonic() - began

        killing = asyncio.create_task(kill())
        await asyncio.wait([feeding, killing], return_when=asyncio.FIRST_EXCEPTION)
        if feeding.done() and feeding.exception():
            killing.cancel()
            await feeding
        at_kill, killed_after = await killing
        await feeding
    fed = time.monotonic() - began
    await all_sent(project, client, 600)
    done = time.monotonic() - began
    print(
        f"{shop.calls} calls for {CUSTOMERS} customers in {fed:.0f} s (sent again: "
        f"{dict(shop.retries)}); worker killed after {killed_after:.0f} s holding "
        f"{len(held)} sends, with {sum(r.status == 'sent' for r in at_kill)} sent and "
        f"{sum(r.status == 'pending' for r in at_kill)} claimed; all {EXPECTED_MESSAGES} "
        f"sent after {done:.0f} s"
    )

    # every journey started once per customer (and key)
    runs = await listed(client, 30)
    for journey, ids in expected_runs().items():
        assert set(runs[journey]) == ids, f"{journey}: exactly the expected runs"
        assert set(runs[journey].values()) == {1}, f"{journey}: no run started twice"
    with store_of(database).connect() as db:
        entries = {
            (row.journey_id, row.subject): row.entered
            for row in db.execute(select(journey_entries))
        }
    welcome = {customer_hash(f"c{n}") for n in range(CUSTOMERS)}
    assert {s: n for (j, s), n in entries.items() if j == "welcome"} == dict.fromkeys(welcome, 1)
    receipts = [n for (j, _), n in entries.items() if j == "receipt"]
    assert len(receipts) == len(expected_runs()["receipt"]) and set(receipts) == {1}

    # every email sent exactly once: outbox == ledger `sent`, no message id twice
    ledger = ledger_of(project)
    assert len(ledger) == EXPECTED_MESSAGES and {row.status for row in ledger} == {"sent"}
    outbox = outbox_ids(project)
    assert set(outbox) == {row.message_id for row in ledger}
    assert set(outbox.values()) == {1}, "no message twice in the outbox"

    # the killed worker held sends; Temporal ran them again on the other worker
    starts = await activity_starts([client.get_workflow_handle(run) for run in held])
    assert any(start.attempt > 1 for start in starts), "a send lost with the worker, rerun"

    # nothing lost: every customer got their welcome and a receipt per order
    received = Counter(parseaddr(entry.to)[1] for entry in list_messages(project / OUTBOX))
    assert received == {f"c{n}@faults.example": 1 + len(orders_of(n)) for n in range(CUSTOMERS)}
