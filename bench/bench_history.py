"""History cost: events per run of each example journey (the recorded histories in
tests/histories, real runs of the examples on the dev server) and, measured now on the dev
server, the events each step kind adds to a run, beside a hand-written workflow's minimum for
the same step (RawJourney). The baseline for a step is the events of a run without it."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raw_workflow import RawJourney
from report import header, table, verdict
from stack import ROOT, connect, dev_server, run, temporary_directory
from starts import DAY_IN_SECONDS, project_context, start_journey, start_raw, trigger
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from language.validator import compile_text
from ops.workers import WorkerOptions, build_workers
from simulation.recording import RecordingActivities
from workflows.models import RunSettings
from workflows.plan import Plan

HISTORIES = ROOT / "tests" / "histories"
LOOKUPS = {"shop-api": {"products": [{"name": "Aero 14"}]}}
SIGNAL_AFTER_TIMER = "signal"  # send the awaited event once the run's timer has started


@dataclass(frozen=True)
class Kind:
    """A step kind: the Touchpoint step under test and the hand-written equivalent."""

    name: str
    step: str  # YAML of the one step (the journey is this step, then end)
    raw: tuple[str, ...]  # RawJourney steps doing the same by hand
    signal: bool = False


KINDS = (
    Kind("send", "- send: email\n    template: newsletter-welcome", ("send:x",)),
    Kind("wait", "- wait: 1d", ("wait:1",)),
    Kind("wait_until", '- wait_until:\n      time: "09:00"', ("wait:1",)),
    Kind(
        "wait_for (event came)",
        "- wait_for: Bench Event\n    timeout: 30d\n    on_timeout: end",
        ("wait_for:30",),
        signal=True,
    ),
    Kind(
        "wait_for (timeout)",
        "- wait_for: Bench Event\n    timeout: 1d\n    on_timeout: end",
        ("wait_for:1",),
    ),
    Kind("lookup", "- lookup: shop-api\n    path: /x\n    save_as: x", ("send:x",)),
    Kind("branch", "- branch:\n      - if: profile.id == 'x'\n        goto: end", ()),
    Kind(
        "split",
        "- split:\n      - name: a\n        percent: 50\n      - name: b\n        percent: 50",
        (),
    ),
    Kind("set", "- set:\n      x: 1", ()),
)


def journey_yaml(step: str | None) -> str:
    steps = f"  {step}\n  - end\n" if step else "  - end\n"
    return (
        "id: bench-kind\nname: one step\ncategory: transactional\n"
        "trigger:\n  event: Bench Started\nentry:\n  reentry: every_time\nsteps:\n" + steps
    )


def compile_step(step: str | None) -> Plan:
    plan, problems, _ = compile_text(journey_yaml(step), "bench-kind.yaml", project_context())
    if plan is None:
        raise SystemExit("\n".join(p.format() for p in problems))
    return plan


def event_types(history: Any) -> collections.Counter[str]:
    return collections.Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
    )


async def finished_history(
    handle: WorkflowHandle[Any, Any], signal: bool, event: Any = None
) -> collections.Counter[str]:
    if signal:
        for _ in range(300):
            types = event_types(await handle.fetch_history())
            if types["TIMER_STARTED"]:
                break
            await asyncio.sleep(0.05)
        await handle.signal("event", event)
    await handle.result()
    return event_types(await handle.fetch_history())


async def touchpoint_events(
    client: Client, step: str | None, settings: RunSettings, signal: bool
) -> collections.Counter[str]:
    plan = compile_step(step)
    customer = f"h-{uuid.uuid4().hex[:10]}"
    handle = await start_journey(client, plan, customer, settings)
    awaited = trigger(plan, customer).model_copy(update={"event": "Bench Event"})
    return await finished_history(handle, signal, awaited)


async def raw_events(
    client: Client, queue: str, steps: tuple[str, ...], signal: bool
) -> collections.Counter[str]:
    handle = await start_raw(client, queue, f"h-{uuid.uuid4().hex[:10]}", steps)
    awaited = {
        "message_id": "m",
        "event": "Bench Event",
        "customer_id": "c",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    return await finished_history(handle, signal, awaited)


def added(
    counter: collections.Counter[str],
    base: collections.Counter[str],
    minus: collections.Counter[str] | None = None,
    minus_base: collections.Counter[str] | None = None,
) -> str:
    """Event types ``counter`` has beyond ``base`` (less what ``minus`` has beyond
    ``minus_base``: Touchpoint's step cost beyond the hand-written step cost)."""
    minus, minus_base = minus or collections.Counter(), minus_base or collections.Counter()
    keys = counter | base | minus | minus_base
    diff = {k: counter[k] - base[k] - (minus[k] - minus_base[k]) for k in keys}
    return ", ".join(f"{k.lower()} {v:+d}" for k, v in sorted(diff.items()) if v) or "-"


def example_rows(raw_cost: dict[str, int], raw_base: int) -> list[list[object]]:
    """Events of the recorded example runs, and a hand-written run's minimum for the same path
    (its base plus each step's measured hand-written cost, plus 4 per goal/exit signal)."""
    per_timeline = {
        "sent": "send",
        "skipped": "send",
        "waited": "wait",
        "event": "wait_for (event came)",
        "timeout": "wait_for (timeout)",
        "looked up": "lookup",
        "branch": "branch",
        "split": "split",
        "set": "set",
        "held out": "set",
    }
    rows: list[list[object]] = []
    examples = {p.stem for p in (ROOT / "journeys").glob("*.yaml") if ".test." not in p.name}
    for path in sorted(HISTORIES.glob("*.json")):  # the runs recorded by today's interpreter
        if path.name.endswith(".recording.json"):  # how a history was recorded (tests/corpus.py)
            continue
        events = json.loads(path.read_text())["events"]
        started = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
        run_input = json.loads(base64.b64decode(started["data"]))
        if (
            run_input.get("journey_id") not in examples
            or run_input.get("state") is not None  # the rest of a run that continued as new
            or "workflowExecutionCompletedEventAttributes" not in events[-1]
        ):
            continue
        types = collections.Counter(e["eventType"].removeprefix("EVENT_TYPE_") for e in events)
        done = events[-1]["workflowExecutionCompletedEventAttributes"]["result"]["payloads"][0]
        result = json.loads(base64.b64decode(done["data"]))
        kinds = [per_timeline[entry["kind"]] for entry in result["timeline"]]
        late_signals = (
            types["WORKFLOW_EXECUTION_SIGNALED"] - 1 - kinds.count("wait_for (event came)")
        )
        minimum = raw_base + sum(raw_cost[k] for k in kinds) + 4 * late_signals
        rows.append(
            [
                path.stem,
                len(kinds),
                len(events),
                minimum,
                len(events) - minimum,
                types["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"],
                types["WORKFLOW_TASK_COMPLETED"],
            ]
        )
    return rows


async def main() -> None:
    header(
        "History cost: events per run and per step kind, Touchpoint vs hand-written",
        "dev server WAL/normal; one run per step kind; index_runs on (the default) and off",
    )
    with temporary_directory("history") as tmp:
        async with dev_server(Path(tmp)) as server:
            client = await connect(server.address)
            prefix, raw_queue = "hist-", "hist-raw"
            recording = RecordingActivities(lookups=LOOKUPS)
            async with AsyncExitStack() as stack:
                for worker in build_workers(client, recording.all(), WorkerOptions(prefix)):
                    await stack.enter_async_context(worker)
                await stack.enter_async_context(
                    Worker(
                        client,
                        task_queue=raw_queue,
                        workflows=[RawJourney],
                        activities=recording.all(),
                    )
                )
                indexed = RunSettings(queue_prefix=prefix, time_scale=DAY_IN_SECONDS)
                plain = indexed.model_copy(update={"index_runs": False})
                tp_base = await touchpoint_events(client, None, indexed, False)
                plain_base = await touchpoint_events(client, None, plain, False)
                raw_base = await raw_events(client, raw_queue, (), False)
                rows, raw_cost = [], {}
                for kind in KINDS:
                    tp = await touchpoint_events(client, kind.step, indexed, kind.signal)
                    unindexed = await touchpoint_events(client, kind.step, plain, kind.signal)
                    raw = await raw_events(client, raw_queue, kind.raw, kind.signal)
                    tp_cost = tp.total() - tp_base.total()
                    raw_cost[kind.name] = raw.total() - raw_base.total()
                    rows.append(
                        [
                            kind.name,
                            tp_cost,
                            unindexed.total() - plain_base.total(),
                            raw_cost[kind.name],
                            tp_cost - raw_cost[kind.name],
                            added(tp, tp_base, raw, raw_base),
                        ]
                    )
    print(
        table(
            [
                "step kind",
                "touchpoint events",
                "touchpoint, index off",
                "hand-written",
                "extra",
                "extra events (indexed) vs hand-written",
            ],
            rows,
        )
    )
    print(
        table(
            ["run", "base events", ""],
            [
                ["touchpoint (start + end)", tp_base.total(), added(tp_base, raw_base)],
                ["touchpoint, index off", plain_base.total(), added(plain_base, raw_base)],
                ["hand-written", raw_base.total(), ""],
            ],
        )
    )
    print(
        table(
            [
                "example run (tests/histories)",
                "steps",
                "events",
                "hand-written min",
                "extra",
                "upserts",
                "workflow tasks",
            ],
            example_rows(raw_cost, raw_base.total()),
        )
    )
    worst = max(row[1] - row[3] for row in rows)  # type: ignore[operator]
    print(
        f"most extra events on one step kind (indexed): {worst}: "
        f"{verdict(worst, 0, higher_is_better=False)}"
    )
    worst_plain = max(row[2] - row[3] for row in rows)  # type: ignore[operator]
    print(
        f"most extra events on one step kind (index off): {worst_plain}: "
        f"{verdict(worst_plain, 0, higher_is_better=False)}"
    )


if __name__ == "__main__":
    run(main)
