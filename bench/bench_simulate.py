"""How fast is time travel? (issue 6)

1. Max's 90 days across the three example journeys (``demo/max``): wall time of the whole
   simulation (project validation included), against the 2 s target and against the 90 days
   it stands for.
2. A population through a short newsletter-like journey (3 sends, 2 waits of 3 s): customers
   per second on the time-skipping server, against the same population, same code, on the real
   dev server in real time — the baseline, measured in the same run.

    python bench/bench_simulate.py            # BENCH_CUSTOMERS=500 by default (1000: +2 min)
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import temporalio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from language.validator import validate
from ops.binaries import find_binary
from simulation.commands import quiet_sdk_logs
from simulation.scenario import EventSpec, ProfileSpec
from simulation.setup import build_scenario, load_project
from simulation.simulator import Scenario, Simulator, quiet_runtime

ROOT = Path(__file__).resolve().parent.parent
MAX = ROOT / "demo" / "max"
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "500"))
REPEATS = 3

SHORT_JOURNEY = """\
id: bench-welcome
name: Benchmark welcome series
category: marketing
trigger:
  event: Newsletter Subscribed
entry:
  reentry: once
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
  - wait: 3s
  - id: recommendations
    send: email
    template: newsletter-recommendations
  - wait: 3s
  - id: offer
    send: email
    template: free-shipping
"""


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"temporalio {temporalio.__version__}"
    )


async def max_ninety_days() -> float:
    began = time.perf_counter()
    project, problems = load_project(ROOT)
    assert project is not None, problems
    scenario = build_scenario(
        project,
        ["newsletter-welcome", "laptop-recommendation", "post-purchase-accessories"],
        profile=MAX / "profile.yaml",
        events=MAX / "events.yaml",
        lookups=MAX / "lookups.yaml",
        start="2027-01-04T09:00+01:00",
    )
    result = await Simulator(project.root, project.config).run(scenario)
    assert len(result.messages) == 8, len(result.messages)
    return time.perf_counter() - began


def short_project(folder: Path) -> Path:
    """The examples' templates and config, plus the short journey."""
    shutil.copytree(ROOT / "templates", folder / "templates")
    shutil.copy(ROOT / "touchpoint.yaml", folder / "touchpoint.yaml")
    (folder / "journeys").mkdir()
    (folder / "journeys" / "bench-welcome.yaml").write_text(SHORT_JOURNEY)
    return folder


def population(size: int) -> list[ProfileSpec]:
    return [
        ProfileSpec(id=f"c{i:05d}", email=f"c{i:05d}@example.com", locale="en") for i in range(size)
    ]


async def dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=pydantic_data_converter,
        runtime=quiet_runtime(),
        ui=False,
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )


async def run_population(folder: Path, size: int, on_dev_server: bool) -> float:
    report = validate((), root=folder)
    assert report.ok, [p.format() for p in report.problems]
    plan = report.plans["bench-welcome"]
    start = datetime.now(UTC).replace(microsecond=0)
    scenario = Scenario(
        plans=[plan],
        customers=population(size),
        events=[(start, EventSpec(event="Newsletter Subscribed"))],
        start=start,
        # on the dev server the simulation ends when the last run has (or after this long)
        until=timedelta(minutes=20) if on_dev_server else timedelta(days=1),
    )
    simulator = (
        Simulator(folder, report.config, dev_server)
        if on_dev_server
        else Simulator(folder, report.config)
    )
    began = time.perf_counter()
    result = await simulator.run(scenario)
    elapsed = time.perf_counter() - began
    done = sum(1 for run in result.runs if run.outcome and run.outcome.kind == "completed")
    assert done == size, f"{done} of {size} runs completed"
    assert len(result.messages) == 3 * size
    return elapsed


async def main() -> None:
    quiet_sdk_logs()
    print(f"bench_simulate — {machine()}")
    timings = [await max_ninety_days() for _ in range(REPEATS)]
    median = statistics.median(timings)
    print(
        f"  Max's 90 days, 3 journeys, 8 messages: median {median:.2f}s of {REPEATS} "
        f"(target < 2 s: {'met' if median < 2 else 'MISSED'}); "
        f"{timedelta(days=90).total_seconds() / median:,.0f}× faster than real time"
    )
    with tempfile.TemporaryDirectory() as folder:
        project = short_project(Path(folder))
        skipping = await run_population(project, CUSTOMERS, on_dev_server=False)
        real = await run_population(project, CUSTOMERS, on_dev_server=True)
    print(
        f"  {CUSTOMERS} customers, 3 sends + 2 waits of 3 s each: "
        f"time-skipping {skipping:.1f}s ({CUSTOMERS / skipping:.0f} customers/s), "
        f"dev server in real time {real:.1f}s ({CUSTOMERS / real:.0f} customers/s); "
        f"ratio {real / skipping:.2f} (dev server time / simulation time)"
    )


if __name__ == "__main__":
    asyncio.run(main())
