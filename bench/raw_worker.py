"""The baseline's worker process: ``RawJourney`` and the same recording activities as the real
worker, on one task queue, with Touchpoint's worker defaults (cache, activity slots).

``python bench/raw_worker.py --queue Q`` (address from TOUCHPOINT_TEMPORAL_ADDRESS, record file
from TOUCHPOINT_RECORD_FILE). Also polls ``Q-activities`` for runs that put their activities on
a queue of their own (``RawInput.activity_queue``). Prints ``raw worker ready`` once polling;
SIGTERM stops it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from raw_workflow import RawJourney
from stack import connect
from temporalio.worker import Worker

from ops.workers import WorkerOptions
from simulation.recording import RecordingActivities


async def serve(queue: str, max_cached_workflows: int | None = None) -> None:
    client = await connect(os.environ["TOUCHPOINT_TEMPORAL_ADDRESS"])
    record = os.environ.get("TOUCHPOINT_RECORD_FILE")
    activities = RecordingActivities(record_file=Path(record) if record else None)
    defaults = WorkerOptions()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with (
        Worker(
            client,
            task_queue=queue,
            workflows=[RawJourney],
            activities=activities.all(),
            max_cached_workflows=max_cached_workflows or defaults.max_cached_workflows,
            max_concurrent_activities=defaults.max_concurrent_activities,
        ),
        Worker(
            client,
            task_queue=activity_queue(queue),
            activities=activities.all(),
            max_concurrent_activities=defaults.max_concurrent_activities,
        ),
    ):
        print("raw worker ready", flush=True)
        await stop.wait()


def activity_queue(queue: str) -> str:
    """The queue of the runs whose activities have one of their own."""
    return f"{queue}-activities"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-cached-workflows", type=int)
    args = parser.parse_args()
    asyncio.run(serve(args.queue, args.max_cached_workflows))
    sys.stdout.flush()
    os._exit(0)
