"""How fast is a replay? (issue 20, point 4: "100,000 customers × 30 days of events in minutes")

A generated event log (``demo/generate_events.py``: BENCH_CUSTOMERS customers, 30 days, seed 7)
in a throw-away SQLite store; the example journeys replayed on it as ``touchpoint replay``
does, on each simulator there is — the exact one (Temporal's time-skipping server) and the fast
one when ``simulation/fast.py`` is in this checkout. Reports wall time (reading the log
included), customers and calls per second, and whether both simulators gave the same report.

    python bench/bench_replay.py       # BENCH_CUSTOMERS=1000 by default; BENCH_JOURNEYS=a,b
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from demo.generate_events import generate, write
from simulation.commands import quiet_sdk_logs
from simulation.replay import read_recorded, simulator_for, summarize
from simulation.scenario import load_lookups
from simulation.setup import load_project, pick_plans
from store.database import connect

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "1000"))
JOURNEYS = os.environ.get(
    "BENCH_JOURNEYS", "newsletter-welcome,laptop-recommendation,post-purchase-accessories"
).split(",")


def main() -> None:
    quiet_sdk_logs()
    project, _ = load_project(ROOT)
    assert project is not None, "touchpoint.yaml has problems"
    plans = pick_plans(project, JOURNEYS)
    lookups = load_lookups(ROOT / "demo" / "replay" / "lookups.yaml")
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    zone = ZoneInfo(project.config.defaults.timezone)
    print(f"{platform.node()}, Python {platform.python_version()}: {CUSTOMERS:,} customers")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        engine = connect(f"sqlite:///{Path(folder) / 'store.db'}")
        generated = generate(CUSTOMERS, 7, end)
        write(engine, generated, 7)
        simulators = [simulator_for(ROOT, project.config, exact=True)]
        fast = simulator_for(ROOT, project.config, exact=False)
        if fast.name != "exact":
            simulators.insert(0, fast)
        reports = []
        for simulator in simulators:
            began = time.perf_counter()
            recorded = read_recorded(engine, generated.start, end)
            result = asyncio.run(simulator.run(recorded.scenario(plans, lookups)))
            seconds = time.perf_counter() - began
            report = summarize(recorded, result, simulator.name, zone)
            reports.append(report.as_json())
            sent = sum(journey.sent for journey in report.journeys)
            print(
                f"  {simulator.name:<5} {seconds:8.1f} s  {len(recorded.customers) / seconds:8.1f} "
                f"customers/s  {len(recorded.events) / seconds:8.1f} calls/s  "
                f"({len(recorded.events):,} calls, {len(result.runs):,} runs, {sent:,} messages)"
            )
        engine.dispose()
    if len(reports) == 2:
        for report in reports:
            report.pop("simulator")
        print("  same report on both:", reports[0] == reports[1])


if __name__ == "__main__":
    main()
