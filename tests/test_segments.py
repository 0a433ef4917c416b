"""Segment entry without Temporal: ``trigger.segment`` in the language (compiled into
``Plan.segment``; problems at file:line:col, wording pinned), the crossing rule as units, and
the store's profile change (before and after from one locked step, on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingestion.router import Routes
from ingestion.segments import crossed, crossing_tag
from language.validator import compile_text
from store.profiles import ProfileStore
from tests.conftest import Database, at_once
from tests.temporal import CONTEXT, plan_from
from workflows.evaluation import ExpressionFailed
from workflows.models import Profile
from workflows.plan import SEGMENT_EVENT

STEPS = "steps:\n  - send: email\n    template: newsletter-welcome\n"
VIP = "profile.traits.lifetime_value >= 1000"
NOW = datetime(2027, 3, 1, 9, tzinfo=UTC)


def journey(trigger: str, extra: str = "") -> str:
    return f"id: vip\nname: VIP\ncategory: marketing\ntrigger:\n{trigger}{extra}{STEPS}"


def problems(text: str) -> list[str]:
    plan, found, _ = compile_text(text, "vip.yaml", CONTEXT)
    assert plan is None
    return [p.format() for p in found]


def profile(**traits: object) -> Profile:
    return Profile(id="c1", traits=traits)


# --- the language ---------------------------------------------------------------------------


def test_a_segment_compiles_into_the_plan_and_no_event_starts_it() -> None:
    plan = plan_from(journey(f'  segment: "{VIP}"\n', "entry:\n  reentry: once\n"))
    assert (plan.segment, plan.trigger.event, plan.entry.policy) == (VIP, SEGMENT_EVENT, "once")
    routes = Routes.of({plan.journey_id: plan})
    assert routes.segments == (plan,)
    assert routes.triggers == {}


def test_the_segment_is_part_of_the_version() -> None:
    one = plan_from(journey(f'  segment: "{VIP}"\n'))
    two = plan_from(journey('  segment: "profile.traits.lifetime_value >= 2000"\n'))
    assert one.version != two.version
    event = plan_from(journey("  event: Signed Up\n"))
    assert "segment" not in event.model_dump(exclude_none=True)


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            "  segment: profile.traits.lifetime_value >= (\n",
            "vip.yaml:5:46: trigger.segment: invalid expression: the expression ends too early",
        ),
        (
            "  segment: event.properties.total > 5\n",
            'vip.yaml:5:12: trigger.segment: unknown name "event"',
        ),
        (
            "  segment: profile.lifetime_value > 5\n",
            'vip.yaml:5:20: trigger.segment: profile has no "lifetime_value" (hint: a '
            "customer's own data is under profile.traits, e.g. profile.traits.first_name)",
        ),
        (
            f"  event: Order Completed\n  segment: {VIP}\n",
            'vip.yaml:5:3: trigger.event: a segment trigger does not go with "event" (hint: a '
            "segment journey starts when an identify makes the condition true: remove event "
            "(or segment))",
        ),
        (
            f"  segment: {VIP}\n  schedule:\n    every: monday 09:00\n",
            'vip.yaml:6:3: trigger.schedule: a segment trigger does not go with "schedule" '
            "(hint: a scheduled journey goes out to its audience; a segment journey starts "
            "when a customer starts matching: keep one of them)",
        ),
        (
            f"  segment: {VIP}\n  if: event.properties.total > 5\n",
            'vip.yaml:6:3: trigger.if: a segment trigger does not go with "if": there is no '
            "triggering event to read (hint: put the whole condition in segment (it reads "
            "profile))",
        ),
        (
            f"  segment: {VIP}\n  key: event.properties.order_id\n",
            'vip.yaml:6:3: trigger.key: a segment trigger does not go with "key": there is no '
            "triggering event to read (hint: a segment journey has one run per crossing: "
            "remove key)",
        ),
        (
            f"  segment: {VIP}\n  audience: profile.traits.vip\n",
            'vip.yaml:6:3: trigger.audience: "audience" goes with "schedule"',
        ),
        (
            f"  segmnt: {VIP}\n",
            'vip.yaml:5:3: trigger.segmnt: unknown field "segmnt"',
        ),
    ],
)
def test_validate_reports_segment_problems_where_they_are(trigger: str, expected: str) -> None:
    found = problems(journey(trigger))
    assert any(p.startswith(expected) for p in found), found


def test_a_trigger_without_event_schedule_or_segment_says_all_three() -> None:
    found = problems(journey("  audience: profile.traits.vip\n"))
    assert any(
        p.startswith(
            'vip.yaml:5:3: trigger: a trigger needs "event" (a shop event starts each run), '
            '"schedule" (the journey goes out to an audience) or "segment"'
        )
        for p in found
    ), found


# --- the crossing rule ----------------------------------------------------------------------


def test_only_false_to_true_is_a_crossing() -> None:
    assert crossed(VIP, profile(lifetime_value=900), profile(lifetime_value=1000), NOW)
    assert not crossed(VIP, profile(lifetime_value=1200), profile(lifetime_value=1500), NOW)
    assert not crossed(VIP, profile(lifetime_value=1200), profile(lifetime_value=300), NOW)
    assert not crossed(VIP, profile(lifetime_value=300), profile(lifetime_value=999), NOW)


def test_a_new_customer_who_matches_at_once_crosses() -> None:
    assert crossed(VIP, None, profile(lifetime_value=5000), NOW)
    assert not crossed(VIP, None, profile(lifetime_value=5), NOW)


def test_gaining_what_the_condition_reads_is_a_crossing() -> None:
    laptops = "'laptops' in profile.traits.interests"
    assert crossed(laptops, profile(), profile(interests=["laptops"]), NOW)
    assert crossed(laptops, profile(interests=["phones"]), profile(interests=["laptops"]), NOW)
    assert not crossed(
        laptops, profile(interests=["laptops"]), profile(interests=["laptops", "x"]), NOW
    )


def test_a_profile_the_condition_cannot_read_enters_nobody() -> None:
    with pytest.raises(ExpressionFailed):
        crossed(VIP, profile(lifetime_value=5), profile(lifetime_value="lots"), NOW)


def test_each_call_tags_its_own_crossing() -> None:
    assert crossing_tag("key-1/m-1") == crossing_tag("key-1/m-1")
    assert crossing_tag("key-1/m-1") != crossing_tag("key-1/m-2")
    assert "m-1" not in crossing_tag("key-1/m-1")


# --- the store ------------------------------------------------------------------------------


def test_a_change_returns_the_profile_before_and_after(database: Database) -> None:
    store = ProfileStore(database.connect())
    first = store.change("c1", {"lifetime_value": 500})
    assert first.before is None and first.after.traits == {"lifetime_value": 500}
    second = store.change("c1", {"lifetime_value": 1500, "first_name": "Anna"})
    assert second.before == first.after
    assert second.after.traits == {"lifetime_value": 1500, "first_name": "Anna"}


def test_concurrent_changes_of_one_customer_cross_once(database: Database) -> None:
    """Eight identifies at once, each setting 1,500 on a customer at 500: the locked step
    serialises them, so exactly one saw 500 before — one crossing, not eight."""
    ProfileStore(database.connect()).change("c1", {"lifetime_value": 500})
    stores = [ProfileStore(database.connect()) for _ in range(4)]
    changes = at_once(
        [lambda s=s: s.change("c1", {"lifetime_value": 1500}) for s in stores for _ in range(2)]
    )
    assert sum(crossed(VIP, c.before, c.after, NOW) for c in changes) == 1


def test_undo_restores_the_profile_unless_it_changed_since(database: Database) -> None:
    store = ProfileStore(database.connect())
    store.change("c1", {"lifetime_value": 500})
    change = store.change("c1", {"lifetime_value": 1500})
    assert store.undo(change)
    assert store.get("c1") == change.before
    again = store.change("c1", {"lifetime_value": 1500})
    store.change("c1", {"first_name": "Anna"})  # another call since: kept
    assert not store.undo(again)
    assert store.get("c1") == Profile(
        id="c1", traits={"lifetime_value": 1500, "first_name": "Anna"}
    )
    new = store.change("c2", {"lifetime_value": 1500})
    assert store.undo(new)
    assert store.get("c2") is None


# --- touchpoint audience --------------------------------------------------------------------


def test_audience_counts_who_matches_a_segment_now(tmp_path: Path) -> None:
    from store.database import connect
    from tests.test_audience_cli import audience

    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    engine = connect(url)
    for i in range(12):  # every third has passed 1,000; c011 has no lifetime value yet
        traits = {} if i == 11 else {"lifetime_value": 1000 + i if i % 3 == 0 else 999}
        ProfileStore(engine).upsert(f"c{i:03d}", traits)
    engine.dispose()
    done = audience(url, "vip-thank-you", "--sample", "2")
    assert (done.returncode, done.stdout) == (
        0,
        "vip-thank-you: 4 of 12 profile(s) match now "
        "(segment: profile.traits.lifetime_value | default(0) >= 1000)\nc000\nc003\n",
    )
