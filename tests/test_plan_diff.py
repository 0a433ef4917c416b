"""``touchpoint plan``'s structural diff (:mod:`ops.plandiff`): each kind of change between two
compiled versions, pinned as the lines a pull request shows."""

from __future__ import annotations

from ops.plandiff import diff, edges, step_fate
from tests.conftest import ROOT
from tests.temporal import plan_from
from workflows.plan import Plan

BASE = """
id: welcome
name: Welcome
category: marketing
trigger:
  event: Signed Up
exit_when:
  - event: Unsubscribed
    reason: unsubscribed
goal:
  event: Order Completed
  within: 30d
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: pause
    wait: 2d
  - id: answer
    wait_for: Order Completed
    timeout: 3d
    on_timeout: nudge
  - id: vip
    branch:
      - if: "event.properties.total > 100"
        goto: thanks
    else: end
  - id: thanks
    send: email
    template: apology
  - end
  - id: nudge
    split:
      - name: a
        percent: 50
        goto: survey
      - name: b
        percent: 50
        goto: end
  - id: survey
    send: email
    template: apology
"""


def compiled(text: str = BASE) -> Plan:
    return plan_from(text)


def lines(before: str, after: str) -> list[str]:
    return [f"{c.sign} {c.what} {c.detail}" for c in diff(compiled(before), compiled(after))]


def test_the_same_version_has_no_change() -> None:
    assert diff(compiled(), compiled()) == []


def test_nothing_deployed_adds_every_step_and_edge() -> None:
    changes = diff(None, compiled())
    steps = [c.name for c in changes if c.what == "step"]
    assert steps == list(compiled().nodes) and {c.sign for c in changes} == {"+"}
    assert sum(c.what == "edge" for c in changes) == len(edges(compiled()))
    assert not any(c.what == "journey" for c in changes)


def test_a_template_and_a_wait_duration() -> None:
    after = BASE.replace("template: newsletter-welcome", "template: apology", 1).replace(
        "wait: 2d", "wait: 3d"
    )
    assert lines(BASE, after) == [
        '~ step hello: template: "newsletter-welcome" → "apology"',
        "~ step pause: seconds: 2d → 3d",
    ]


def test_wait_for_event_and_timeout() -> None:
    after = BASE.replace("wait_for: Order Completed", "wait_for: Cart Viewed").replace(
        "timeout: 3d", "timeout: 1d"
    )
    assert lines(BASE, after) == [
        '~ step answer: match.event: "Order Completed" → "Cart Viewed"',
        "~ step answer: timeout_seconds: 3d → 1d",
    ]


def test_a_branch_condition_is_a_step_change_not_an_edge_removed_and_added() -> None:
    after = BASE.replace("total > 100", "total > 200")
    assert lines(BASE, after) == [
        '~ step vip: cases[0].condition: "event.properties.total > 100" → '
        '"event.properties.total > 200"',
    ]


def test_a_branch_case_that_leads_elsewhere_is_an_edge_change() -> None:
    after = BASE.replace("goto: thanks", "goto: nudge").replace("else: end", "else: thanks")
    assert lines(BASE, after) == [
        "- edge vip --event.properties.total > 100--> thanks",
        "- edge vip --else--> end",
        "+ edge vip --event.properties.total > 100--> nudge",
        "+ edge vip --else--> thanks",
    ]


def test_split_weights() -> None:
    after = BASE.replace("percent: 50\n        goto: survey", "percent: 70\n        goto: survey")
    after = after.replace("percent: 50\n        goto: end", "percent: 30\n        goto: end")
    assert lines(BASE, after) == [
        "~ step nudge: paths[0].percent: 50 → 70",
        "~ step nudge: paths[1].percent: 50 → 30",
    ]


def test_a_removed_step_and_its_edges() -> None:
    after = BASE.replace("goto: survey", "goto: end").replace(
        "  - id: survey\n    send: email\n    template: apology\n", ""
    )
    assert lines(BASE, after) == [
        "- step survey: send email apology",
        "- edge nudge --a 50%--> survey",
        "- edge survey --> end",
        "+ edge nudge --a 50%--> end",
    ]


def test_an_added_step_between_two() -> None:
    after = BASE.replace("  - id: pause\n", "  - id: breathe\n    wait: 1h\n  - id: pause\n")
    assert lines(BASE, after) == [
        "+ step breathe: wait 1h",
        "- edge hello --> pause",
        "+ edge hello --> breathe",
        "+ edge breathe --> pause",
    ]


def test_a_step_of_another_kind() -> None:
    after = BASE.replace("  - id: pause\n    wait: 2d\n", "  - id: pause\n    wait: 2d\n", 1)
    after = after.replace(
        "id: thanks\n    send: email\n    template: apology", "id: thanks\n    wait: 1d"
    )
    assert lines(BASE, after) == ["~ step thanks: send email apology → wait 1d"]


def test_journey_fields_trigger_goal_exits_and_entry() -> None:
    after = (
        BASE.replace("event: Signed Up", "event: Account Created")
        .replace("within: 30d", "within: 14d")
        .replace("reason: unsubscribed", "reason: opted out")
        .replace("category: marketing", "category: marketing\nentry:\n  reentry: once")
    )
    assert lines(BASE, after) == [
        '~ journey trigger.event: "Signed Up" → "Account Created"',
        '~ journey entry.policy: "one_at_a_time" → "once"',
        '~ journey exits[0].reason: "unsubscribed" → "opted out"',
        "~ journey goal.within_seconds: 30d → 2w",
    ]


def test_a_goal_removed_is_shown_whole() -> None:
    after = BASE.replace("goal:\n  event: Order Completed\n  within: 30d\n", "")
    (change,) = [c for c in diff(compiled(BASE), compiled(after)) if c.what == "journey"]
    assert change.detail.startswith('goal: {"condition": null, "event": "Order Completed"')
    assert change.detail.endswith("→ none") and change.after is None


def test_what_a_new_version_does_to_the_step_a_run_waits_at() -> None:
    removed = BASE.replace("goto: survey", "goto: end").replace(
        "  - id: survey\n    send: email\n    template: apology\n", ""
    )
    longer = BASE.replace("timeout: 3d", "timeout: 5d")
    elsewhere = BASE.replace("else: end", "else: nudge")
    old = compiled()
    assert step_fate(old, compiled(removed), "survey") == "removed"
    assert step_fate(old, compiled(removed), "answer") == "kept"
    assert step_fate(old, compiled(longer), "answer") == "changed"
    assert step_fate(old, compiled(elsewhere), "vip") == "changed", "where it leads changed"


def test_a_scheduled_journeys_time_and_audience() -> None:
    before = (ROOT / "journeys" / "monday-newsletter.yaml").read_text()
    after = before.replace("every: monday 09:00", "every: tuesday 10:00").replace(
        "'laptops' in", "'phones' in"
    )
    assert lines(before, after) == [
        '~ journey schedule.weekdays[0]: 0 → 1; schedule.time: "09:00" → "10:00"; '
        "schedule.audience: \"'laptops' in profile.traits.interests | default([]) and "
        "profile.traits.email_opt_in | default(false)\" → \"'phones' in "
        'profile.traits.interests | default([]) and profile.traits.email_opt_in | default(false)"',
    ]
