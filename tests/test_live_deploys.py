"""Journeys deployed while the system runs, on the real stack as separate processes: the
Temporal dev server, a worker with real delivery (ledger, Maildir outbox) and TWO ``touchpoint
api`` processes sharing one SQLite store — driven by the installed ``touchpoint`` executable.

* ``touchpoint deploy`` while events flow into both APIs: every event starts exactly one run
  (none dropped), and both APIs start new entries on the new version within a few seconds;
* ``touchpoint journeys pause`` → trigger events are accepted (200) and start nothing on either
  API; ``resume`` → they start runs again;
* ``touchpoint journeys stop`` → a run waiting before its second email ends (exited, with who
  and why) without sending it: the outbox has one message, the ledger says why;
* ``touchpoint journeys`` counts each version's runs; mistakes exit 1 with one clear line.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.faults.stack import (
    ApiProcess,
    DevServer,
    Processes,
    connect,
    ledger_of,
    make_project,
    outbox_ids,
    processes,
    ready,
)
from workflows.models import RunResult, message_id, workflow_id
from workflows.search import JOURNEY_VERSION

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")

DRIP = """
id: drip
name: Drip {version}
category: marketing
trigger:
  event: Drip Started
steps:
  - wait: 1h
  - send: email
    template: note
"""
NOTES = """
id: notes
name: Notes
category: marketing
trigger:
  event: Notes Started
steps:
  - id: first
    send: email
    template: note
  - wait: 5s
  - id: second
    send: email
    template: note
"""


@dataclass
class Live:
    project: Path
    server: DevServer
    apis: list[ApiProcess]
    key: str
    stack: Processes

    def touchpoint(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed executable, with the APIs' environment (store, Temporal, prefix)."""
        return subprocess.run(
            [TOUCHPOINT, *args, "-C", str(self.project)],
            env=self.apis[0].env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live")
    project = make_project(folder / "project", {"drip": DRIP.format(version="one"), "notes": NOTES})
    with processes(folder) as stack:
        server = stack.server().start()
        stack.worker(project, server).start()
        apis = [stack.api(project, server, f"api-{n}") for n in (1, 2)]
        for api in apis:  # both at once: both deploy the never-deployed journeys, one wins
            api.launch()
        keys = subprocess.run(
            [TOUCHPOINT, "keys", "create", "shop", "-C", str(project)],
            env=apis[0].env,
            capture_output=True,
            text=True,
            check=True,
        )
        live = Live(project, server, apis, keys.stdout.strip(), stack)
        asyncio.run(ready(live.apis, stack))
        yield live


async def track(
    http: httpx.AsyncClient, api: ApiProcess, key: str, customer: str, name: str
) -> None:
    answer = await http.post(
        f"{api.url}/v1/track",
        json={"userId": customer, "event": name, "messageId": f"{customer}-{name}"},
        auth=(key, ""),
    )
    assert answer.status_code == 200, answer.text


async def identify(http: httpx.AsyncClient, api: ApiProcess, key: str, customer: str) -> None:
    answer = await http.post(
        f"{api.url}/v1/identify",
        json={"userId": customer, "traits": {"email": f"{customer}@example.com"}},
        auth=(key, ""),
    )
    assert answer.status_code == 200, answer.text


async def version_of(client: Client, journey: str, customer: str) -> str | None:
    """The version the customer's run entered; ``None`` when no run started."""
    handle = client.get_workflow_handle(workflow_id(journey, customer, None, None))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.typed_search_attributes.get(JOURNEY_VERSION)


def deployed_version(live: Live, journey: str) -> str:
    """The active version, from ``touchpoint journeys JOURNEY``'s first line."""
    shown = live.touchpoint("journeys", journey)
    assert shown.returncode == 0, shown.stderr
    found = re.match(rf"{journey}: \w+; new entries (would )?start on (\w+)", shown.stdout)
    assert found, shown.stdout
    return found.group(2)


async def test_a_deploy_reaches_both_apis_within_seconds_and_drops_no_event(live: Live) -> None:
    client = await connect(live.server)
    old = deployed_version(live, "drip")
    sent: list[tuple[str, int, float]] = []  # customer, api, when
    flowing = True

    async def feed(api_index: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            n = 0
            while flowing:
                customer = f"drip-{api_index}-{n}-{uuid.uuid4().hex[:4]}"
                await track(http, live.apis[api_index], live.key, customer, "Drip Started")
                sent.append((customer, api_index, time.monotonic()))
                n += 1
                await asyncio.sleep(0.05)

    feeders = [asyncio.create_task(feed(0)), asyncio.create_task(feed(1))]
    await asyncio.sleep(2)
    (live.project / "journeys" / "drip.yaml").write_text(DRIP.format(version="two"))
    began = time.monotonic()
    deployed = await asyncio.to_thread(live.touchpoint, "deploy", "drip", "--why", "v2")
    done = time.monotonic()
    await asyncio.sleep(5)
    flowing = False
    await asyncio.gather(*feeders)

    assert deployed.returncode == 0, deployed.stderr
    new = deployed_version(live, "drip")
    assert deployed.stdout.split() == ["drip", "deployed", new, "(was", f"{old})"]
    versions = await asyncio.gather(*(version_of(client, "drip", c) for c, _, _ in sent))
    assert None not in versions, "every event accepted started its run: none dropped"
    assert set(versions) == {old, new}
    before = [v for (_, _, at), v in zip(sent, versions, strict=True) if at < began]
    settled = [(api, v) for (_, api, at), v in zip(sent, versions, strict=True) if at > done + 3]
    assert before and set(before) == {old}
    assert {api for api, _ in settled} == {0, 1} and {v for _, v in settled} == {new}, (
        "three seconds after the deploy, both APIs start runs on the new version"
    )
    switched = [at - done for (_, _, at), v in zip(sent, versions, strict=True) if v == new]
    last_old = max(at - done for (_, _, at), v in zip(sent, versions, strict=True) if v == old)
    print(
        f"{len(sent)} events; first on the new version {min(switched):+.2f} s, last on the "
        f"old {last_old:+.2f} s after the deploy returned ({done - began:.2f} s to deploy)"
    )
    assert min(switched) < 3
    for api in live.apis:
        assert f"routing journey drip: version {old} → {new}" in api.log.read_text()

    # `touchpoint journeys` counts the runs per version (visibility is eventually consistent)
    expected = {old: versions.count(old), new: versions.count(new)}
    counted: dict[str, str] = {}
    for _ in range(50):
        listed = live.touchpoint("journeys")
        assert listed.returncode == 0, listed.stderr
        counted = {
            row.split()[2]: row.split()[-1]
            for row in listed.stdout.splitlines()[1:]
            if row.startswith("drip ")
        }
        if counted == {v: str(n) for v, n in expected.items()}:
            break
        await asyncio.sleep(0.2)
    assert counted == {v: str(n) for v, n in expected.items()}


async def test_a_paused_journey_starts_nothing_on_either_api_until_resumed(live: Live) -> None:
    client = await connect(live.server)
    paused = live.touchpoint("journeys", "pause", "notes", "--why", "black friday freeze")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("paused notes: no new entries")
    async with httpx.AsyncClient() as http:
        held = [f"held-{n}-{uuid.uuid4().hex[:4]}" for n in (0, 1)]
        for api, customer in zip(live.apis, held, strict=True):  # at once: no waiting for a poll
            await identify(http, api, live.key, customer)
            await track(http, api, live.key, customer, "Notes Started")  # 200, as always
        await asyncio.sleep(1)
        assert [await version_of(client, "notes", c) for c in held] == [None, None]

        resumed = live.touchpoint("journeys", "resume", "notes", "--why", "freeze over")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout == "resumed notes: new entries start again\n"
        again = [f"again-{n}-{uuid.uuid4().hex[:4]}" for n in (0, 1)]
        for api, customer in zip(live.apis, again, strict=True):
            await identify(http, api, live.key, customer)
            await track(http, api, live.key, customer, "Notes Started")
        assert None not in [await version_of(client, "notes", c) for c in again]


async def test_stop_ends_a_waiting_run_before_its_next_send(live: Live) -> None:
    client = await connect(live.server)
    customer = f"stop-{uuid.uuid4().hex[:6]}"
    run = workflow_id("notes", customer, None, None)
    async with httpx.AsyncClient() as http:
        await identify(http, live.apis[0], live.key, customer)
        await track(http, live.apis[0], live.key, customer, "Notes Started")
        first_email = message_id(run, 1, "first", 1)
        for _ in range(100):  # the first email is out; the run waits 5 s before the second
            if any(
                r.message_id == first_email and r.status == "sent" for r in ledger_of(live.project)
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(live.stack.logs())
        stopped = live.touchpoint(
            "journeys", "stop", "notes", "--why", "wrong price", "--by", "ann"
        )
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith("stopped notes: no new entries, and running runs end")
        late = f"late-{uuid.uuid4().hex[:6]}"
        await identify(http, live.apis[1], live.key, late)
        await track(http, live.apis[1], live.key, late, "Notes Started")

    result = RunResult.model_validate(
        await asyncio.wait_for(client.get_workflow_handle(run).result(), 60)
    )
    assert (result.outcome.kind, result.outcome.reason, result.outcome.step) == (
        "exited",
        "journey stopped by ann: wrong price",
        "second",
    )
    first, second = (e for e in result.timeline if e.step in ("first", "second"))
    assert (first.kind, second.kind) == ("sent", "stopped")
    rows = {row.message_id: row for row in ledger_of(live.project)}
    assert (rows[first.message_id].status, rows[second.message_id].status) == ("sent", "skipped")
    assert rows[second.message_id].reason == "journey stopped by ann: wrong price"
    outbox = outbox_ids(live.project)
    assert outbox[first.message_id or ""] == 1 and outbox[second.message_id or ""] == 0
    assert await version_of(client, "notes", late) is None, "a stopped journey starts nothing"

    history = live.touchpoint("journeys", "notes").stdout
    assert history.count(" deployed ") == 1, "two APIs started at once: one deployed it"
    assert "paused by" in history and "resumed by" in history
    assert history.rstrip().endswith("stopped by ann: wrong price")


async def test_the_executable_says_what_is_wrong(live: Live) -> None:
    unknown = live.touchpoint("deploy", "no-such-journey")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("✗ no journey 'no-such-journey': no file ")
    assert unknown.stderr.rstrip().endswith("nothing deployed")

    active = deployed_version(live, "notes")
    (live.project / "journeys" / "notes.yaml").write_text(NOTES + "  - wait: soon\n")
    broken = live.touchpoint("deploy")
    assert broken.returncode == 1 and broken.stdout == ""
    assert re.search(r"journeys/notes.yaml:\d+:\d+: steps\[3\]\.wait: ", broken.stderr)
    assert broken.stderr.rstrip().endswith("nothing deployed")
    assert deployed_version(live, "notes") == active, "all or nothing"
    (live.project / "journeys" / "notes.yaml").write_text(NOTES)

    not_deployed = live.touchpoint("journeys", "pause", "nope", "--why", "x")
    assert (not_deployed.returncode, not_deployed.stdout) == (1, "")
    assert not_deployed.stderr.startswith("✗ no journey 'nope' has been deployed (deployed: ")
    no_reason = live.touchpoint("journeys", "stop", "notes")
    assert no_reason.returncode == 2 and "Missing option '--why'" in no_reason.stderr
    assert "Traceback" not in unknown.stderr + broken.stderr + not_deployed.stderr
    assert os.path.exists(live.project / "touchpoint.db")
