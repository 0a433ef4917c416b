"""The fast simulator as a marketer meets it: the installed ``touchpoint`` executable, fast by
default and exact with ``--exact``, giving the same answer (the conformance suite compares
timelines in depth: tests/conformance)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from simulation import fast
from simulation.fast import FastSimulator, blocking_calls_inline
from simulation.journey_tests import find_test_files, run_files
from simulation.report import as_json
from simulation.setup import build_scenario, load_project
from tests.conftest import ROOT

TOUCHPOINT = shutil.which("touchpoint") or str(Path(sys.executable).parent / "touchpoint")
JOURNEYS = ["newsletter-welcome", "laptop-recommendation", "post-purchase-accessories"]
MAX = ["--profile", "demo/max/profile.yaml", "--events", "demo/max/events.yaml"]
MAX += ["--lookups", "demo/max/lookups.yaml", "--start", "2027-01-04T09:00+01:00"]


def touchpoint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOUCHPOINT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def simulate_max(*extra: str) -> dict:
    done = touchpoint("simulate", *JOURNEYS, *MAX, "--until", "90d", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_max_gets_the_same_90_days_fast_and_exact() -> None:
    fast, exact = simulate_max(), simulate_max("--exact")
    assert fast == exact
    messages = [line for run in fast["runs"] for line in run["timeline"] if line["kind"] == "sent"]
    assert len(messages) == 8


async def test_subjects_only_renders_the_same_subjects_and_no_bodies() -> None:
    project, problems = load_project(ROOT)
    assert project is not None, problems
    scenario = build_scenario(
        project,
        JOURNEYS,
        profile=ROOT / "demo/max/profile.yaml",
        events=ROOT / "demo/max/events.yaml",
        lookups=ROOT / "demo/max/lookups.yaml",
        start="2027-01-04T09:00+01:00",
    )
    everything = await FastSimulator(ROOT, project.config).run(scenario)
    subjects = await FastSimulator(ROOT, project.config, render="subjects").run(scenario)
    assert as_json(everything) == as_json(subjects)  # same runs, moments, steps and subjects
    emails = [m for m in everything.messages.values() if m.subject]
    assert len(emails) >= 5 and all(m.html and m.text for m in emails)
    assert sorted(m.subject or "" for m in subjects.messages.values() if m.subject) == sorted(
        m.subject for m in emails
    )
    assert all(m.html is None and m.text is None for m in subjects.messages.values() if m.subject)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--render", "bodies"], '--render must be "subjects" or "all"'),
        (["--exact", "--render", "subjects"], "--render subjects is for the fast simulator"),
    ],
)
def test_render_options_are_checked(args: list[str], problem: str) -> None:
    done = touchpoint("simulate", "newsletter-welcome", *MAX, *args)
    assert done.returncode == 1
    assert problem in done.stderr and "Traceback" not in done.stderr


async def test_a_journey_outside_the_conformance_suite_is_tested_exactly_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = ROOT / "tests/fixtures/sms-shop"
    project, problems = load_project(shop)
    assert project is not None, problems
    files = find_test_files([], project)

    covered, _ = await run_files(files, project, lambda _: None)
    assert [r.exact_because for r in covered] == [None, None]  # every channel is conformed

    monkeypatch.setattr(fast, "CONFORMED_CHANNELS", frozenset({"email"}))
    results, _ = await run_files(files, project, lambda _: None)
    because = "delivery-update: the sms channel is not in the conformance suite"
    assert [r.exact_because for r in results] == [because, because]
    assert all(r.passed for r in results + covered)


async def test_blocking_calls_run_inline_while_simulations_run_and_the_loop_gets_its_own_back() -> (
    None
):
    loop = asyncio.get_running_loop()
    own = getattr(loop, "_default_executor", None)
    caller = threading.get_ident()

    def boom() -> None:
        raise ValueError("from the store")

    with blocking_calls_inline(loop):
        with blocking_calls_inline(loop):  # two simulations side by side on one loop
            assert await asyncio.to_thread(threading.get_ident) == caller
        assert await asyncio.to_thread(threading.get_ident) == caller  # the other still runs
        with pytest.raises(ValueError, match="from the store"):
            await asyncio.to_thread(boom)
    assert getattr(loop, "_default_executor", None) is own
    assert await asyncio.to_thread(threading.get_ident) != caller  # a thread again
