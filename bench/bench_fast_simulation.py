"""How fast is the fast simulator? (issue 20, point 2)

1. A population through the three example journeys (``newsletter-welcome``,
   ``laptop-recommendation``, ``post-purchase-accessories``): every customer does what Max does
   in ``demo/max/events.yaml`` (subscribes, browses laptops, clicks, orders, gets the laptop,
   answers the survey: 8 messages each), with a profile like Max's and the lookups answered per
   customer. Customers per second on the fast simulator rendering subjects only
   (``render="subjects"``), on the fast simulator rendering every body (``render="all"``), and
   on the exact simulator (the time-skipping server) — the baseline, in the same run, on a
   smaller sample (``BENCH_EXACT_CUSTOMERS``: at 2–10 customers/s the full population would take
   minutes), compared by customers per second. The fast simulator runs that sample too, and
   its messages must be the exact simulator's (same ids, templates, subjects, bodies).
2. Max's 90 days as a whole command (``touchpoint simulate …`` in a subprocess: interpreter
   start, imports, project validation, simulation, report), fast and ``--exact``, median of
   ``BENCH_ROUNDS``; both must print the same report.

Goals (issue 20): a population ≥ 100× faster than the exact simulator with subjects only,
≥ 10× with every body rendered; Max's 90 days < 1 s as a command.

    python bench/bench_fast_simulation.py   # BENCH_CUSTOMERS=1000, BENCH_EXACT_CUSTOMERS=200
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from report import env_int, header, median, table, verdict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from activities.messages import RenderedMessage  # noqa: E402
from simulation.commands import quiet_sdk_logs  # noqa: E402
from simulation.fast import FastSimulator  # noqa: E402
from simulation.scenario import ProfileSpec  # noqa: E402
from simulation.setup import Project, build_scenario, load_project  # noqa: E402
from simulation.simulator import Scenario, SimulationResult, Simulator  # noqa: E402

MAX = ROOT / "demo" / "max"
JOURNEYS = ["newsletter-welcome", "laptop-recommendation", "post-purchase-accessories"]
START = "2027-01-04T09:00+01:00"
UNSUBSCRIBE_TOKEN = re.compile(r"/unsubscribe/[A-Za-z0-9_.-]+")
MESSAGES_PER_CUSTOMER = 8  # Max's 90 days
CUSTOMERS = env_int("BENCH_CUSTOMERS", 1000)
EXACT_CUSTOMERS = env_int("BENCH_EXACT_CUSTOMERS", 200)
POPULATION_ROUNDS = env_int("BENCH_POPULATION_ROUNDS", 1)  # 1,000 customers: ~1 min a run
ROUNDS = env_int("BENCH_ROUNDS", 3)
GOAL_SUBJECTS = 100.0
GOAL_ALL = 10.0
GOAL_COMMAND_SECONDS = 1.0
COMMAND = [
    "simulate",
    *JOURNEYS,
    "--profile",
    str(MAX / "profile.yaml"),
    "--events",
    str(MAX / "events.yaml"),
    "--lookups",
    str(MAX / "lookups.yaml"),
    "--start",
    START,
    "--until",
    "90d",
]


def population_scenario(project: Project, size: int) -> Scenario:
    """Max's scenario for ``size`` customers like him (every other one English), each with
    the lookup answers Max has, under their own id."""
    scenario = build_scenario(
        project,
        JOURNEYS,
        profile=MAX / "profile.yaml",
        events=MAX / "events.yaml",
        lookups=MAX / "lookups.yaml",
        start=START,
    )
    customers = [
        ProfileSpec(
            id=f"c{i:05d}",
            email=f"c{i:05d}@example.com",
            locale="en" if i % 2 else "de-DE",
            timezone="Europe/Berlin",
            traits={"first_name": f"Kim {i}", "interests": ["laptops"], "email_opt_in": True},
        )
        for i in range(size)
    ]
    lookups = {
        key.replace("/customers/max/", f"/customers/{customer.id}/"): answer
        for customer in customers
        for key, answer in scenario.lookups.items()
    }
    return replace(scenario, customers=customers, lookups=lookups)


@dataclass
class Timing:
    seconds: float
    cpu_seconds: float  # this process's (the exact simulator's server is another process)


async def simulate(simulator: Simulator, scenario: Scenario) -> tuple[Timing, SimulationResult]:
    began, cpu = time.perf_counter(), time.process_time()
    result = await simulator.run(scenario)
    timing = Timing(time.perf_counter() - began, time.process_time() - cpu)
    expected = MESSAGES_PER_CUSTOMER * len(scenario.customers)
    assert len(result.messages) == expected, f"{len(result.messages)} messages, not {expected}"
    return timing, result


def same_messages(fast: SimulationResult, exact: SimulationResult, bodies: bool) -> None:
    """The fast simulator's messages are the exact one's: ids, templates, locales, subjects
    (and bodies when it rendered them, their unsubscribe tokens aside: those carry the wall
    clock's time of rendering)."""
    assert fast.messages.keys() == exact.messages.keys(), "different message ids"
    for message_id, exact_message in exact.messages.items():
        message = fast.messages[message_id]
        if not bodies:
            exact_message = replace(exact_message, html=None, text=None)
        assert _untokened(message) == _untokened(exact_message), f"message {message_id} differs"


def _untokened(message: RenderedMessage) -> RenderedMessage:
    return replace(
        message,
        html=UNSUBSCRIBE_TOKEN.sub("/unsubscribe/…", message.html or ""),
        text=UNSUBSCRIBE_TOKEN.sub("/unsubscribe/…", message.text or ""),
    )


async def population(project: Project) -> list[list[object]]:
    subjects = FastSimulator(project.root, project.config, render="subjects")
    bodies = FastSimulator(project.root, project.config, render="all")
    exact = Simulator(project.root, project.config)
    sample = population_scenario(project, EXACT_CUSTOMERS)
    exact_timing, exact_result = await simulate(exact, sample)
    for simulator, with_bodies in ((subjects, False), (bodies, True)):
        _, result = await simulate(simulator, sample)
        same_messages(result, exact_result, with_bodies)
    scenario = population_scenario(project, CUSTOMERS)
    exact_rate = EXACT_CUSTOMERS / exact_timing.seconds
    rows: list[list[object]] = [
        [
            "exact (time-skipping server)",
            EXACT_CUSTOMERS,
            exact_timing.seconds,
            exact_rate,
            1000 * exact_timing.cpu_seconds / EXACT_CUSTOMERS,
            1.0,
            "",
        ]
    ]
    for name, simulator, goal in (
        ('fast, render="subjects"', subjects, GOAL_SUBJECTS),
        ('fast, render="all"', bodies, GOAL_ALL),
    ):
        timings = [(await simulate(simulator, scenario))[0] for _ in range(POPULATION_ROUNDS)]
        seconds = median([t.seconds for t in timings])
        cpu_ms = 1000 * median([t.cpu_seconds for t in timings]) / CUSTOMERS
        rate = CUSTOMERS / seconds
        ratio = rate / exact_rate
        rows.append([name, CUSTOMERS, seconds, rate, cpu_ms, ratio, verdict(ratio, goal)])
    return rows


def command(*extra: str) -> tuple[Timing, str]:
    """``touchpoint simulate …`` for Max, as a user runs it: its time and its report."""
    # bytecode written and read, as an installed package has it (a user's second command
    # does not compile every module from source; bench/stack.py's workers do the same)
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment = {**inherited, "PYTHONPATH": str(ROOT)}
    began, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *COMMAND, *extra],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    timing = Timing(time.perf_counter() - began, _children_cpu() - cpu)
    assert done.returncode == 0, done.stderr
    assert f"{MESSAGES_PER_CUSTOMER} message(s) would be sent" in done.stdout, done.stdout
    return timing, done.stdout


def _children_cpu() -> float:
    """CPU seconds of the commands run so far (the test server of ``--exact`` aside: it is
    not the command's own child)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def whole_command() -> list[list[object]]:
    fast: list[Timing] = []
    exact: list[Timing] = []
    for _ in range(ROUNDS):  # interleaved: the machine's load falls on both alike
        timing, fast_report = command()
        fast.append(timing)
        timing, exact_report = command("--exact")
        exact.append(timing)
        assert fast_report == exact_report, "the fast and the exact report differ"
    exact_s, fast_s = median([t.seconds for t in exact]), median([t.seconds for t in fast])
    exact_cpu = median([t.cpu_seconds for t in exact])
    fast_cpu = median([t.cpu_seconds for t in fast])
    return [
        ["--exact", exact_s, exact_cpu, 1.0, ""],
        [
            "fast (default)",
            fast_s,
            fast_cpu,
            exact_s / fast_s,
            verdict(fast_s, GOAL_COMMAND_SECONDS, higher_is_better=False),
        ],
    ]


def main() -> None:
    quiet_sdk_logs()
    header(
        "bench_fast_simulation: the fast simulator (issue 20)",
        f"BENCH_CUSTOMERS={CUSTOMERS}, BENCH_EXACT_CUSTOMERS={EXACT_CUSTOMERS}, "
        f"BENCH_POPULATION_ROUNDS={POPULATION_ROUNDS}, BENCH_ROUNDS={ROUNDS}",
    )
    project, problems = load_project(ROOT)
    assert project is not None, problems
    rows = asyncio.run(population(project))
    print(
        f"\nA population through {', '.join(JOURNEYS)} "
        f"({MESSAGES_PER_CUSTOMER} messages each; the exact baseline on a sample of "
        f"{EXACT_CUSTOMERS}, compared by customers/s; fast: median of {POPULATION_ROUNDS}):"
    )
    headers = ["simulator", "customers", "s", "customers/s", "CPU ms/customer", "× exact", "goal"]
    print(table(headers, rows))
    print(f"\nMax's 90 days as a whole command (median of {ROUNDS}, same report asserted):")
    print(table(["touchpoint simulate", "s", "CPU s", "× exact", "goal"], whole_command()))


if __name__ == "__main__":
    main()
