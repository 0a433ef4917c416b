"""timeline_differences finds what differs between two simulations, and only that."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from activities.messages import RenderedMessage
from simulation.simulator import NotEntered, SimulatedRun, SimulationResult
from tests.conformance.compare import timeline_differences
from workflows.models import Outcome, TimelineEntry

pytestmark = pytest.mark.conformance

START = datetime.fromisoformat("2027-01-04T09:00:00+00:00")


def result() -> SimulationResult:
    """Ann's run: a welcome, two days' wait, a reminder; Bob did not enter."""
    day = timedelta(days=1)
    timeline = [
        TimelineEntry(
            at=START,
            step="welcome",
            kind="sent",
            detail="email: hello",
            channel="email",
            message_id="m1",
            to="ann@example.com",
            subject="Hello ann",
            template="hello",
        ),
        TimelineEntry(at=START + 2 * day, step="wait-1", kind="waited", detail="2d"),
        TimelineEntry(
            at=START + 2 * day,
            step="reminder",
            kind="sent",
            detail="email: nudge",
            channel="email",
            message_id="m2",
            to="ann@example.com",
            subject="Still thinking, ann?",
            template="nudge",
        ),
    ]
    run = SimulatedRun(
        journey_id="welcome",
        customer_id="ann",
        key=None,
        workflow_id="journey/welcome/x",
        entered_at=START,
        trigger="Start",
        outcome=Outcome(kind="completed", step="end", at=START + 2 * day),
        current="end",
        timeline=timeline,
    )
    return SimulationResult(
        start=START,
        end=START + 10 * day,
        plans=[],
        customers=[],
        runs=[run],
        not_entered=[
            NotEntered(START, "welcome", "bob", "Start", "entered before (reentry: once)")
        ],
        messages={
            "m1": RenderedMessage(template="hello", locale="en", subject="Hello ann"),
            "m2": RenderedMessage(template="nudge", locale="en", subject="Still thinking, ann?"),
        },
    )


def test_the_same_story_has_no_differences() -> None:
    assert timeline_differences(result(), result()) == []


def test_milliseconds_of_server_clock_are_not_a_difference() -> None:
    drifted = result()
    entry = drifted.runs[0].timeline[1]
    drifted.runs[0].timeline[1] = entry.model_copy(
        update={"at": entry.at + timedelta(milliseconds=3)}
    )
    assert timeline_differences(result(), drifted) == []


def test_a_message_sent_at_another_time_is_a_difference() -> None:
    later = result()
    entry = later.runs[0].timeline[2]
    later.runs[0].timeline[2] = entry.model_copy(update={"at": entry.at + timedelta(hours=1)})
    assert timeline_differences(result(), later) == [
        "welcome ann run 1: timeline[2] (reminder sent): "
        "at '2027-01-06T09:00:00Z' ≠ '2027-01-06T10:00:00Z'"
    ]


def test_a_missing_message_is_a_difference() -> None:
    without_send = result()
    del without_send.runs[0].timeline[2]
    del without_send.messages["m2"]
    assert timeline_differences(result(), without_send) == [
        "welcome ann run 1: timeline[2]: only in a: at='2027-01-06T09:00:00Z' step='reminder' "
        "kind='sent' detail='email: nudge' channel='email' to='ann@example.com' "
        "subject='Still thinking, ann?' template='nudge' message='nudge/en: Still thinking, ann?'"
    ]


def test_a_send_without_its_message_is_a_difference() -> None:
    unrendered = result()
    del unrendered.messages["m1"]
    assert timeline_differences(result(), unrendered) == [
        "welcome ann run 1: timeline[0] (welcome sent): message 'hello/en: Hello ann' ≠ 'missing'"
    ]


def test_an_extra_run_is_a_difference() -> None:
    twice = result()
    again = copy.deepcopy(twice.runs[0])
    twice.runs.append(replace(again, entered_at=START + timedelta(days=3), timeline=[]))
    assert timeline_differences(result(), twice) == [
        "welcome ann run 2: only in b (entered 2027-01-07T09:00:00Z)"
    ]


def test_another_outcome_and_step_are_differences() -> None:
    exited = result()
    run = exited.runs[0]
    exited.runs[0] = replace(
        run,
        outcome=Outcome(kind="exited", reason="stopped", step="wait-1", at=START),
        current="wait-1",
    )
    assert timeline_differences(result(), exited) == [
        "welcome ann run 1: current: 'end' ≠ 'wait-1'",
        "welcome ann run 1: outcome: completed step='end' at=2027-01-06T09:00:00Z ≠ "
        "exited reason='stopped' step='wait-1' at=2027-01-04T09:00:00Z",
    ]


def test_a_refused_entry_on_one_side_only_is_a_difference() -> None:
    everyone_in = result()
    everyone_in.not_entered = []
    assert timeline_differences(result(), everyone_in) == [
        "not entered, only in a: 2027-01-04T09:00:00Z welcome bob (Start): "
        "entered before (reentry: once)"
    ]


def test_a_message_no_timeline_mentions_is_a_difference() -> None:
    stray = result()
    stray.messages["m9"] = RenderedMessage(template="hello", locale="en")
    assert timeline_differences(result(), stray) == [
        "messages no timeline mentions: 0 in a, 1 in b"
    ]
