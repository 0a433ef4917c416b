"""The ingestion API under fuzzing, as a real ``touchpoint api`` process routing into a real
Temporal dev server: schemathesis drives every operation of its OpenAPI document, hypothesis
sends random Segment batches (some gzipped, some with calls nested hundreds deep). Never a 5xx,
and never half an event: each valid call is processed (recorded, its journey started), each
invalid one is named and not processed, and a retry processes nothing twice."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ingestion.segment import BatchCall, IdentifyCall, TrackCall, with_template_names
from store.database import connect as connect_store
from store.database import processed_messages
from store.keys import WriteKeys
from store.profiles import ProfileStore
from tests.faults.stack import (
    ApiProcess,
    DevServer,
    connect,
    database_url,
    make_project,
    processes,
)
from workflows.models import workflow_id

pytestmark = pytest.mark.chaos

SIGN_UP = """
id: sign-up
name: Sign-up
category: marketing
trigger:
  event: Signed Up
entry:
  reentry: once
steps:
  - wait: 30d
  - send: email
    template: note
"""
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Api:
    process: ApiProcess
    server: DevServer
    store: Engine
    auth: str  # the Authorization header of a valid write key

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.process.url, headers={"Authorization": self.auth})


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api")
    project = make_project(folder / "project", {"sign-up": SIGN_UP})
    store = connect_store(database_url(project))
    key = WriteKeys(store).create("fuzzer")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    with processes(folder) as stack:
        server = stack.server().start()
        process = stack.api(project, server).start()
        yield Api(process, server, store, auth)


def with_request_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """The API's OpenAPI document, plus the Segment request bodies it reads by hand (FastAPI
    cannot see them), so the fuzzer sends calls of the right shape as well as wrong ones."""
    track = TrackCall.model_json_schema(by_alias=True)
    identify = IdentifyCall.model_json_schema(by_alias=True)
    batch = BatchCall.model_json_schema(by_alias=True)
    batch["properties"]["batch"]["items"] = {
        "anyOf": [
            {**track, "properties": {**track["properties"], "type": {"const": "track"}}},
            {**identify, "properties": {**identify["properties"], "type": {"const": "identify"}}},
        ]
    }
    for path, body in (("/v1/track", track), ("/v1/identify", identify), ("/v1/batch", batch)):
        document["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return document


def test_no_operation_answers_a_server_error(api: Api) -> None:
    """Every operation of the OpenAPI document, with valid and invalid input, authenticated."""
    document = httpx.get(f"{api.process.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(with_request_bodies(document))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @FUZZ
        def call(case: Any) -> None:
            response = case.call(base_url=api.process.url, headers={"Authorization": api.auth})
            case.validate_response(response, checks=[not_a_server_error])

        call()


# --- hypothesis: random Segment batches -------------------------------------------------------


def text(min_size: int = 0, max_size: int = 30) -> st.SearchStrategy[str]:
    """Any text the API accepts as portable: no NUL (it is refused, naming the field)."""
    return st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=min_size,
        max_size=max_size,
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
track_calls = st.fixed_dictionaries(
    {
        "type": st.just("track"),
        "event": st.sampled_from(["Signed Up", "Page Viewed"]) | text(min_size=1, max_size=40),
    },
    optional={
        "properties": st.dictionaries(text(max_size=15), json_values, max_size=5),
        "timestamp": st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat()),
    },
)
identify_calls = st.fixed_dictionaries(
    {"type": st.just("identify")},
    optional={"traits": st.dictionaries(text(max_size=15), json_values, max_size=5)},
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


broken_calls = st.sampled_from(
    [
        {"type": "track", "event": ""},
        {"type": "track", "event": "Signed Up", "properties": "not an object"},
        {"type": "track", "event": "Signed Up", "timestamp": "yesterday"},
        {"type": "identify", "traits": ["not", "an", "object"]},
        {"type": "teleport"},
        {"type": "track", "event": "x" * 201},
    ]
) | st.integers(min_value=32, max_value=400).map(
    lambda depth: {"type": "track", "event": "Signed Up", "properties": nested(depth)}
)
batches = st.lists(
    st.one_of(
        track_calls.map(lambda c: (c, True)),
        identify_calls.map(lambda c: (c, True)),
        broken_calls.map(lambda c: (dict(c), False)),
    ),
    min_size=1,
    max_size=6,
)


def with_ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fresh customer and message ids for every example (hypothesis replays examples)."""
    run = uuid.uuid4().hex[:10]
    return [
        {**call, "userId": f"fz-{run}-{n}", "messageId": f"fz-{run}-{n}"}
        for n, call in enumerate(calls)
    ]


def processed(store: Engine, message_ids: list[str]) -> set[str]:
    column = processed_messages.c.message_id
    with store.connect() as db:
        return set(db.scalars(select(column).where(column.in_(message_ids))))


async def sign_up_runs(client: Client, customers: list[str]) -> set[str]:
    """The customers of ``customers`` for whom a sign-up run exists."""
    found = set()
    for customer in customers:
        try:
            await client.get_workflow_handle(
                workflow_id("sign-up", customer, None, None)
            ).describe()
        except RPCError as error:
            assert error.status == RPCStatusCode.NOT_FOUND
            continue
        found.add(customer)
    return found


@FUZZ
@given(items=batches, compress=st.booleans())
async def test_each_batch_item_is_processed_or_refused_on_its_own(
    api: Api, items: list[tuple[dict[str, Any], bool]], compress: bool
) -> None:
    """Valid calls are processed, invalid ones named (400), gzip or not; a retry processes
    nothing twice."""
    calls = with_ids([call for call, _ in items])
    valid = [call for call, (_, ok) in zip(calls, items, strict=True) if ok]
    refused = [n for n, (_, ok) in enumerate(items) if not ok]
    tracks = [c for c in valid if c["type"] == "track"]
    identifies = [c for c in valid if c["type"] == "identify"]
    sign_ups = [c["userId"] for c in tracks if c.get("event") == "Signed Up"]
    body = json.dumps({"batch": calls}).encode()
    headers = {"content-type": "application/json"}
    if compress:
        body, headers = gzip.compress(body), {**headers, "content-encoding": "gzip"}
    client = await connect(api.server)
    with api.client() as http:
        answer = http.post("/v1/batch", content=body, headers=headers)
        assert answer.status_code == (400 if refused else 200), answer.text
        assert sorted({e["index"] for e in answer.json().get("errors", [])}) == refused
        assert processed(api.store, [c["messageId"] for c in calls]) == {
            c["messageId"] for c in valid
        }
        profiles = ProfileStore(api.store)
        for call in identifies:
            profile = profiles.get(call["userId"])
            assert profile is not None
            assert profile.traits == with_template_names(call.get("traits", {}))
        assert await sign_up_runs(client, sign_ups) == set(sign_ups)
        again = http.post("/v1/batch", content=body, headers=headers)  # the SDK's retry
        assert again.status_code == answer.status_code
        assert len(processed(api.store, [c["messageId"] for c in calls])) == len(valid)
