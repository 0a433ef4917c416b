"""The generator of the conformance suite draws only valid journeys, and draws every construct
of the language it promises; fast (no simulator)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from language.compiler import ProjectContext
from language.validator import validate
from simulation.scenario import EventSpec
from tests.conformance.strategies import (
    DAYS,
    STARTS,
    TRIGGER,
    GeneratedCase,
    compile_journey,
    generated_cases,
    journey_documents,
    journey_yaml,
    project_context,
    write_project,
)
from tests.conformance.strategies import _one_trigger_a_moment as one_trigger_a_moment

pytestmark = pytest.mark.conformance

MANY = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="module")
def context(project: Path) -> ProjectContext:
    return project_context(project)


def test_the_generated_project_validates(project: Path) -> None:
    report = validate((), root=project)
    assert report.problems == [], [p.format() for p in report.problems]


def test_every_generated_journey_validates_and_every_construct_comes(
    context: ProjectContext,
) -> None:
    drawn: set[str] = set()

    @MANY
    @given(journey_documents())
    def check(document: dict[str, Any]) -> None:
        text = journey_yaml(document)
        plan, problems = compile_journey(text, context)
        assert problems == [], "\n".join([text, *(p.format() for p in problems)])
        assert plan is not None
        drawn.update(name for name, test in CONSTRUCTS.items() if test(document))

    check()
    assert sorted(set(CONSTRUCTS) - drawn) == []


def test_generated_streams_fall_in_the_window_in_time_order(context: ProjectContext) -> None:
    drawn: set[str] = set()

    @settings(MANY, max_examples=100)
    @given(generated_cases(context))
    def check(case: GeneratedCase) -> None:
        scenario = case.scenario
        moments = [at for at, _ in scenario.events]
        assert scenario.start in STARTS
        assert moments == sorted(moments)
        assert all(0 <= (at - scenario.start).days <= DAYS for at in moments)
        users = {c.id for c in scenario.customers}
        assert all(spec.user in users for _, spec in scenario.events)
        if len(moments) != len(set(moments)):
            drawn.add("events at the same moment")
        assert not _trigger_after_another_message(scenario.events), "left to chance on the server"
        if any(spec.message_id for _, spec in scenario.events):
            drawn.add("a retried message id")
        if any(spec.type == "identify" for _, spec in scenario.events):
            drawn.add("an identify")
        if len(scenario.plans) > 1:
            drawn.add("two journeys")

    check()
    assert drawn == {
        "events at the same moment",
        "a retried message id",
        "an identify",
        "two journeys",
    }


def _trigger_after_another_message(events: list[tuple[datetime, EventSpec]]) -> bool:
    """Whether a customer's trigger follows another of their messages at the same moment."""
    for index, (at, spec) in enumerate(events):
        if spec.event != TRIGGER:
            continue
        for other_at, other in events[:index]:
            same_moment = other_at == at and other.user == spec.user
            if same_moment and (spec.message_id is None or other.message_id != spec.message_id):
                return True
    return False


def test_a_trigger_after_another_message_of_the_moment_is_left_out() -> None:
    def spec(event: str, message_id: str | None = None) -> EventSpec:
        return EventSpec(at="+0", event=event, user="c0", message_id=message_id)

    streams = [
        (0, spec("Reply")),
        (0, spec(TRIGGER)),  # may find the run ended by the reply: left out
        (60, spec(TRIGGER, "m1")),
        (60, spec(TRIGGER, "m1")),  # a retry of the same message: kept, ingestion drops it
        (60, spec("Reply")),
        (120, spec(TRIGGER)),
        (120, spec("Buy")),  # after the trigger: kept
    ]
    kept = one_trigger_a_moment(streams)
    assert [(s, spec.event) for s, spec in kept] == [
        (0, "Reply"),
        (60, TRIGGER),
        (60, TRIGGER),
        (60, "Reply"),
        (120, TRIGGER),
        (120, "Buy"),
    ]


def _steps(document: dict[str, Any]) -> list[Any]:
    return list(document["steps"])


def _has_step(test: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda document: any(isinstance(s, dict) and test(s) for s in _steps(document))


CONSTRUCTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "trigger key": lambda d: "key" in d["trigger"],
    "trigger if": lambda d: "if" in d["trigger"],
    "entry after": lambda d: "after" in d["entry"],
    "entry if": lambda d: "if" in d["entry"],
    "reentry every_time": lambda d: d["entry"]["reentry"] == "every_time",
    "exit_when with key": lambda d: any("key" in r for r in d.get("exit_when", [])),
    "goal with key and if": lambda d: {"key", "if"} <= set(d.get("goal", {})),
    "end": lambda d: "end" in _steps(d),
    "send chat": _has_step(lambda s: s.get("send") == "chat"),
    "send webhook": _has_step(lambda s: s.get("send") == "webhook"),
    "send sms": _has_step(lambda s: s.get("send") == "sms"),
    "wait": _has_step(lambda s: "wait" in s),
    "wait_until with days": _has_step(lambda s: "days" in s.get("wait_until", {})),
    "wait_for with key": _has_step(lambda s: "wait_for" in s and "key" in s),
    "wait_for on_event": _has_step(lambda s: "on_event" in s),
    "wait_for on_timeout": _has_step(lambda s: "on_timeout" in s),
    "branch with else": _has_step(lambda s: "else" in s),
    "branch on vars": _has_step(lambda s: "vars." in str(s.get("branch", ""))),
    "split with holdout": _has_step(lambda s: "holdout" in str(s.get("split", ""))),
    "set": _has_step(lambda s: "set" in s),
}
