"""``touchpoint audience`` as a subprocess (``python -m cli``), on the example project and a
real SQLite store: the count, ``--sample`` with its personal-data note, ``--json``, and the
errors people run into (an event-triggered journey, an unknown journey)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store.database import connect
from store.profiles import ProfileStore
from tests.conftest import ROOT


@pytest.fixture
def database(tmp_path: Path) -> str:
    """40 profiles: every fourth likes laptops and opted in; c005 likes laptops, no opt-in."""
    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    engine = connect(url)
    for i in range(40):
        fan = i % 4 == 0
        traits = {"interests": ["laptops"] if fan or i == 5 else [], "email_opt_in": fan}
        ProfileStore(engine).upsert(f"c{i:03d}", traits)
    engine.dispose()
    return url


def audience(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINT_DATABASE_URL": database}
    return subprocess.run(
        [sys.executable, "-m", "cli", "audience", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_counts_who_a_scheduled_journey_reaches_now(database: str) -> None:
    done = audience(database, "monday-newsletter")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "monday-newsletter: 10 of 40 profile(s) match now "
        "(every Monday at 09:00 (Europe/Berlin, from 2027-01-04))\n"
    )


def test_a_sample_lists_customer_ids_with_a_personal_data_note(database: str) -> None:
    done = audience(database, "monday-newsletter", "--sample", "3")
    assert done.returncode == 0
    assert done.stdout.splitlines()[1:] == ["c000", "c004", "c008"]
    assert "customer ids are personal data" in done.stderr


def test_json_for_scripts(database: str) -> None:
    done = audience(database, "journeys/monday-newsletter.yaml", "--json", "--sample", "2")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {
        "journey_id": "monday-newsletter",
        "schedule": "every Monday at 09:00 (Europe/Berlin, from 2027-01-04)",
        "matched": 10,
        "read": 40,
        "failed": 0,
        "sample": ["c000", "c004"],
    }


def test_an_event_triggered_journey_has_no_audience(database: str) -> None:
    done = audience(database, "newsletter-welcome")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        "✗ journey newsletter-welcome is started by the event 'Newsletter Subscribed', not by "
        "a schedule"
    )
    assert "Traceback" not in done.stderr


def test_an_unknown_journey_is_a_usage_error(database: str) -> None:
    done = audience(database, "monday-newsleter")
    assert done.returncode == 2
    assert "no journey file 'monday-newsleter'" in done.stderr


@pytest.fixture
def birthdays(tmp_path: Path) -> str:
    """Birthdays on March 1st in Berlin, without a zone (the default, Berlin) and in India;
    one on March 2nd; one that is not a date."""
    url = f"sqlite:///{tmp_path / 'birthdays.db'}"
    engine = connect(url)
    store = ProfileStore(engine)
    for customer, birthday, zone in [
        ("c1", "1990-03-01", "Europe/Berlin"),
        ("c2", "1990-03-01", None),
        ("c3", "1990-03-02", "Europe/Berlin"),
        ("c4", "01.03.1990", "Europe/Berlin"),
        ("c5", "1990-03-01", "Asia/Kolkata"),
    ]:
        store.upsert(customer, {"birthday": birthday, "email_opt_in": True}, timezone=zone)
    engine.dispose()
    return url


def test_a_date_journey_counts_who_enters_at_the_next_occurrence(birthdays: str) -> None:
    done = audience(birthdays, "birthday-greeting", "--at", "2027-03-01T07:50")
    assert done.returncode == 0
    assert done.stdout == (
        "birthday-greeting: 2 profile(s) enter at the next occurrence, 2027-03-01 08:00 UTC, "
        "of 4 in the time zones where it is 09:00 then (profile.traits.birthday every year, "
        "at 09:00 local time (default Europe/Berlin))\n"
    )
    assert done.stderr == (
        "note: 1 profile(s) have a date that is not one (e.g. not YYYY-MM-DD): they are "
        "skipped until it is fixed\n"
    )
    india = audience(birthdays, "birthday-greeting", "--at", "2027-03-01T03:20Z", "--json")
    found = json.loads(india.stdout)
    assert (found["at"], found["matched"], found["read"]) == ("2027-03-01T03:30:00+00:00", 1, 1)


def test_a_moment_that_is_not_one_is_a_clear_error(birthdays: str) -> None:
    done = audience(birthdays, "birthday-greeting", "--at", "nonsense")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        '✗ --at "nonsense" is not a moment: write it in ISO form, e.g. 2027-03-01T09:00\n'
    )


def test_simulate_runs_a_date_journey_over_a_population(tmp_path: Path) -> None:
    population = tmp_path / "customers.csv"
    population.write_text(
        "id,email,timezone,birthday,email_opt_in\n"
        "anna,anna@example.com,Europe/Berlin,1990-02-27,true\n"
        "leap,leap@example.com,,1996-02-29,true\n"  # no zone: the default, Europe/Berlin
        "ravi,ravi@example.com,Asia/Kolkata,1988-03-01,true\n"
        "bob,bob@example.com,Europe/Berlin,1985-03-15,true\n"
        "mars,mars@example.com,Mars/Olympus,1990-02-27,true\n"  # no such zone: never reached
        "odd,odd@example.com,Europe/Berlin,someday,true\n"
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "touchpoint"),
            "simulate",
            "birthday-greeting",
            "--profiles",
            str(population),
            "--start",
            "2027-02-26T00:00+01:00",
            "--until",
            "4d",
            "--json",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert sorted((r["customer"], r["timeline"][0]["at"]) for r in document["runs"]) == [
        ("anna", "2027-02-27T08:00:00Z"),
        ("leap", "2027-02-28T08:00:00Z"),  # Feb 29 is Feb 28 in 2027
        ("ravi", "2027-03-01T03:30:00Z"),  # 09:00 in Kolkata
    ]
    unreadable = {(n["customer"], n["reason"]) for n in document["not_entered"]}
    assert ("odd", "the date in the profile cannot be read") in unreadable
