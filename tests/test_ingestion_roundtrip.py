"""Property: whatever the API accepts travels. Random JSON properties (deep, wide, NaN,
surrogates, huge numbers, long strings) are either refused with a 4xx naming the field, or
accepted — and then the event round-trips through Temporal's data converter into the run's
input and the run reaches its first step. Never a 5xx, never a run that cannot decode."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ingestion.api import Api, create_app
from ingestion.router import Router
from ingestion.service import Ingestion
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.temporal import plan_from, running_workers
from workflows.models import JourneyInput, RunSettings, RunView, workflow_id

JOURNEY = """
id: fuzzed
name: Fuzzed
category: transactional
trigger:
  event: Fuzzed
  if: event.properties is defined  # reads them whole: its runs get every property
steps:
  - id: first
    wait: 1d
  - end
"""

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


properties = st.one_of(
    st.dictionaries(st.text(max_size=12), values, max_size=6),
    st.integers(min_value=0, max_value=300).map(lambda d: {"deep": nested(d)}),
    st.integers(min_value=0, max_value=20_000).map(lambda n: {"long": "x" * n}),
)


async def test_whatever_the_api_accepts_reaches_its_first_step(
    time_env: WorkflowEnvironment, tmp_path_factory: Any
) -> None:
    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('roundtrip') / 'touchpoint.db'}")
    plan = plan_from(JOURNEY)
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        router = Router(
            time_env.client,
            {plan.journey_id: plan},
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        keys = WriteKeys(engine)
        key = keys.create("fuzzer")
        app = create_app(
            Api(Ingestion(ProfileStore(engine), ProcessedMessages(engine), router.route), keys)
        )
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", auth=(key, "")
        )
        outcomes: list[int] = []

        async def check(props: dict[str, Any]) -> None:
            customer = f"c-{uuid.uuid4().hex}"
            body = json.dumps({"userId": customer, "event": "Fuzzed", "properties": props})
            response = await api.post(
                "/v1/track", content=body, headers={"content-type": "application/json"}
            )
            outcomes.append(response.status_code)
            assert response.status_code in (200, 400, 413), response.text
            target = workflow_id("fuzzed", customer, None, None)
            if response.status_code != 200:
                assert response.json()["message"]
                return
            handle = time_env.client.get_workflow_handle(target)
            view = None
            for _ in range(200):
                view = RunView.model_validate(await handle.query("state"))
                if view.current == "first":
                    break
                await asyncio.sleep(0.02)
            assert view is not None and view.current == "first"
            started = await _run_input(time_env, target)
            assert started.trigger.properties == json.loads(body)["properties"]
            # a run left waiting would hold the time-skipping server's clock for later tests
            await handle.terminate("checked")

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(props=properties)
        def explore(props: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(check(props), loop).result(timeout=60)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(explore)
    assert 200 in outcomes and 400 in outcomes, outcomes  # both sides of the door were tried


async def _run_input(env: WorkflowEnvironment, target: str) -> JourneyInput:
    """The run's input as the server recorded it, decoded by the data converter."""
    handle = env.client.get_workflow_handle(target)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [decoded] = await pydantic_data_converter.decode(payloads, [JourneyInput])
            assert isinstance(decoded, JourneyInput)
            return decoded
    raise AssertionError(f"{target} has no start event")
