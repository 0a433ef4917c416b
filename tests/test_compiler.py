"""Compiling journeys into plans: structure, jumps, versions and the JSON round trip."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from language.validator import compile_text
from workflows.plan import (
    BranchNode,
    EndNode,
    Plan,
    SendNode,
    SplitNode,
    WaitForNode,
    WaitNode,
    WaitUntilNode,
)

JOURNEY = """
id: sample
name: Sample
category: marketing
trigger:
  event: Order Completed
  key: event.properties.order_id
entry:
  reentry: one_at_a_time
  after: 30d
exit_when:
  - event: Order Refunded
    key: event.properties.order_id
goal:
  event: Review Written
  within: 2w
steps:
  - id: delivered
    wait_for: Order Delivered
    key: event.properties.order_id
    timeout: 14d
    on_timeout: late
  - set:
      tries: 0
  - id: morning
    stage: retention
    wait_until:
      time: "09:30"
      days: [mon, wed, fri]
  - send: webhook
    to: crm
    template: crm-note
    skip_on_failure: true
  - id: which
    branch:
      - if: vars.tries > 1
        goto: end
  - goto: ab
  - id: ab
    split:
      - {name: a, percent: 90}
      - {name: control, percent: 10, holdout: true, goto: late}
  - wait: 1d12h
  - end
  - id: late
    wait_until:
      date: events.delivered.timestamp
      offset: -1d
"""


def compile_ok(text: str) -> Plan:
    from config.project import ProjectConfig
    from language.compiler import ProjectContext

    config = ProjectConfig.model_validate(
        {"destinations": {"crm": {"type": "webhook", "url": "https://crm.example/h"}}}
    )
    plan, problems, _ = compile_text(textwrap.dedent(text), "sample.yaml", ProjectContext(config))
    assert problems == []
    assert plan is not None
    return plan


def test_the_plan_is_a_flat_graph_with_resolved_jumps() -> None:
    plan = compile_ok(JOURNEY)
    assert plan.start == "delivered"
    delivered = plan.nodes["delivered"]
    assert isinstance(delivered, WaitForNode)
    assert (delivered.on_event, delivered.on_timeout) == ("set-2", "late")
    assert delivered.timeout_seconds == 14 * 86_400
    assert delivered.match.key == "event.properties.order_id"
    morning = plan.nodes["morning"]
    assert isinstance(morning, WaitUntilNode)
    assert (morning.time, morning.days, morning.stage) == ("09:30", (0, 2, 4), "retention")
    send = plan.nodes["send-4"]
    assert isinstance(send, SendNode) and send.skip_on_failure and send.destination == "crm"
    which = plan.nodes["which"]
    assert isinstance(which, BranchNode)
    assert [c.next for c in which.cases] == ["end"]
    assert which.otherwise == "ab"  # the default next step is a goto, followed at compile time
    assert "goto-6" not in plan.nodes
    split = plan.nodes["ab"]
    assert isinstance(split, SplitNode)
    assert [(p.name, p.percent, p.next, p.holdout) for p in split.paths] == [
        ("a", 90, "wait-8", False),
        ("control", 10, "late", True),
    ]
    wait = plan.nodes["wait-8"]
    assert isinstance(wait, WaitNode) and wait.seconds == 129_600
    assert wait.next == "end" and "end-9" not in plan.nodes  # "- end" is a jump to the end
    late = plan.nodes["late"]
    assert isinstance(late, WaitUntilNode)
    assert (late.date, late.offset_seconds, late.next) == (
        "events.delivered.timestamp",
        -86_400,
        "end",
    )
    assert isinstance(plan.nodes["end"], EndNode)


def test_journey_rules_compile_to_seconds_and_expressions() -> None:
    plan = compile_ok(JOURNEY)
    assert plan.trigger.key == "event.properties.order_id"
    assert (plan.entry.policy, plan.entry.cooldown_seconds) == ("one_at_a_time", 30 * 86_400)
    assert plan.exits[0].reason == "Order Refunded"
    assert plan.goal is not None and plan.goal.within_seconds == 14 * 86_400
    assert plan.nodes["set-2"].model_dump()["assignments"] == {"tries": "0"}
    assert plan.listened_events() == {"Order Refunded", "Review Written", "Order Delivered"}


def test_round_trip_through_json_gives_an_equal_plan() -> None:
    plan = compile_ok(JOURNEY)
    loaded = Plan.model_validate_json(plan.model_dump_json())
    assert loaded == plan
    assert loaded.content_hash() == plan.version


def test_the_version_is_a_content_hash() -> None:
    first, again = compile_ok(JOURNEY), compile_ok(JOURNEY)
    assert first.version == again.version and len(first.version) == 16
    changed = compile_ok(JOURNEY.replace("wait: 1d12h", "wait: 2d"))
    assert changed.version != first.version
    commented = compile_ok(JOURNEY.replace("  - end\n", "  # done\n  - end\n"))
    assert commented.version == first.version  # comments and layout do not matter


def test_plans_are_immutable() -> None:
    plan = compile_ok(JOURNEY)
    with pytest.raises(ValidationError, match="frozen"):
        plan.start = "late"  # type: ignore[misc]
