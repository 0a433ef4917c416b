"""History cost, measured now on the dev server against a hand-written workflow (RawJourney):

1. the events each step kind adds to a run, beside the hand-written minimum for the same step
   (the baseline for a step is the events of a run without it);
2. typical runs end to end — the throughput journey (3 sends, 2 waits) and the example
   ``newsletter-welcome`` (3 sends, 3 waits, a branch on the profile, a split) — their events,
   history bytes, the run's input in the start event, and each send's request and template
   context (issue 13: input under 1 KB, context trimmed to what the template reads);
3. the recorded example runs in tests/histories (recorded earlier, not in this run).

Runs start as the router starts them (input version 4, a reference to the plan); the workers
run in this process, one with search attributes (the default) and one without; the profile a
run reads comes from the recording stand-in (the store, in production)."""

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

from payloads import RunSizes, sizes
from raw_workflow import RawJourney
from report import header, table, verdict
from stack import BENCH, ROOT, connect, dev_server, run, temporary_directory
from starts import (
    DAY_IN_SECONDS,
    compile_journey,
    profile,
    project_context,
    project_plans,
    start_journey,
    start_raw,
    trigger,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from language.validator import compile_text
from ops.workers import WorkerOptions, build_workers
from simulation.recording import RecordingActivities
from workflows import registry
from workflows.models import RunSettings
from workflows.plan import Plan
from workflows.registry import Deployment

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


@dataclass(frozen=True)
class Typical:
    """A whole journey, and the hand-written workflow doing the same sends and waits."""

    name: str
    plan: Plan
    raw: tuple[str, ...]
    customer: str  # fixed: the split lands on the same path in every run (not the holdout)


def typical_journeys() -> list[Typical]:
    three = compile_journey(BENCH / "throughput-journey.yaml")
    newsletter = project_plans()["newsletter-welcome"]
    return [
        Typical(
            "3 sends + 2 waits (throughput journey)",
            three,
            ("send:a", "wait:1", "send:b", "wait:1", "send:c"),
            "typical-1",
        ),
        Typical(
            "newsletter-welcome (example)",
            newsletter,
            # send, wait 2d, branch, set, wait_until, send, wait 5d, split, send
            ("send:a", "wait:2", "wait:1", "send:b", "wait:5", "send:c"),
            "typical-1",
        ),
    ]


def compile_step(step: str | None) -> Plan:
    plan, problems, _ = compile_text(journey_yaml(step), "bench-kind.yaml", project_context())
    if plan is None:
        raise SystemExit("\n".join(p.format() for p in problems))
    registry.register([plan])  # what a worker does with the plans it compiled
    return plan


def event_types(history: Any) -> collections.Counter[str]:
    return collections.Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
    )


async def finished_history(
    handle: WorkflowHandle[Any, Any], signal: bool, event: Any = None
) -> Any:
    if signal:
        for _ in range(300):
            types = event_types(await handle.fetch_history())
            if types["TIMER_STARTED"]:
                break
            await asyncio.sleep(0.05)
        await handle.signal("event", event)
    await handle.result()
    return await handle.fetch_history()


async def touchpoint_history(
    client: Client,
    plan: Plan,
    settings: RunSettings,
    recording: RecordingActivities,
    signal: bool = False,
    customer: str | None = None,
) -> Any:
    customer = customer or f"h-{uuid.uuid4().hex[:10]}"
    recording.profiles[customer] = profile(customer)  # what read_profile finds in the store
    handle = await start_journey(client, plan, customer, settings)
    awaited = trigger(plan, customer).model_copy(update={"event": "Bench Event"})
    return await finished_history(handle, signal, awaited)


async def touchpoint_events(
    client: Client,
    step: str | None,
    settings: RunSettings,
    signal: bool,
    recording: RecordingActivities,
) -> collections.Counter[str]:
    plan = compile_step(step)
    return event_types(await touchpoint_history(client, plan, settings, recording, signal))


async def raw_history(
    client: Client, queue: str, steps: tuple[str, ...], signal: bool = False
) -> Any:
    handle = await start_raw(client, queue, f"h-{uuid.uuid4().hex[:10]}", steps)
    awaited = {
        "message_id": "m",
        "event": "Bench Event",
        "customer_id": "c",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    return await finished_history(handle, signal, awaited)


async def raw_events(
    client: Client, queue: str, steps: tuple[str, ...], signal: bool
) -> collections.Counter[str]:
    return event_types(await raw_history(client, queue, steps, signal))


def size_row(journey: str, side: str, found: RunSizes, raw: RunSizes) -> list[object]:
    request, context, profile_bytes = found.per_send
    return [
        journey,
        side,
        found.events,
        found.events / raw.events,
        found.history_bytes,
        found.input_bytes,
        found.started_event_bytes,
        found.signal_bytes,
        found.sends,
        request,
        context,
        profile_bytes,
        found.local_activities,
        found.types["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"],
        found.types["WORKFLOW_TASK_COMPLETED"],
    ]


SIZE_HEADERS = [
    "journey",
    "run",
    "events",
    "vs hand-written",
    "history bytes",
    "input bytes",
    "start event bytes",
    "signal bytes",
    "sends",
    "SendRequest bytes/send",
    "context bytes/send",
    "profile bytes/send",
    "local activities",
    "upserts",
    "workflow tasks",
]


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
        kinds = [  # entries that are no step of their own (a wait "moved" …) cost no step
            per_timeline[entry["kind"]]
            for entry in result["timeline"]
            if entry["kind"] in per_timeline
        ]
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
            raw_queue = "hist-raw"
            recording = RecordingActivities(lookups=LOOKUPS)
            typical = typical_journeys()
            registry.register(t.plan for t in typical)
            async with AsyncExitStack() as stack:
                for prefix, index_runs in (("hist-", True), ("histn-", False)):
                    options = WorkerOptions(
                        queue_prefix=prefix,
                        deployment=Deployment(
                            index_runs=index_runs, default_timezone="Europe/Berlin"
                        ),
                    )
                    for worker in build_workers(client, recording.all(), options):
                        await stack.enter_async_context(worker)
                await stack.enter_async_context(
                    Worker(
                        client,
                        task_queue=raw_queue,
                        workflows=[RawJourney],
                        activities=recording.all(),
                    )
                )
                indexed = RunSettings(queue_prefix="hist-", time_scale=DAY_IN_SECONDS)
                plain = RunSettings(
                    queue_prefix="histn-", time_scale=DAY_IN_SECONDS, index_runs=False
                )
                size_rows: list[list[object]] = []
                worst_input = 0
                for journey in typical:
                    raw_sizes = sizes(await raw_history(client, raw_queue, journey.raw))
                    for side, settings in (("touchpoint", indexed), ("index off", plain)):
                        found = sizes(
                            await touchpoint_history(
                                client, journey.plan, settings, recording, customer=journey.customer
                            )
                        )
                        worst_input = max(worst_input, found.input_bytes)
                        size_rows.append(size_row(journey.name, side, found, raw_sizes))
                    size_rows.append(size_row(journey.name, "hand-written", raw_sizes, raw_sizes))
                tp_base = await touchpoint_events(client, None, indexed, False, recording)
                plain_base = await touchpoint_events(client, None, plain, False, recording)
                raw_base = await raw_events(client, raw_queue, (), False)
                rows, raw_cost = [], {}
                for kind in KINDS:
                    tp = await touchpoint_events(client, kind.step, indexed, kind.signal, recording)
                    unindexed = await touchpoint_events(
                        client, kind.step, plain, kind.signal, recording
                    )
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
    print(table(SIZE_HEADERS, size_rows))
    print(
        table(
            [
                "recorded example run (tests/histories, not this run)",
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
    print(
        f"largest run input (start event payload): {worst_input} bytes: "
        f"{verdict(worst_input, 1024, higher_is_better=False)}"
    )
    for row in size_rows[::3]:
        print(f"events per run, {row[0]}, touchpoint / hand-written = {row[3]:.2f}")
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
