"""An events file's calls carry Segment's ``context`` as the API takes it: ``locale`` and
``timezone`` on an identify or a track change the profile from then on, and a track's
``traits`` (``context.traits``) are merged into it — on both simulators, through the installed
executable; and a replay turns the event log's context into those fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simulation.replay import _timed
from store.event_log import LoggedEvent
from tests.conftest import ROOT

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
PROFILE = "id: anna\nemail: anna@example.com\nlocale: en\ntimezone: Europe/Berlin\n"
EVENTS = """
- {at: "+0", type: identify, locale: de, timezone: America/New_York}
- {at: +1m, event: Newsletter Subscribed, traits: {first_name: Anna}}
"""


def simulate(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    profile, events = tmp_path / "anna.yaml", tmp_path / "events.yaml"
    profile.write_text(PROFILE)
    events.write_text(EVENTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            TOUCHPOINT,
            "simulate",
            "newsletter-welcome",
            "--profile",
            str(profile),
            "--events",
            str(events),
            "--start",
            "2027-01-04T09:00+01:00",
            "--until",
            "4d",
            "--json",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    return [line for line in run["timeline"] if line["kind"] == "sent"]


@pytest.mark.parametrize("engine", [(), ("--exact",)], ids=["fast", "exact"])
def test_an_identify_sets_locale_and_timezone_and_a_track_its_context_traits(
    tmp_path: Path, engine: tuple[str, ...]
) -> None:
    welcome, recommendations = simulate(tmp_path, *engine)
    # German from the identify on, with the first name the track's context.traits gave
    assert welcome["locale"] == "de"
    assert welcome["subject"] == "Willkommen bei Example Laptop Shop, Anna!"
    # "next morning 09:00" in New York (the identify's time zone), not Berlin (08:00Z)
    assert recommendations["step"] == "recommendations"
    assert recommendations["at"] == "2027-01-06T14:00:00Z"
    assert recommendations["locale"] == "de"


def test_a_replay_plays_the_logged_context_with_each_call() -> None:
    moment = datetime(2027, 1, 4, 9, tzinfo=UTC)

    def logged(kind: Any, data: dict[str, Any], context: dict[str, Any]) -> LoggedEvent:
        return LoggedEvent(
            id=1,
            customer_id="anna",
            kind=kind,
            event="Order Completed" if kind == "track" else None,
            data=data,
            context=context,
            truncated=False,
            timestamp=moment,
            received_at=moment,
            message_id="shop/1",
        )

    calls = [
        logged("identify", {"plan": "pro"}, {"locale": "de", "timezone": "Asia/Tokyo"}),
        logged("track", {"total": 9}, {"traits": {"first_name": "Anna"}, "linked": "anon-1"}),
        logged("track", {"total": 5}, {}),
    ]
    (_, identify), (_, track), (_, bare) = _timed(calls, moment)
    assert (identify.type, identify.traits) == ("identify", {"plan": "pro"})
    assert (identify.locale, identify.timezone) == ("de", "Asia/Tokyo")
    assert (track.properties, track.traits) == ({"total": 9}, {"first_name": "Anna"})
    assert (track.locale, track.timezone) == (None, None)
    assert (bare.traits, bare.locale, bare.timezone) == ({}, None, None)
