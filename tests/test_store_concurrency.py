"""Every store write, raced on SQLite and PostgreSQL: several engines (as several API and
worker processes have) on separate connections, released at the same moment. The ledger and the
entry claims have their own races in test_ledger.py and test_entry_and_keys.py."""

from __future__ import annotations

import json
from functools import partial

from sqlalchemy import func, select

from store.consent import ConsentStore
from store.database import aliases, consent, processed_messages, suppression_audit
from store.plans import PlanStore
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import Database, at_once, processes_at_once
from tests.temporal import plan_from

RACERS = 24


def count(database: Database, table: object, *where: object) -> int:
    with database.engines[0].connect() as db:
        query = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int(db.execute(query.where(*where)).scalar_one())  # type: ignore[arg-type]


def test_a_message_delivered_to_several_apis_at_once_is_processed_once(database: Database) -> None:
    stores = [ProcessedMessages(database.connect()) for _ in range(4)]
    for round in range(5):
        firsts = at_once(
            [partial(stores[i % 4].claim, "key:shop", f"m-{round}") for i in range(RACERS)]
        )
        assert firsts.count(True) == 1
    other_source = at_once([lambda i=i: stores[i % 4].claim(f"key:{i}", "m-0") for i in range(8)])
    assert other_source == [True] * 8  # the same id from other sources is other messages
    assert count(database, processed_messages) == 5 + 8


def test_a_double_click_on_unsubscribe_is_recorded_once(database: Database) -> None:
    stores = [ConsentStore(database.connect()) for _ in range(4)]
    new = at_once(
        [lambda i=i: stores[i % 4].withdraw("max", f"one-click {i}") for i in range(RACERS)]
    )
    assert new.count(True) == 1
    assert stores[0].blocked("max") is not None
    assert count(database, consent) == 1


def test_bounces_for_one_address_at_once_suppress_it_with_one_audit_row(
    database: Database,
) -> None:
    stores = [Suppressions(database.connect()) for _ in range(4)]
    added = at_once(
        [
            lambda i=i: stores[i % 4].add(
                "Max@Example.com", "bounce", detail=f"550 #{i}", source="sendgrid", actor="sendgrid"
            )
            for i in range(RACERS)
        ]
    )
    assert added.count(True) == 1
    removed = at_once(
        [
            lambda i=i: stores[i % 4].remove("max@example.com", actor=f"agent-{i}", why="fixed")
            for i in range(RACERS)
        ]
    )
    assert removed.count(True) == 1
    assert [entry.action for entry in stores[0].audit("max@example.com")] == ["added", "removed"]
    assert count(database, suppression_audit) == 2


def test_identify_calls_for_one_customer_at_once_lose_no_trait(database: Database) -> None:
    """Two API processes merge traits into the same profile at the same moment: each merge
    reads what the other wrote, so every trait lands (none overwritten by a stale read)."""
    stores = [ProfileStore(database.connect()) for _ in range(4)]
    for customer in ("new", "known"):  # created by the race, or there before it
        if customer == "known":
            stores[0].upsert("known", {"email": "known@example.com"}, locale="de-DE")
        at_once([partial(stores[i % 4].upsert, customer, {f"trait_{i}": i}) for i in range(RACERS)])
        profile = stores[0].get(customer)
        assert profile is not None
        assert {f"trait_{i}" for i in range(RACERS)} <= set(profile.traits), profile.traits
    known = stores[0].get("known")
    assert known is not None and known.email == "known@example.com" and known.locale == "de-DE"


def test_an_alias_made_at_once_links_and_merges_once(database: Database) -> None:
    stores = [ProfileStore(database.connect()) for _ in range(4)]
    stores[0].upsert("anon-1", {"plan": "trial", "email": "old@example.com"})
    stores[0].upsert("max", {"email": "max@example.com"})
    new = at_once([lambda i=i: stores[i % 4].link("anon-1", "max") for i in range(RACERS)])
    assert new.count(True) == 1
    assert stores[0].resolve(None, "anon-1") == "max"
    merged = stores[0].get("max")
    assert merged is not None and merged.traits == {"plan": "trial", "email": "max@example.com"}
    assert count(database, aliases) == 1


def test_a_shared_device_linked_to_two_people_at_once_ends_linked_to_one(
    database: Database,
) -> None:
    stores = [ProfileStore(database.connect()) for _ in range(4)]
    for round in range(5):
        anonymous = f"device-{round}"
        at_once([partial(stores[i % 4].link, anonymous, f"user-{i % 2}") for i in range(8)])
        assert stores[0].resolve(None, anonymous) in ("user-0", "user-1")
        assert count(database, aliases, aliases.c.anonymous_id == anonymous) == 1


JOURNEY = """
id: welcome-{n}
name: Welcome {n}
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    send: email
    template: newsletter-welcome
"""


def test_processes_publishing_the_same_plans_at_once_store_each_once(
    database: Database,
) -> None:
    """Workers and APIs starting together each publish the project's plans."""
    plans = [plan_from(JOURNEY.format(n=n)) for n in range(5)]
    payload = json.dumps([plan.model_dump(mode="json") for plan in plans])
    setup = (
        "from store.database import connect\n"
        "from store.plans import PlanStore\n"
        "from workflows.plan import Plan\n"
        f"plans = [Plan.model_validate(p) for p in {json.loads(payload)!r}]\n"
        f"store = PlanStore(connect({database.url!r}))"
    )
    finished = processes_at_once(setup, "print(store.publish(plans))", count=4)
    assert [(p.returncode, p.stderr) for p in finished] == [(0, "")] * 4
    assert sum(int(p.stdout) for p in finished) == len(plans)  # each counted new exactly once
    assert PlanStore(database.connect()).versions() == {plan.version for plan in plans}
