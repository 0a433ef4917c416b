"""Date-based entry in the language: ``trigger.date`` compiles into ``Plan.date_entry`` (a date
in the profile) or into a first wait (a date in the trigger event); ``validate`` reports bad
dates at file:line:col with hints (the wording is pinned); existing journeys keep their
versions."""

from __future__ import annotations

import pytest

from language.schedules import describe_date
from language.validator import compile_text
from tests.temporal import CONTEXT, plan_from
from workflows.plan import BROADCAST_EVENT, DATE_STEP, DateRule, WaitUntilNode

STEPS = "steps:\n  - send: email\n    template: newsletter-welcome\n"


def dated(trigger: str) -> str:
    return f"id: dated\nname: Dated\ncategory: marketing\ntrigger:\n{trigger}{STEPS}"


def problems(text: str) -> list[str]:
    plan, found, _ = compile_text(text, "dated.yaml", CONTEXT)
    assert plan is None
    return [p.format() for p in found]


def test_a_date_in_the_profile_compiles_into_the_plans_date_rule() -> None:
    plan = plan_from(
        dated(
            "  date:\n    profile: traits.birthday\n    every: year\n    offset: -1d\n"
            '    at: "9:30"\n  audience: profile.traits.vip | default(false)\n'
        )
    )
    assert plan.trigger.event == BROADCAST_EVENT, "no shop event starts it"
    assert plan.schedule is None
    assert plan.date_entry == DateRule(
        path="traits.birthday",
        every="year",
        offset_days=-1,
        time="09:30",
        timezone=CONTEXT.config.defaults.timezone,
        audience="profile.traits.vip | default(false)",
    )
    assert describe_date(plan.date_entry) == (
        "profile.traits.birthday every year, 1 day before, at 09:30 local time "
        f"(default {CONTEXT.config.defaults.timezone})"
    )


def test_a_date_in_the_event_is_an_event_trigger_whose_run_first_waits_for_it() -> None:
    plan = plan_from(
        dated(
            "  event: Laptop Delivered\n  key: event.properties.order_id\n"
            '  date:\n    property: warranty_ends\n    offset: -30d\n    at: "09:00"\n'
        )
    )
    assert (plan.trigger.event, plan.trigger.key) == (
        "Laptop Delivered",
        "event.properties.order_id",
    )
    assert plan.date_entry is None and plan.start == DATE_STEP
    assert plan.nodes[DATE_STEP] == WaitUntilNode(
        id=DATE_STEP,
        date="event.properties.warranty_ends",
        offset_seconds=-30 * 86_400,
        time="09:00",
        if_past="skip",
        next="send-1",
    )
    read = plan.event_properties
    assert read is None or "warranty_ends" in read, "the router hands the runs the date"


def test_journeys_without_a_date_keep_their_plan_hash() -> None:
    """``date_entry`` and ``if_past`` are left out of the hash while unset."""
    plan = plan_from(dated("  event: Newsletter Subscribed\n"))
    content = plan.model_dump(mode="json")
    assert "date_entry" in content and plan.date_entry is None
    bare = plan.model_copy(update={"version": ""})
    assert bare.content_hash() == plan.version
    with_date = plan.model_copy(update={"date_entry": DateRule(path="traits.birthday")})
    assert with_date.content_hash() != plan.version


MISTAKES = [
    (
        '  date:\n    profile: traits.birthday\n    every: month\n    at: "09:00"\n',
        'dated.yaml:7:12: trigger.date.every: expected one of year, once, got "month" '
        "(hint: write one of these exactly as shown)",
    ),
    (
        "  date:\n    profile: traits.birthday\n    every: year\n    offset: 30 days\n"
        '    at: "09:00"\n',
        'dated.yaml:8:13: trigger.date.offset: expected an offset like "-1d" or "+2h", got '
        '"30 days" (hint: a sign, a whole number and a unit, e.g. -1d or +2h)',
    ),
    (
        "  date:\n    profile: traits.birthday\n    every: year\n    offset: -12h\n"
        '    at: "09:00"\n',
        'dated.yaml:8:13: trigger.date.offset: the offset of a date is whole days, got "-12h" '
        '(hint: the time of day is "at": write e.g. offset: -30d with at: "09:00")',
    ),
    (
        '  date:\n    profile: traits.birthday\n    every: year\n    at: "25:00"\n',
        'dated.yaml:8:9: trigger.date.at: "25:00" is not a time of day: hours go from 0 to 23, '
        'minutes from 00 to 59 (hint: hours 0-23 and minutes, e.g. time: "09:00" or '
        'time: "18:30")',
    ),
    (
        '  date:\n    profile: birthday\n    every: year\n    at: "09:00"\n',
        "dated.yaml:6:14: trigger.date.profile: expected a trait of the profile like "
        '"traits.birthday", got "birthday" (hint: write it in the form of the example)',
    ),
    (
        "  event: Laptop Delivered\n  date:\n    profile: traits.birthday\n    every: year\n"
        '    at: "09:00"\n',
        "dated.yaml:7:5: trigger.date.profile: a date in the profile starts runs from the "
        'calendar: it does not go with "event" (hint: remove event, or read the date from the '
        "event with property: <name>)",
    ),
    (
        "  schedule:\n    every: monday 09:00\n  date:\n    profile: traits.birthday\n"
        '    every: year\n    at: "09:00"\n',
        'dated.yaml:7:3: trigger.date: a trigger has either "date" or "schedule", not both '
        "(hint: a date journey fires for each customer on their own date: remove schedule)",
    ),
    (
        '  date:\n    profile: traits.birthday\n    at: "09:00"\n',
        'dated.yaml:6:5: trigger.date: a date in the profile needs "every": year (a birthday, '
        "an anniversary) or once (a one-off date) (hint: e.g. every: year)",
    ),
    (
        '  date:\n    property: warranty_ends\n    at: "09:00"\n',
        'dated.yaml:6:5: trigger.date.property: a date from an event property needs the "event" '
        "that carries it (hint: e.g. event: Laptop Delivered)",
    ),
    (
        "  event: Laptop Delivered\n  date:\n    property: warranty_ends\n    every: year\n"
        '    at: "09:00"\n',
        "dated.yaml:8:12: trigger.date.every: a date from an event is one date: every: year "
        "goes with a date in the profile (hint: remove every (or write every: once))",
    ),
    (
        "  key: event.properties.x\n  date:\n    profile: traits.birthday\n    every: year\n"
        '    at: "09:00"\n',
        "dated.yaml:5:3: trigger.key: trigger.key reads the triggering event, and a date "
        "journey from the profile has none (hint: a date journey has one run per customer and "
        "date: remove key)",
    ),
]


@pytest.mark.parametrize(("trigger", "expected"), MISTAKES)
def test_validate_names_each_date_mistake_at_its_place_with_a_hint(
    trigger: str, expected: str
) -> None:
    assert problems(dated(trigger)) == [expected]


def test_neither_profile_nor_property_says_how_both_forms_look() -> None:
    [found] = problems(dated('  date:\n    every: year\n    at: "09:00"\n'))
    assert found.startswith('dated.yaml:6:5: trigger.date: a date trigger reads "profile"')
    assert "date: {profile: traits.birthday, every: year" in found
    assert "property: warranty_ends, offset: -30d" in found
