"""Journey tests about what the delivery policies did (issue 17, point 5): ``held`` — every
message a policy skipped or deferred, in order — and ``max_messages``, the most messages in
any window ("Max gets at most 2 emails a day").

The matching is tested on hand-made timelines; the file format through ``touchpoint test``
(positions of mistakes); one case end to end on the time-skipping server with a policy that
exists today (no address: skipped). ``test_policies_in_journey_tests_end_to_end`` needs the
frequency caps and quiet hours of helper "caps" (run it after that branch is merged).
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from cli import app
from language.yamlsource import SourceMap
from simulation.journey_tests import Expectations, PreparedCase, judge
from simulation.report import Line, describe, held
from simulation.simulator import Scenario, SimulatedRun, SimulationResult
from tests.conftest import ROOT
from workflows.models import Outcome, TimelineEntry

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2027, 1, 4, 9, 0, tzinfo=BERLIN)  # a Monday


def at(day: int, clock: str) -> datetime:
    hours, minutes = (int(part) for part in clock.split(":"))
    return (START + timedelta(days=day)).replace(hour=hours, minute=minutes).astimezone(UTC)


def sent(day: int, clock: str, step: str, channel: str = "email") -> TimelineEntry:
    return TimelineEntry(
        at=at(day, clock),
        step=step,
        kind="sent",
        channel=channel,
        to="max@example.com",
        template=step,
        detail=f"{channel}: {step}",
    )


def deferred(day: int, clock: str, step: str, reason: str, until: datetime) -> TimelineEntry:
    detail = f"sms: {step} (deferred: {reason} until {until.isoformat(timespec='minutes')})"
    return TimelineEntry(
        at=at(day, clock), step=step, kind="deferred", channel="sms", template=step, detail=detail
    )


def skipped(day: int, clock: str, step: str, reason: str) -> TimelineEntry:
    return TimelineEntry(
        at=at(day, clock),
        step=step,
        kind="skipped",
        channel="email",
        template=step,
        detail=f"email: {step} (skipped: {reason})",
    )


TIMELINE = [
    sent(0, "10:00", "welcome"),
    sent(0, "14:00", "picks"),
    skipped(0, "20:00", "reminder", "marketing-email-daily: at most 2 emails per 24h"),
    deferred(0, "21:30", "order-note", "evenings: quiet hours 21:00-08:00", at(1, "08:00")),
    sent(1, "08:00", "order-note", channel="sms"),
    TimelineEntry(
        at=at(1, "09:00"),
        step="tell-crm",
        kind="skipped",
        channel="webhook",
        detail="failed, skipped: the CRM answered 500",  # a failure, not a policy's hold
    ),
    sent(1, "10:00", "offer"),  # exactly 24 hours after welcome: the next window
]


def judged(expect: dict[str, object], timeline: list[TimelineEntry] = TIMELINE) -> list[str]:
    scenario = Scenario(plans=[], customers=[], events=[], start=START, until=timedelta(days=3))
    case = PreparedCase(
        "j.test.yaml",
        "a case",
        scenario,
        Expectations.model_validate(expect),
        BERLIN,
        SourceMap("j.test.yaml"),
        ("cases", 0),
    )
    run = SimulatedRun(
        journey_id="j",
        customer_id="max",
        key=None,
        workflow_id="w",
        entered_at=START,
        trigger="Signed Up",
        outcome=Outcome(kind="completed", at=at(2, "00:00")),
        timeline=timeline,
    )
    result = SimulationResult(START, START + timedelta(days=3), [], [], [run], [], {})
    return judge(case, result).report()


def test_held_messages_match_by_the_fields_they_name() -> None:
    expect = {
        "held": [
            {"step": "reminder", "action": "skipped", "policy": "marketing-email-daily"},
            {
                "at": "day 0 21:30",
                "channel": "sms",
                "template": "order-note",
                "action": "deferred",
                "reason_contains": "quiet hours",
                "until": "day 1 08:00",
            },
        ]
    }
    assert judged(expect) == []


def test_a_held_message_that_differs_is_shown_as_a_diff() -> None:
    expect = {
        "held": [
            {"step": "reminder", "policy": "weekly-cap"},
            {"step": "order-note", "action": "skipped", "until": "day 1 09:00"},
        ]
    }
    assert judged(expect) == [
        "held messages differ (- expected, + actual):",
        "  - day 0 20:00  j/reminder  email [reminder]  skipped: …weekly-cap…",
        "  + day 0 20:00  j/reminder  email [reminder]  skipped: marketing-email-daily: at most 2 "
        "emails per 24h",
        "  - day 0 21:30  j/order-note  sms [order-note]  skipped until day 1 09:00: evenings: "
        "quiet hours 21:00-08:00",
        "  + day 0 21:30  j/order-note  sms [order-note]  deferred until day 1 08:00: evenings: "
        "quiet hours 21:00-08:00",
    ]


def test_held_lists_every_hold_an_empty_list_none() -> None:
    report = judged({"held": []})
    assert report[0] == "held messages differ (- expected, + actual):"
    assert [line[:4] for line in report[1:]] == ["  + ", "  + "]
    quiet = [sent(0, "10:00", "welcome")]
    assert judged({"held": []}, quiet) == []
    missing = judged({"held": [{"step": "welcome", "action": "deferred"}]}, quiet)
    assert missing == [
        "held messages differ (- expected, + actual):",
        "  - a held message with step=welcome, action=deferred",
    ]


def test_max_messages_counts_any_window_of_that_length() -> None:
    assert judged({"max_messages": {"limit": 2, "per": "24h", "channel": "email"}}) == []
    assert judged({"max_messages": {"limit": 3, "per": "2d"}}) == [
        "at most 3 messages expected in any 2d, but 4 were sent from day 0 10:00: j/welcome day 0 "
        "10:00, j/picks day 0 14:00, j/order-note day 1 08:00, j/offer day 1 10:00"
    ]
    late = [*TIMELINE[:-1], sent(1, "09:59", "offer")]  # a minute inside the first window
    assert judged({"max_messages": [{"limit": 2, "per": "24h", "channel": "email"}]}, late) == [
        "at most 2 email messages expected in any 24h, but 3 were sent from day 0 10:00: "
        "j/welcome day 0 10:00, j/picks day 0 14:00, j/offer day 1 09:59"
    ]


def test_simulate_shows_what_a_policy_held_readably() -> None:
    lines = [
        Line(
            e.at, "j", None, "max", e.step, e.kind, e.channel, template=e.template, detail=e.detail
        )
        for e in TIMELINE
    ]
    shown = {line.step: describe(line, BERLIN) for line in lines}
    assert shown["reminder"] == (
        "⊘ skipped email (reminder): marketing-email-daily: at most 2 emails per 24h"
    )
    assert shown["tell-crm"] == "· skipped: failed, skipped: the CRM answered 500"
    deferral = next(line for line in lines if line.kind == "deferred")
    assert describe(deferral, BERLIN) == (
        "⏸ deferred sms (order-note) until Tue 2027-01-05 08:00: evenings: quiet hours 21:00-08:00"
    )
    decision = held(deferral)
    assert decision is not None and decision.until == at(1, "08:00")


# --- through `touchpoint test` ---------------------------------------------------------------


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "project"
    for name in ("journeys", "templates"):
        shutil.copytree(ROOT / name, target / name)
    shutil.copy(ROOT / "touchpoint.yaml", target / "touchpoint.yaml")
    monkeypatch.chdir(target)
    return target


def run_tests(cli: CliRunner, path: str) -> tuple[int, str]:
    result = cli.invoke(app, ["test", path])
    return result.exit_code, result.output


def test_mistakes_in_held_and_max_messages_are_reported_where_they_stand(
    cli: CliRunner, project_copy: Path
) -> None:
    (project_copy / "journeys" / "holds.test.yaml").write_text(
        textwrap.dedent(
            """\
            journeys: [newsletter-welcome]
            cases:
              - name: mistakes
                events:
                  - {at: "+0", event: Newsletter Subscribed}
                expect:
                  held:
                    - {step: welcom, action: skiped}
                    - {until: tomorrow}
                  max_messages: {limit: 2, per: a day}
            """
        )
    )
    code, out = run_tests(cli, "journeys/holds.test.yaml")
    assert code == 1
    assert (
        "journeys/holds.test.yaml:8:34: cases[0].expect.held[0].action: expected one of "
        'skipped, deferred, got "skiped"; did you mean "skipped"?' in out
    )
    assert (
        "journeys/holds.test.yaml:10:37: cases[0].expect.max_messages.per: expected a duration "
        'like "3d", got "a day"' in out
    )
    # once the format is right, the names and moments are checked
    path = project_copy / "journeys" / "holds.test.yaml"
    path.write_text(
        path.read_text()
        .replace("skiped", "skipped")
        .replace("per: a day", "per: 1d, journey: newsletter-welcom")
    )
    code, out = run_tests(cli, "journeys/holds.test.yaml")
    assert code == 1
    assert (
        "journeys/holds.test.yaml:8:18: cases[0].expect.held[0].step: no step 'welcom'; "
        'did you mean "welcome"?' in out
    )
    assert "journeys/holds.test.yaml:9:19: cases[0].expect.held[1].until: not a moment" in out
    assert (
        "journeys/holds.test.yaml:10:50: cases[0].expect.max_messages.journey: "
        "'newsletter-welcom' is not a journey of this test; did you mean \"newsletter-welcome\"?"
        in out
    )


def test_a_message_without_an_address_is_held_in_a_journey_test(
    cli: CliRunner, project_copy: Path
) -> None:
    """End to end with a policy that exists today: a customer without an email address."""
    (project_copy / "journeys" / "holds.test.yaml").write_text(
        textwrap.dedent(
            """\
            journeys: [newsletter-welcome]
            start: 2027-01-04T10:30:00+01:00
            until: 1d                        # the welcome only: the next email is days later
            profile: {id: max, locale: en, timezone: Europe/Berlin, traits: {first_name: Max}}
            cases:
              - name: no address, no email
                events:
                  - {at: "+0", event: Newsletter Subscribed}
                expect:
                  messages: []
                  max_messages: {limit: 0, per: 1d, channel: email}
                  held:
                    - {at: day 0 10:30, step: welcome, action: skipped, reason_contains: address}
              - name: a wrong expectation fails
                events:
                  - {at: "+0", event: Newsletter Subscribed}
                expect:
                  held: [{step: welcome, action: deferred}]
            """
        )
    )
    code, out = run_tests(cli, "journeys/holds.test.yaml")
    assert code == 1, out
    assert "✓ journeys/holds.test.yaml › no address, no email" in out
    assert "✗ journeys/holds.test.yaml › a wrong expectation fails" in out
    assert (
        "      - day 0 10:30  newsletter-welcome/welcome  email [newsletter-welcome]  deferred"
        in out
    )
    assert (
        "      + day 0 10:30  newsletter-welcome/welcome  email [newsletter-welcome]  skipped"
        in out
    )


POLICED_JOURNEY = """\
id: sunday-letters
name: Two letters, one a day, none on Sundays
category: marketing
topic: newsletter
policies:
  quiet_hours:
    - {name: no-sunday-mail, days: [sun], channels: [email], action: defer}
  frequency_caps:
    - {name: one-a-day, limit: 1, per: 24h, channels: [email], action: skip}
trigger: {event: Newsletter Subscribed}
steps:
  - {id: first, send: email, template: newsletter-welcome}
  - {id: second, send: email, template: newsletter-welcome}
"""
POLICED_TEST = """\
start: 2027-01-10T10:00:00+01:00     # a Sunday in Berlin
until: 3d
profile:
  id: max
  email: max@example.com
  locale: en
  timezone: Europe/Berlin
  traits: {first_name: Max}
cases:
  - name: Max gets at most one email a day, and none on Sunday
    events:
      - {at: "+0", event: Newsletter Subscribed}
    expect:
      messages:
        - {at: day 1 00:00, step: first}
      held:
        - at: day 0 10:00
          step: first
          action: deferred
          policy: no-sunday-mail
          until: day 1 00:00
        - {at: day 1 00:00, step: second, action: skipped, policy: one-a-day}
      max_messages: {limit: 1, per: 24h, channel: email}
"""


def test_policies_in_journey_tests_end_to_end(cli: CliRunner, project_copy: Path) -> None:
    """NEEDS THE CAPS BRANCH (frequency caps and quiet hours in the policy chain): a journey's
    own quiet hours defer its first email from Sunday to Monday 00:00, its own cap skips the
    second. Until that branch is merged this fails: nothing holds the messages yet. It also
    assumes the reason of a hold names the policy (``policy:`` matches a name in the reason)."""
    (project_copy / "journeys" / "sunday-letters.yaml").write_text(POLICED_JOURNEY)
    (project_copy / "journeys" / "sunday-letters.test.yaml").write_text(POLICED_TEST)
    code, out = run_tests(cli, "journeys/sunday-letters.test.yaml")
    assert code == 0, out
    assert "✓ journeys/sunday-letters.test.yaml › Max gets at most one email a day" in out


def test_simulate_counts_what_the_policies_held(
    cli: CliRunner, project_copy: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("id: max\nlocale: en\ntimezone: Europe/Berlin\ntraits: {first_name: Max}\n")
    events = tmp_path / "events.yaml"
    events.write_text('- {at: "+0", event: Newsletter Subscribed}\n')
    files = ["--profile", str(profile), "--events", str(events)]
    window = ["--start", "2027-01-04T09:00+01:00", "--until", "1d"]
    result = cli.invoke(app, ["simulate", "newsletter-welcome", *files, *window])
    assert result.exit_code == 0, result.output
    assert (
        "welcome    ⊘ skipped email (newsletter-welcome): the customer has no email address"
        in result.output
    )
    assert result.output.endswith(
        "0 message(s) would be sent (1 skipped, 0 deferred by the delivery policies); "
        "nothing left this machine.\n"
    )
