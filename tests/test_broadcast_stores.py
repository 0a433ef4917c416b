"""Broadcast paging and the date journey's time-zone-filtered pages, on SQLite and on
PostgreSQL (a real server from the ``postgres`` fixture): the page query reads every profile
once in customer id order whatever the ids (PostgreSQL compares text by its collation), an
occurrence reaches exactly its audience across pages and continue-as-new, and a date
journey's occurrence reads only the profiles in the zones where it is ``at`` (and those
without a zone when the default zone is one of them). Temporal's time-skipping server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert
from temporalio.testing import WorkflowEnvironment

from simulation.recording import RecordingActivities
from store.database import profiles
from store.profiles import ProfileStore
from tests import test_broadcast as broadcasts
from tests import test_date_entry as dates
from tests.conftest import Database
from workflows.broadcast_models import BROADCAST_QUEUE, BroadcastInput, BroadcastResult

ODD_IDS = ["Anna", "anna", "a-b", "a_b", "a.b", "a b", "Zoe", "zoe", "ä", "Ω", "10", "9", "_x"]


def filled(database: Database, people: dict[str, dict[str, Any]]) -> Engine:
    engine = database.connect()
    now = datetime.now(UTC)
    rows = [
        {
            "customer_id": customer,
            "email": f"customer{number}@example.com",
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        for number, (customer, fields) in enumerate(people.items())
    ]
    with engine.begin() as db:
        db.execute(insert(profiles), rows)
    return engine


def test_pages_read_every_profile_once_whatever_the_ids(database: Database) -> None:
    engine = filled(database, {customer: {"traits": {}} for customer in ODD_IDS})
    store = ProfileStore(engine)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = store.page(after, 3)
        seen += [p.id for p in page]
        if len(page) < 3:
            break
        after = page[-1].id
    assert sorted(seen) == sorted(ODD_IDS) and len(seen) == len(set(seen)), seen


def test_a_zone_filtered_page_reads_only_those_zones(database: Database) -> None:
    engine = filled(
        database,
        {
            "berlin": {"timezone": "Europe/Berlin", "traits": {}},
            "paris": {"timezone": "Europe/Paris", "traits": {}},
            "kolkata": {"timezone": "Asia/Kolkata", "traits": {}},
            "none": {"timezone": None, "traits": {}},
            "empty": {"timezone": "", "traits": {}},
        },
    )
    store = ProfileStore(engine)
    zones = ["Europe/Berlin", "Europe/Paris"]
    assert [p.id for p in store.page(None, 10, zones)] == ["berlin", "paris"]
    assert [p.id for p in store.page("berlin", 10, zones)] == ["paris"]
    with_none = [p.id for p in store.page(None, 10, zones, without_zone=True)]
    assert with_none == ["berlin", "empty", "none", "paris"]
    assert store.page(None, 10, []) == []


async def test_an_occurrence_reaches_exactly_the_audience_across_pages(
    time_env: WorkflowEnvironment, database: Database
) -> None:
    people = {}
    for i in range(broadcasts.PROFILES):
        traits: dict[str, Any] = {
            "interests": ["laptops"] if broadcasts.fans(i) else ["phones"],
            "opted_in": i % 5 != 0,
        }
        if i == 3:
            traits["interests"] = 5  # the audience cannot be evaluated on it
        people[f"c{i:05d}"] = {"traits": traits}
    engine = filled(database, people)
    plan = broadcasts.deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with broadcasts.workers(time_env, engine, recorder, prefix):
        handle = await time_env.client.start_workflow(
            "BroadcastWorkflow",
            BroadcastInput(
                journey_id=plan.journey_id,
                plan_version=plan.version,
                occurrence=broadcasts.MONDAY,
                pages_per_execution=2,  # 3 pages: continue-as-new once
            ),
            id=f"broadcast-{uuid.uuid4()}",
            task_queue=prefix + BROADCAST_QUEUE,
        )
        result = BroadcastResult.model_validate(await handle.result())
        customers = await broadcasts.sent_to(recorder, len(broadcasts.expected()))
    assert sorted(customers) == sorted(broadcasts.expected()), "exactly the audience, each once"
    c = result.counts
    assert (c.read, c.matched, c.started, c.failed, result.pages) == (1_200, 319, 319, 1, 3)


async def test_a_date_occurrence_reads_only_the_zones_where_it_is_nine(
    time_env: WorkflowEnvironment, database: Database
) -> None:
    engine = filled(
        database,
        {
            customer: {
                "timezone": timezone,
                "traits": {"vip": vip, **({"birthday": birthday} if birthday else {})},
            }
            for customer, (timezone, birthday, vip) in dates.PEOPLE.items()
        },
    )
    plan = dates.deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with dates.workers(time_env, engine, recorder, prefix):
        berlin = await dates.occurrence(time_env, prefix, plan, dates.BERLIN_NINE)
        berlin_sent = await dates.sent_to(recorder, 2)
        kolkata = await dates.occurrence(time_env, prefix, plan, dates.KOLKATA_NINE)
        quarter_past = dates.BERLIN_NINE + timedelta(minutes=15)
        quiet = await dates.occurrence(time_env, prefix, plan, quarter_past)
        all_sent = await dates.sent_to(recorder, 3)
    assert berlin_sent == ["berlin-today", "nozone-today"]
    c = berlin.counts
    assert (c.read, c.matched, c.started, c.unreadable_dates) == (7, 2, 2, 1)
    assert berlin.pages == 4, "two profiles a page"
    assert (kolkata.counts.read, kolkata.counts.started) == (1, 1)
    assert (quiet.counts.read, quiet.pages) == (0, 1)
    assert all_sent == ["berlin-today", "kolkata-today", "nozone-today"]
