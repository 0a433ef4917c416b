"""Quiet hours, frequency caps and the defer limit in runs on the time-skipping server, with
the project's policies in the real delivery activity: a held message goes at the window's end
(the timeline shows why it waited), a capped one when its slot frees, one held too long is
skipped, and an exit or an unsubscribe during the wait ends the run with nothing sent."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.delivery import DeliveryActivities
from activities.email.maildir import list_messages
from cli import app
from config.policies import PolicySettings
from tests.conftest import ROOT
from tests.delivery import example_delivery
from tests.temporal import event, plan_from, running_workers, start_run
from tests.test_policies import JOURNEY
from workflows.models import CancelRequest, Profile, RunResult

MAX = Profile(id="max", email="max@example.com", locale="en", timezone="UTC")
ONE_SEND = JOURNEY  # one marketing email; an exit on Account Closed
TWO_SENDS = """
id: twice
name: Twice
category: marketing
trigger:
  event: Signed Up
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
  - id: picks
    send: email
    template: newsletter-recommendations
"""


def delivery(tmp_path: Path, policies: dict[str, Any]) -> DeliveryActivities:
    return example_delivery(tmp_path, policies=PolicySettings.model_validate(policies))


def window_around(now: datetime) -> dict[str, str]:
    """Quiet hours (UTC) from an hour before ``now`` until three hours after it."""
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    return {"from": start.strftime("%H:%M"), "to": end.strftime("%H:%M")}


def quiet_end(now: datetime) -> datetime:
    end = now + timedelta(hours=3)
    return end.replace(second=0, microsecond=0)


async def run(
    env: WorkflowEnvironment, activities: DeliveryActivities, journey: str
) -> tuple[Any, str]:
    async with running_workers(env.client, activities.all()) as prefix:
        handle = await start_run(
            env.client, plan_from(journey), prefix, event("Signed Up", customer="max"),
            profile=MAX, workflow_id=f"policies-{uuid.uuid4()}",
        )  # fmt: skip
        return RunResult.model_validate(await handle.result()), prefix


async def test_quiet_hours_hold_a_marketing_email_until_the_window_ends(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    now = (await time_env.get_current_time()).astimezone(UTC)
    quiet = {"name": "daytime", "channels": ["email"], **window_around(now)}
    activities = delivery(tmp_path, {"quiet_hours": [quiet]})
    result, _ = await run(time_env, activities, ONE_SEND)
    deferred, sent = (e for e in result.timeline if e.step == "welcome")
    end = quiet_end(now)
    assert deferred.kind == "deferred"
    assert deferred.detail == (
        f'email: newsletter-welcome (deferred: quiet hours "daytime" until '
        f"{end.strftime('%H:%M')} UTC)"
    )
    assert sent.kind == "sent" and end <= sent.at < end + timedelta(minutes=1), "at the end"
    assert len(list_messages(tmp_path / "outbox")) == 1
    [row] = activities.ledger.list()
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.deferred_since is not None and row.deferred_since <= deferred.at


async def test_a_capped_message_with_defer_goes_when_its_slot_frees(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    cap = {"name": "one-per-6h", "limit": 1, "per": "6h", "action": "defer"}
    activities = delivery(tmp_path, {"frequency_caps": [cap]})
    result, _ = await run(time_env, activities, TWO_SENDS)
    kinds = [(e.step, e.kind) for e in result.timeline if e.step in ("welcome", "picks")]
    assert kinds == [("welcome", "sent"), ("picks", "deferred"), ("picks", "sent")]
    welcome, deferred, picks = (e for e in result.timeline if e.step in ("welcome", "picks"))
    assert 'frequency cap "one-per-6h" (1 per 6h) until' in deferred.detail
    first, second = sorted(activities.ledger.list(), key=lambda row: row.created_at)
    assert first.counted_at is not None and second.counted_at is not None
    slot_frees = first.counted_at + timedelta(hours=6)
    assert slot_frees <= second.counted_at < slot_frees + timedelta(seconds=5), "and no sooner"
    assert picks.at - welcome.at > timedelta(hours=5, minutes=59)
    assert (second.status, second.attempts) == ("sent", 2)
    assert len(list_messages(tmp_path / "outbox")) == 2


async def test_a_message_held_longer_than_the_defer_limit_is_skipped(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    always = {"name": "closed", "channels": ["email"], "days": ["mon", "tue", "wed", "thu",
              "fri", "sat", "sun"]}  # fmt: skip
    activities = delivery(tmp_path, {"defer_max": "2d", "quiet_hours": [always]})
    result, _ = await run(time_env, activities, ONE_SEND)
    [welcome] = [e for e in result.timeline if e.step == "welcome"]
    assert (welcome.kind, welcome.detail) == (
        "skipped",
        'email: newsletter-welcome (skipped: still held after 2d (quiet hours "closed"))',
    )
    assert result.outcome.kind == "completed"
    [row] = activities.ledger.list()
    assert (row.status, row.reason) == ("skipped", 'still held after 2d (quiet hours "closed")')
    assert list_messages(tmp_path / "outbox") == []


async def test_an_exit_or_an_unsubscribe_during_a_deferral_ends_the_run(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    for ending in ("exit", "unsubscribe"):
        now = (await time_env.get_current_time()).astimezone(UTC)
        quiet = {"name": "daytime", **window_around(now)}
        folder = tmp_path / ending
        activities = delivery(folder, {"quiet_hours": [quiet]})
        async with running_workers(time_env.client, activities.all()) as prefix:
            handle = await start_run(
                time_env.client, plan_from(ONE_SEND), prefix, event("Signed Up", customer="max"),
                profile=MAX, workflow_id=f"policies-{uuid.uuid4()}",
            )  # fmt: skip
            await time_env.sleep(timedelta(hours=1))
            if ending == "exit":
                await handle.signal("event", event("Account Closed", customer="max"))
            else:
                await handle.signal("unsubscribed", CancelRequest(reason="one-click"))
            result = RunResult.model_validate(await handle.result())
        assert result.outcome.kind == "exited", ending
        assert [e.kind for e in result.timeline if e.step == "welcome"] == ["deferred"]
        assert list_messages(folder / "outbox") == []
        [row] = activities.ledger.list()
        assert row.status == "deferred"


def test_a_simulation_counts_caps_in_simulated_time_across_journeys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Max across the three example journeys with one marketing email a day: only the referral
    request, 23 hours after the survey (simulated), is held — on the wall clock every email
    after the first would have been."""
    for name in ("journeys", "templates", "demo"):
        shutil.copytree(ROOT / name, tmp_path / name)
    config = (ROOT / "touchpoint.yaml").read_text()
    daily = "    - name: marketing-email-daily\n      limit: 2\n"
    assert daily in config
    (tmp_path / "touchpoint.yaml").write_text(config.replace(daily, daily.replace("2", "1")))
    monkeypatch.chdir(tmp_path)
    journeys = ["newsletter-welcome", "laptop-recommendation", "post-purchase-accessories"]
    max_ = ["--profile", "demo/max/profile.yaml", "--events", "demo/max/events.yaml"]
    max_ += ["--lookups", "demo/max/lookups.yaml", "--start", "2027-01-04T09:00+01:00"]
    result = CliRunner().invoke(app, ["simulate", *journeys, *max_])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if "⊘ skipped" in line]
    assert len(skipped) == 1
    assert skipped[0].startswith("Mon 2027-02-01 09:00  day 28")
    assert skipped[0].endswith(
        'email (referral-request): frequency cap "marketing-email-daily" (1 per 24h)'
    )
    assert "7 message(s) would be sent" in result.output  # 8 without the cap
