"""Simulations are exact: the same inputs give the same output every time, and events that land
exactly on a boundary (the end of a cooldown, of a goal window, of a wait) fall on the side
docs/simulate.md says — on Temporal's real time-skipping server, whose clock also moves with
real time while steps are worked on."""

from __future__ import annotations

import asyncio
import difflib
import json
from collections import Counter
from pathlib import Path

import pytest

from simulation.commands import quiet_sdk_logs, text_report
from simulation.report import as_json
from simulation.setup import build_scenario, load_project
from simulation.simulator import Simulator
from tests.conftest import ROOT

CONFIG = """\
defaults:
  locale: en
  timezone: Europe/Berlin
  sender: {email: hello@shop.example, name: Shop}
email:
  provider: maildir
"""

JOURNEYS = {
    # re-entry: one run at a time, and not again within 7 days of the previous entry
    "cooldown": """\
id: cooldown
name: Cooldown
category: transactional
trigger: {event: Poke}
entry: {reentry: one_at_a_time, after: 7d}
steps:
  - id: hello
    send: email
    template: hello
""",
    # the goal counts within 3 days of entering
    "goal-window": """\
id: goal-window
name: Goal window
category: transactional
trigger: {event: Start, key: event.properties.k}
entry: {reentry: every_time}
goal: {event: Buy, key: event.properties.k, within: 3d}
steps:
  - wait: 10d
""",
    # a reply counts within 2 days; after that the timeout path runs
    "reply": """\
id: reply
name: Reply
category: transactional
trigger: {event: Ask, key: event.properties.k}
entry: {reentry: every_time}
steps:
  - id: answer
    wait_for: Reply
    key: event.properties.k
    timeout: 2d
    on_timeout: late
  - id: thanks
    send: email
    template: hello
  - end
  - id: late
    send: email
    template: hello
""",
    # a wait that ends at the very moment the goal event arrives
    "nudge": """\
id: nudge
name: Nudge
category: transactional
trigger: {event: Go}
goal: {event: Paid, within: 30d}
steps:
  - wait: 1d
  - id: nudge
    send: email
    template: hello
  - wait: 1d
""",
}

EVENTS = """\
- {at: "+0", event: Poke}
- {at: "+7d", event: Poke}                 # exactly at the end of the cooldown: enters
- {at: "+13d23h59m59s", event: Poke}       # a second short of 7 days after that: refused
- {at: "+0", event: Start, properties: {k: on-the-end}}
- {at: "+0", event: Start, properties: {k: after-the-end}}
- {at: "+3d", event: Buy, properties: {k: on-the-end}}        # counts
- {at: "+3d1s", event: Buy, properties: {k: after-the-end}}   # too late
- {at: "+0", event: Ask, properties: {k: on-the-end}}
- {at: "+0", event: Ask, properties: {k: before-the-end}}
- {at: "+0", event: Ask, properties: {k: after-the-end}}
- {at: "+2d", event: Reply, properties: {k: on-the-end}}              # still in time
- {at: "+1d23h59m59s", event: Reply, properties: {k: before-the-end}} # in time
- {at: "+2d1s", event: Reply, properties: {k: after-the-end}}         # too late
- {at: "+0", event: Go}
- {at: "+1d", event: Paid}                 # as the wait ends: converted, no nudge
"""


@pytest.fixture(scope="module")
def boundaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("boundaries")
    (root / "touchpoint.yaml").write_text(CONFIG)
    (root / "journeys").mkdir()
    for name, text in JOURNEYS.items():
        (root / "journeys" / f"{name}.yaml").write_text(text)
    (root / "templates" / "hello").mkdir(parents=True)
    (root / "templates" / "hello" / "en.html").write_text(
        "---\nsubject: Hello {{ profile.id }}\n---\n<p>Hi</p>\n"
    )
    (root / "profile.yaml").write_text("id: ann\nemail: ann@example.com\n")
    (root / "events.yaml").write_text(EVENTS)
    return root


def simulate_outputs(root: Path, runs: int) -> list[str]:
    """The JSON and the text of the same simulation, ``runs`` times (each on its own server)."""
    project, problems = load_project(root)
    assert project is not None, [p.format() for p in problems]
    scenario = build_scenario(
        project,
        list(JOURNEYS),
        profile=root / "profile.yaml",
        events=root / "events.yaml",
        start="2027-01-04T09:00:00Z",
        until="20d",
    )
    quiet_sdk_logs()
    simulator = Simulator(project.root, project.config)

    async def all_runs() -> list[str]:
        outputs = []
        for _ in range(runs):
            result = await simulator.run(scenario)
            text = text_report(result, None, project.config.defaults.timezone)
            outputs.append(json.dumps(as_json(result), indent=2) + "\n" + "\n".join(text))
        return outputs

    return asyncio.run(all_runs())


@pytest.mark.timeout(900)  # about 1 s a run; far more on a busy machine
def test_fifty_runs_of_the_same_simulation_are_byte_identical(boundaries: Path) -> None:
    outputs = simulate_outputs(boundaries, 50)
    variants = Counter(outputs)
    if len(variants) > 1:
        (usual, _), (other, _) = variants.most_common(2)
        diff = difflib.unified_diff(usual.splitlines(), other.splitlines(), lineterm="", n=1)
        pytest.fail(
            f"{len(variants)} different outputs ({sorted(variants.values())}):\n" + "\n".join(diff)
        )


def test_events_on_a_boundary_land_on_the_documented_side(boundaries: Path) -> None:
    (output,) = simulate_outputs(boundaries, 1)
    document = json.loads(output[: output.index("\n}\n") + 2])
    runs = {(run["journey"], run["key"], run["timeline"][0]["at"]): run for run in document["runs"]}

    # a re-trigger exactly at the end of the cooldown starts a new run; a second before, not
    assert [key[2] for key in runs if key[0] == "cooldown"] == [
        "2027-01-04T09:00:00Z",
        "2027-01-11T09:00:00Z",
    ]
    assert [(n["journey"], n["at"], n["reason"]) for n in document["not_entered"]] == [
        ("cooldown", "2027-01-18T08:59:59Z", "within the re-entry cooldown")
    ]

    # the goal event exactly at the end of the window counts; a second later, not
    start = "2027-01-04T09:00:00Z"
    assert runs[("goal-window", "on-the-end", start)]["outcome"] == "converted"
    assert runs[("goal-window", "on-the-end", start)]["timeline"][-1]["at"] == (
        "2027-01-07T09:00:00Z"
    )
    assert runs[("goal-window", "after-the-end", start)]["outcome"] == "completed"

    # the event wins over a timeout that ends at that very moment; a second later, not
    for key, at in (
        ("before-the-end", "2027-01-06T08:59:59Z"),
        ("on-the-end", "2027-01-06T09:00:00Z"),
    ):
        timeline = runs[("reply", key, start)]["timeline"]
        assert [(e["step"], e["kind"], e["at"]) for e in timeline[1:3]] == [
            ("answer", "event", at),
            ("thanks", "sent", at),
        ]
    too_late = runs[("reply", "after-the-end", start)]["timeline"]
    assert [(e["step"], e["kind"], e["at"]) for e in too_late[1:3]] == [
        ("answer", "timeout", "2027-01-06T09:00:00Z"),
        ("late", "sent", "2027-01-06T09:00:00Z"),
    ]

    # a goal event at the very end of a wait interrupts it: the step after it does not run
    nudge = runs[("nudge", None, start)]
    assert [(e["step"], e["kind"], e["at"]) for e in nudge["timeline"][1:]] == [
        ("wait-1", "converted", "2027-01-05T09:00:00Z")
    ]


def test_the_docs_state_each_boundary_rule() -> None:
    text = " ".join((ROOT / "docs" / "simulate.md").read_text().split())
    for rule in (
        "A re-trigger exactly at the end of the cooldown starts a new run",
        "A goal event exactly at the end of the goal window counts",
        "An event at the very moment a wait or a `wait_for` timeout ends is in time",
        "`wait: 1d` is 24 hours",
    ):
        assert rule in text, rule


def test_a_population_on_the_boundaries_is_exact(boundaries: Path, tmp_path: Path) -> None:
    """Twenty customers through the same boundary events, routed concurrently: every one of
    them gets the same timeline, and two runs print the same JSON."""
    from typer.testing import CliRunner

    from cli import app

    customers = tmp_path / "customers.csv"
    customers.write_text(
        "id,email\n" + "".join(f"c{i:02d},c{i:02d}@x.example\n" for i in range(20))
    )
    args = ["simulate", *JOURNEYS, "-C", str(boundaries), "--profiles", str(customers)]
    args += ["--events", str(boundaries / "events.yaml"), "--start", "2027-01-04T09:00:00Z"]
    args += ["--until", "20d", "--json"]
    outputs = [CliRunner().invoke(app, args).output for _ in range(2)]
    assert outputs[0] == outputs[1]
    document = json.loads(outputs[0])
    timelines: dict[str, list[str]] = {}
    for run in document["runs"]:
        customer = run["customer"]
        text = json.dumps([run["journey"], run["key"], run["outcome"], run["timeline"]])
        timelines.setdefault(customer, []).append(text.replace(customer, "someone"))
    assert len(timelines) == 20 and len({tuple(t) for t in timelines.values()}) == 1
    assert len(document["not_entered"]) == 20
    assert [n["customer"] for n in document["not_entered"]] == sorted(timelines)
