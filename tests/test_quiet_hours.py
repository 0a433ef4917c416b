"""Quiet hours at their boundaries: [from, to) on the customer's wall clock, over midnight,
whole days, and across daylight-saving changes (Europe/Berlin, America/New_York)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from activities.policies import Message
from activities.policy_rules import ProjectPolicies, QuietHoursPolicy
from activities.quiet_hours import quiet_until, wall_time
from workflows.channels import CHANNELS
from workflows.models import Profile, SendRequest
from workflows.policy_models import MessageCategory, QuietRule, SendPolicies

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
EVENINGS = QuietRule(name="evenings", start="21:00", end="08:00")
SUNDAYS = QuietRule(name="sundays", days=(6,))


def local(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    year, month, day, hour, minute, *rest = parts
    second = rest[0] if rest else 0
    moment = datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold)
    return moment.astimezone(UTC)


@pytest.mark.parametrize(
    ("hour", "minute", "second", "held"),
    [
        (7, 59, 59, True),  # a second before the end: held
        (8, 0, 0, False),  # exactly at the end: goes
        (20, 59, 59, False),  # a second before the start: goes
        (21, 0, 0, True),  # exactly at the start: held
        (23, 30, 0, True),
        (0, 0, 0, True),
    ],
)
def test_the_window_holds_from_its_start_up_to_but_not_including_its_end(
    hour: int, minute: int, second: int, held: bool
) -> None:
    now = local(BERLIN, 2027, 1, 13, hour, minute, second)
    end = quiet_until(now, BERLIN, EVENINGS)
    assert (end is not None) == held
    if end is not None:
        assert end.astimezone(BERLIN).strftime("%H:%M") == "08:00"


def test_a_window_over_midnight_belongs_to_the_day_it_starts_on() -> None:
    fridays = EVENINGS.model_copy(update={"days": (4,)})
    friday_night = local(BERLIN, 2027, 1, 15, 22, 0)
    saturday_morning = local(BERLIN, 2027, 1, 16, 7, 0)  # still Friday's window
    saturday_night = local(BERLIN, 2027, 1, 16, 22, 0)  # Saturday has no window
    thursday_after_midnight = local(BERLIN, 2027, 1, 15, 2, 0)  # Thursday's window: none
    assert quiet_until(friday_night, BERLIN, fridays) == local(BERLIN, 2027, 1, 16, 8, 0)
    assert quiet_until(saturday_morning, BERLIN, fridays) == local(BERLIN, 2027, 1, 16, 8, 0)
    assert quiet_until(saturday_night, BERLIN, fridays) is None
    assert quiet_until(thursday_after_midnight, BERLIN, fridays) is None


def test_a_window_within_one_day() -> None:
    lunch = QuietRule(name="lunch", start="12:00", end="13:30")
    assert quiet_until(local(BERLIN, 2027, 1, 13, 11, 59), BERLIN, lunch) is None
    assert quiet_until(local(BERLIN, 2027, 1, 13, 12, 0), BERLIN, lunch) == local(
        BERLIN, 2027, 1, 13, 13, 30
    )
    assert quiet_until(local(BERLIN, 2027, 1, 13, 13, 30), BERLIN, lunch) is None


def test_whole_sundays_end_at_monday_midnight_and_touching_days_are_one_window() -> None:
    sunday = local(BERLIN, 2027, 1, 17, 0, 0)  # the first second of Sunday
    assert quiet_until(sunday, BERLIN, SUNDAYS) == local(BERLIN, 2027, 1, 18, 0, 0)
    assert quiet_until(local(BERLIN, 2027, 1, 16, 23, 59, 59), BERLIN, SUNDAYS) is None
    assert quiet_until(local(BERLIN, 2027, 1, 18, 0, 0), BERLIN, SUNDAYS) is None
    weekend = QuietRule(name="weekend", days=(5, 6))
    saturday = local(BERLIN, 2027, 1, 16, 10, 0)
    assert quiet_until(saturday, BERLIN, weekend) == local(BERLIN, 2027, 1, 18, 0, 0)


def test_an_end_inside_the_spring_forward_gap_is_the_first_instant_after_it() -> None:
    # Europe/Berlin, 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:30 never shows
    night = QuietRule(name="night", start="22:00", end="02:30")
    before = local(BERLIN, 2027, 3, 28, 1, 59)
    end = quiet_until(before, BERLIN, night)
    assert end == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # 03:00 CEST, the gap's end
    assert end.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    assert quiet_until(end, BERLIN, night) is None, "at the end: goes"
    # America/New_York, 2027-03-14: 02:00 EST jumps to 03:00 EDT
    assert wall_time(datetime(2027, 3, 14).date(), "02:30", NEW_YORK) == datetime(
        2027, 3, 14, 7, 0, tzinfo=UTC
    )


def test_the_night_of_the_spring_change_is_an_hour_shorter() -> None:
    start = local(BERLIN, 2027, 3, 27, 21, 0)
    end = quiet_until(start, BERLIN, EVENINGS)
    assert end == local(BERLIN, 2027, 3, 28, 8, 0)
    assert end is not None and (end - start).total_seconds() == 10 * 3600


def test_an_end_in_the_fall_back_overlap_is_its_first_occurrence() -> None:
    # Europe/Berlin, 2027-10-31: 03:00 CEST falls back to 02:00 CET; 02:30 shows twice
    night = QuietRule(name="night", start="22:00", end="02:30")
    first = local(BERLIN, 2027, 10, 31, 2, 30, fold=0)
    assert quiet_until(local(BERLIN, 2027, 10, 31, 1, 0), BERLIN, night) == first
    assert first == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    second = local(BERLIN, 2027, 10, 31, 2, 15, fold=1)  # after the first 02:30: goes
    assert quiet_until(second, BERLIN, night) is None
    # America/New_York, 2027-11-07: 02:00 EDT falls back to 01:00 EST; 01:30 shows twice
    early = QuietRule(name="early", start="23:00", end="01:30")
    end = quiet_until(local(NEW_YORK, 2027, 11, 7, 0, 30), NEW_YORK, early)
    assert end == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first one


def test_the_night_of_the_fall_change_is_an_hour_longer_in_new_york() -> None:
    start = local(NEW_YORK, 2027, 11, 6, 21, 0)
    end = quiet_until(start, NEW_YORK, EVENINGS)
    assert end is not None and (end - start).total_seconds() == 12 * 3600


def message(
    profile: Profile,
    at: datetime,
    channel: str = "sms",
    category: MessageCategory = "marketing",
    policies: SendPolicies | None = None,
) -> Message:
    request = SendRequest(
        message_id="m",
        journey_id="j",
        journey_version="v",
        category=category,
        policies=policies,
        step_id="s",
        channel=channel,
        template="t",
        customer_id=profile.id,
        profile=profile,
    )
    return Message(request, CHANNELS[channel], "+4915112345678", at)


def test_the_customers_timezone_decides_else_the_projects_default() -> None:
    policy = QuietHoursPolicy(ProjectPolicies(quiet=(EVENINGS,), default_timezone="Europe/Berlin"))
    at = datetime(2027, 1, 13, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 16:30 in New York
    berliner = policy.decide(message(Profile(id="a"), at))
    assert berliner is not None and berliner.action == "defer"
    assert berliner.reason == 'quiet hours "evenings" until 08:00 Europe/Berlin'
    assert berliner.until == datetime(2027, 1, 14, 7, 0, tzinfo=UTC)
    assert policy.decide(message(Profile(id="b", timezone="America/New_York"), at)) is None
    unknown = message(Profile(id="c", timezone="Mars/Olympus"), at)
    assert policy.decide(unknown) is not None, "an unknown zone: the project's default"


def test_channels_categories_exemptions_and_actions() -> None:
    policy = QuietHoursPolicy(
        ProjectPolicies(quiet=(EVENINGS.model_copy(update={"channels": ("sms",)}),))
    )
    night = datetime(2027, 1, 13, 23, 0, tzinfo=UTC)
    max_ = Profile(id="max")
    assert policy.decide(message(max_, night, "email")) is None, "not its channel"
    order = message(max_, night, category="transactional")
    assert policy.decide(order) is None, "transactional: exempt unless listed"
    exempt = message(max_, night, policies=SendPolicies(exempt=("evenings",)))
    assert policy.decide(exempt) is None
    assert policy.decide(message(max_, night)) is not None
    skipping = message(max_, night, policies=SendPolicies(actions={"evenings": "skip"}))
    decided = policy.decide(skipping)
    assert decided is not None and (decided.action, decided.reason) == (
        "skip",
        'quiet hours "evenings"',
    )
