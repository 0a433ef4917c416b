"""Segment journeys in ``touchpoint simulate`` (the installed executable, on Temporal's
time-skipping server): the identifies of the events file that make the condition true enter,
once per crossing; a population's starting profiles are no crossing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
POPULATION = """id,email,locale,lifetime_value
anna,anna@example.com,en,200
bob,bob@example.com,de,900
carl,carl@example.com,en,50
dora,dora@example.com,en,5000
"""
EVENTS = """
- {at: +1d, type: identify, user: anna, traits: {lifetime_value: 1500}}
- {at: +2d, type: identify, user: bob, traits: {lifetime_value: 1001}}
- {at: +3d, type: identify, user: carl, traits: {lifetime_value: 500}}
- {at: +3d, type: identify, user: dora, traits: {lifetime_value: 5100}}
- {at: +4d, type: identify, user: anna, traits: {lifetime_value: 2000}}
"""


def test_the_installed_executable_simulates_a_segment_journey(tmp_path: Path) -> None:
    population, events = tmp_path / "customers.csv", tmp_path / "events.yaml"
    population.write_text(POPULATION)
    events.write_text(EVENTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            TOUCHPOINT,
            "simulate",
            "vip-thank-you",
            "--profiles",
            str(population),
            "--events",
            str(events),
            "--start",
            "2027-01-04T10:00+01:00",
            "--until",
            "6d",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    # anna and bob cross 1,000; carl stays below; dora was above from the start (no crossing);
    # anna's second identify above 1,000 is no new crossing
    assert sorted((r["customer"], r["timeline"][0]["at"]) for r in runs) == [
        ("anna", "2027-01-05T09:00:00Z"),
        ("bob", "2027-01-06T09:00:00Z"),
    ]
