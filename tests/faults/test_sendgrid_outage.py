"""SendGrid misbehaves — 429s, 500s, answers that never come in time — and then recovers:
every message is accepted exactly once. A 400 fails only its step: with ``skip_on_failure`` the
run records it and goes on; without, the run fails and says why.

The worker process sends through the real SendGrid provider to the local stand-in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.faults.runs import plan_of, results_of, start_runs
from tests.faults.stack import DevServer, connect, ledger_of, make_project, processes
from tests.sendgrid_standin import SendGridStandIn
from workflows.models import RunResult

pytestmark = pytest.mark.chaos

TWO_NOTES = """
id: two-notes
name: Two notes
category: marketing
trigger:
  event: Fault Started
steps:
  - send: email
    template: note
  - send: email
    template: note
"""
REJECTED_STEP = """
id: {id}
name: A rejected step
category: transactional
trigger:
  event: {id} Started
steps:
  - id: offer
    send: email
    template: note
    skip_on_failure: {skip}
  - id: follow-up
    send: email
    template: note
"""
UNVERIFIED_SENDER = {
    "errors": [
        {
            "message": "The from address does not match a verified Sender Identity.",
            "field": "from",
        }
    ]
}


@pytest.fixture(scope="module")
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn() as sendgrid:
        yield sendgrid


@dataclass(frozen=True)
class Deployment:
    server: DevServer
    project: Path
    prefix: str


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, standin: SendGridStandIn
) -> Iterator[Deployment]:
    """The dev server and one worker whose email goes to the stand-in (client timeout 1 s)."""
    folder = tmp_path_factory.mktemp("sendgrid")
    journeys = {
        "two-notes": TWO_NOTES,
        "skippable": REJECTED_STEP.format(id="skippable", skip="true"),
        "strict": REJECTED_STEP.format(id="strict", skip="false"),
    }
    email = {"provider": "sendgrid", "sendgrid": {"host": standin.url, "timeout": "1s"}}
    project = make_project(folder / "project", journeys, email)
    with processes(folder) as stack:
        server = stack.server().start()
        stack.worker(project, server).start()
        yield Deployment(server, project, stack.prefix)


@pytest.fixture
async def client(deployment: Deployment, standin: SendGridStandIn) -> Client:
    standin.reset()
    return await connect(deployment.server)


def accepted_ids(standin: SendGridStandIn, failures: int) -> Counter[str]:
    """Message ids of the requests the stand-in accepted: answers are handed out in arrival
    order, so the first ``failures`` requests got the queued failures and the rest a 202."""
    return Counter(
        request.json["custom_args"]["touchpoint_message_id"]
        for request in standin.requests[failures:]
    )


async def test_an_outage_then_recovery_sends_every_message_once(
    deployment: Deployment, standin: SendGridStandIn, client: Client
) -> None:
    project = deployment.project
    for _ in range(4):
        standin.answer(429, {"errors": [{"message": "too many requests"}]}, {"Retry-After": "1"})
    for _ in range(4):
        standin.answer(500, {"errors": [{"message": "internal error"}]})
    for _ in range(3):
        standin.answer(503, delay=3)  # the client gives up after 1 s
    failures = 11

    handles = await start_runs(client, plan_of(project, "two-notes"), deployment.prefix, 10)
    results = await results_of(handles, 60)

    assert {r.outcome.kind for r in results} == {"completed"}
    sent = sorted(str(e.message_id) for r in results for e in r.timeline if e.kind == "sent")
    assert len(sent) == 20
    accepted = accepted_ids(standin, failures)
    assert sorted(accepted) == sent and set(accepted.values()) == {1}
    assert len(standin.requests) == failures + len(sent), "no call after a message went out"
    ledger = {row.message_id: row for row in ledger_of(project) if row.message_id in sent}
    assert {(row.status, row.provider) for row in ledger.values()} == {("sent", "sendgrid")}
    assert sum(row.attempts for row in ledger.values()) == failures + len(sent)


async def run_rejected(deployment: Deployment, client: Client, journey_id: str) -> RunResult:
    """One run of ``journey_id`` whose first email SendGrid refuses with a 400."""
    plan = plan_of(deployment.project, journey_id)
    [handle] = await start_runs(client, plan, deployment.prefix, 1, f"{journey_id} Started")
    [result] = await results_of([handle], 30)
    return result


REJECTION = (
    "Rejected: refused (400): "
    "The from address does not match a verified Sender Identity. (field from)"
)


async def test_a_400_fails_only_its_step_when_the_journey_skips_failures(
    deployment: Deployment, standin: SendGridStandIn, client: Client
) -> None:
    standin.answer(400, UNVERIFIED_SENDER)
    result = await run_rejected(deployment, client, "skippable")

    assert result.outcome.kind == "completed"
    assert [(e.step, e.kind) for e in result.timeline] == [
        ("offer", "skipped"),
        ("follow-up", "sent"),
    ]
    assert result.timeline[0].detail == f"failed, skipped: {REJECTION}"
    assert len(standin.requests) == 2, "a 400 is not retried"
    rows = {
        row.step_id: row for row in ledger_of(deployment.project) if row.journey_id == "skippable"
    }
    assert (rows["offer"].status, rows["offer"].attempts) == ("failed", 1)
    assert rows["offer"].reason == REJECTION
    assert rows["follow-up"].status == "sent"


async def test_a_400_fails_the_run_with_the_reason_when_the_journey_does_not_skip(
    deployment: Deployment, standin: SendGridStandIn, client: Client
) -> None:
    standin.answer(400, UNVERIFIED_SENDER)
    result = await run_rejected(deployment, client, "strict")

    assert (result.outcome.kind, result.outcome.step) == ("failed", "offer")
    assert result.outcome.error == REJECTION
    assert [(e.step, e.kind) for e in result.timeline] == [("offer", "failed")]
    assert len(standin.requests) == 1, "a 400 is not retried, and nothing after it is sent"
