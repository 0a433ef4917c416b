"""Segment entry end to end: identify calls through the real HTTP API (uvicorn on loopback),
the real router and store (SQLite and PostgreSQL), runs on the time-skipping server with a worker.

Three segment journeys on "lifetime value ≥ 1,000": ``every_time`` (each crossing enters),
``once`` (the first crossing only) and ``one_at_a_time`` whose run waits 30 days (a crossing
while it waits enters nobody). A customer's identifies go 500 → 1,500 → 2,000 → (the 1,500
call retried) → 300 → 1,200 → 100 → 1,100 (whose first attempt fails after starting its
runs: 503, then the retry), and a new customer gets six identifies above 1,000 at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from ingestion.api import Api, create_app
from ingestion.router import Routed, Router
from ingestion.service import Ingestion
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileChange, ProfileStore
from tests.conftest import Database
from tests.net import served
from tests.temporal import plan_from
from workflows.models import RunSettings, customer_hash
from workflows.plan import SEGMENT_EVENT, Plan

SEGMENT = "profile.traits.lifetime_value | default(0) >= 1000"


def segment_journey(journey_id: str, reentry: str, steps: str) -> Plan:
    return plan_from(
        f"id: {journey_id}\nname: {journey_id}\ncategory: marketing\n"
        f'trigger:\n  segment: "{SEGMENT}"\nentry:\n  reentry: {reentry}\n'
        f"steps:\n{steps}"
    )


SEND = "  - send: email\n    template: vip-thank-you\n"
EVERY = segment_journey("vip-every", "every_time", SEND)
ONCE = segment_journey("vip-once", "once", SEND)
WAITING = segment_journey("vip-waiting", "one_at_a_time", "  - wait: 30d\n" + SEND)
QUICK = segment_journey("vip-quick", "one_at_a_time", SEND)  # its runs end at once
PLANS = {plan.journey_id: plan for plan in (EVERY, ONCE, WAITING, QUICK)}


class Entering:
    """The real router's ``enter_segments``, recording its answers; it fails once after
    starting runs for one message id (Temporal's answer lost, say), as a fault would."""

    def __init__(self, router: Router, fail_after: str) -> None:
        self.router = router
        self.fail_after = fail_after
        self.answers: list[tuple[str, Routed]] = []

    async def __call__(
        self, customer: str, change: ProfileChange, message_id: str
    ) -> Sequence[Routed]:
        answers = await self.router.enter_segments(customer, change, message_id)
        self.answers += [(message_id.rpartition("/")[2], answer) for answer in answers]
        if message_id.endswith(f"/{self.fail_after}"):
            self.fail_after = ""
            raise RuntimeError("the connection to Temporal broke")
        return answers

    def by_message(self, message_id: str) -> dict[str, str]:
        """``{journey id: action (reason)}`` of the answers to one message id."""
        return {
            answer.journey_id: answer.action + (f" ({answer.reason})" if answer.reason else "")
            for found, answer in self.answers
            if found == message_id
        }

    def started(self, journey_id: str) -> list[Routed]:
        return [a for _, a in self.answers if a.journey_id == journey_id and a.action == "started"]


async def test_identifies_start_one_run_per_crossing(
    time_env: WorkflowEnvironment, database: Database
) -> None:
    engine = database.connect()  # SQLite and PostgreSQL
    recorder = RecordingActivities()
    profiles = ProfileStore(engine)
    async with running_workers_for(time_env, recorder) as prefix:
        router = Router(
            time_env.client,
            PLANS,
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        entering = Entering(router, fail_after="m8")
        keys = WriteKeys(engine)
        key = keys.create("web shop")
        service = Ingestion(
            profiles, ProcessedMessages(engine), router.route, enter_segments=entering
        )
        async with (
            served(create_app(Api(service, keys))) as url,
            httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=30) as api,
        ):

            async def identify(customer: str, message_id: str, value: int) -> int:
                body = {
                    "userId": customer,
                    "messageId": message_id,
                    "traits": {"lifetime_value": value, "email": f"{customer}@example.com"},
                }
                return (await api.post("/v1/identify", json=body)).status_code

            anna = f"anna-{uuid.uuid4().hex[:8]}"
            assert await identify(anna, "m1", 500) == 200
            assert entering.by_message("m1") == {}, "a new customer below 1,000 enters nothing"
            assert await identify(anna, "m2", 1500) == 200
            assert entering.by_message("m2") == {
                "vip-every": "started",
                "vip-once": "started",
                "vip-waiting": "started",
                "vip-quick": "started",
            }
            await ended(entering, "vip-quick")
            assert await identify(anna, "m3", 2000) == 200  # stays above: no crossing
            assert await identify(anna, "m2", 1500) == 200  # the SDK's retry: a duplicate
            assert await identify(anna, "m4", 300) == 200  # drops below
            assert [entering.by_message(m) for m in ("m3", "m4")] == [{}, {}]
            assert await identify(anna, "m5", 1200) == 200  # crosses again
            assert entering.by_message("m5") == {
                "vip-every": "started",
                "vip-once": "skipped (already entered once)",
                "vip-waiting": "skipped (a run is already active)",
                "vip-quick": "started",
            }
            await ended(entering, "vip-quick")
            assert await identify(anna, "m6", 100) == 200
            assert await identify(anna, "m8", 1100) == 503  # its runs started, then it failed
            assert profiles.get(anna).traits["lifetime_value"] == 100  # type: ignore[union-attr]
            await ended(entering, "vip-quick")
            assert await identify(anna, "m8", 1100) == 200  # the retry crosses again ...
            retried = [(a.journey_id, a.action, a.reason) for m, a in entering.answers if m == "m8"]
            assert retried[4:] == [  # ... and finds the runs its first attempt started
                ("vip-every", "skipped", "this crossing started a run"),
                ("vip-once", "skipped", "already entered once"),
                ("vip-quick", "skipped", "this crossing started a run"),
                ("vip-waiting", "skipped", "a run is already active"),
            ]

            ben = f"ben-{uuid.uuid4().hex[:8]}"
            statuses = await asyncio.gather(*(identify(ben, f"b{i}", 1500 + i) for i in range(6)))
            assert statuses == [200] * 6

            every = entering.started("vip-every")
            assert len(every) == 3 + 1  # anna: m2, m5, m8; ben once of six
            assert len(entering.started("vip-once")) == 2  # anna once, ben once
            assert len(entering.started("vip-waiting")) == 2
            assert len(entering.started("vip-quick")) == 3 + 1
            assert len({a.workflow_id for a in every}) == 4
            for answer in every:  # each started run is on Temporal, triggered by no event
                assert answer.workflow_id is not None
                description = await time_env.client.get_workflow_handle(
                    answer.workflow_id
                ).describe()
                assert description.workflow_type == "JourneyWorkflow"
            entries = EntryStore(engine)
            assert entries.record("vip-every", customer_hash(anna)).entered == 3
            assert entries.record("vip-once", customer_hash(anna)).entered == 1
            assert entries.record("vip-every", customer_hash(ben)).entered == 1

            for _ in range(200):  # the every_time and once runs send right away
                if len(recorder.sent) >= 10:
                    break
                await asyncio.sleep(0.05)
            sent = sorted(message.journey_id for message in recorder.sent)
            assert sent == ["vip-every"] * 4 + ["vip-once"] * 2 + ["vip-quick"] * 4
            for answer in entering.started("vip-waiting"):  # waiting 30 days: not left behind
                assert answer.workflow_id is not None
                await time_env.client.get_workflow_handle(answer.workflow_id).terminate("checked")


async def test_a_segment_run_gets_the_crossing_as_its_trigger(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    await crossing_starts_a_run(time_env, tmp_path)


async def test_a_crossing_starts_a_run_on_the_dev_server(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    await crossing_starts_a_run(dev_env, tmp_path)


async def crossing_starts_a_run(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """An identify through the ingestion service starts a segment run, on either server, whose
    trigger is the crossing, without properties."""
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    recorder = RecordingActivities()
    async with running_workers_for(time_env, recorder) as prefix:
        router = Router(
            time_env.client,
            {EVERY.journey_id: EVERY},
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        service = Ingestion(
            ProfileStore(engine),
            ProcessedMessages(engine),
            router.route,
            enter_segments=router.enter_segments,
        )
        customer = f"cara-{uuid.uuid4().hex[:8]}"
        applied = await service.identify(
            customer, {"lifetime_value": 4000, "email": "cara@example.com"}, "cli"
        )
        [answer] = applied.routed
        assert answer.action == "started"
        for _ in range(200):
            if recorder.sent:
                break
            await asyncio.sleep(0.05)
    [message] = recorder.sent
    trigger: dict[str, Any] = message.context["event"]
    assert (trigger["event"], trigger["properties"]) == (SEGMENT_EVENT, {})


async def ended(entering: Entering, journey_id: str) -> None:
    """Wait for the latest run ``journey_id`` started to end."""
    [*_, latest] = entering.started(journey_id)
    assert latest.workflow_id is not None
    await entering.router.client.get_workflow_handle(latest.workflow_id).result()


def running_workers_for(env: WorkflowEnvironment, recorder: RecordingActivities) -> Any:
    from tests.temporal import running_workers

    return running_workers(env.client, recorder.all())
