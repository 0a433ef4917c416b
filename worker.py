"""Temporal worker entry point: connect, register the journey workflow and activities, run.

``python worker.py [--role all|workflows|activities] [--project DIR] [--health-port N]`` (or
``touchpoint worker``). Workflows and activities run in one process by default; ``--role``
splits them so ops can scale each apart. ``--health-port`` serves ``/healthz`` and ``/readyz``
(:mod:`ops.health`). SIGTERM (and Ctrl-C) shut the workers down gracefully: in-flight
activities get ``graceful_shutdown_seconds`` to finish, then Temporal retries them elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.service import RPCError

from activities.audience import AudienceActivities
from activities.privacy import PrivacyActivities, outbox_of
from activities.profiles import ProfileReader
from config.errors import ConfigurationError
from config.settings import Settings, connect, load_settings
from language.validator import require_valid
from ops.broadcasts import sync_broadcasts
from ops.environment import require_environment
from ops.exits import exit_code, leave
from ops.health import CHECK_SECONDS, Checks, serve_health
from ops.retention import start_retention
from ops.workers import (
    Role,
    analytics_recorded,
    build_workers,
    fetch_missing_plans,
    keep_payloads_out_of_logs,
    worker_options,
)
from simulation.recording import RecordingActivities
from store.database import connect as connect_store
from store.deployments import Deployments
from store.ledger import Ledger
from store.plans import PlanStore
from store.profiles import ProfileStore
from workflows import registry
from workflows.models import JOURNEY_QUEUE

log = logging.getLogger("touchpoint.worker")


async def run_worker(
    project: Path,
    role: Role = "all",
    stop: asyncio.Event | None = None,
    health: tuple[str, int] | None = None,
) -> None:
    """Run until SIGTERM, SIGINT or ``stop``; ``health``: serve ``/healthz`` and ``/readyz`` on
    this host and port."""
    keep_payloads_out_of_logs()
    report = require_valid(project)
    settings = load_settings(report.config)
    require_environment(report, os.environ, "the worker", delivers=settings.record_file is None)
    client = await connect(settings, with_metrics=True)
    store = connect_store(settings.database_url)
    plans = PlanStore(store)
    plans.publish(report.plans.values())  # runs carry a reference; any worker can load them
    registry.register(report.plans.values())
    names = {plan.journey_id: plan.name for plan in report.plans.values()}
    activities = _activities(settings, project, names, store) if role != "workflows" else []
    activities.append(ProfileReader(ProfileStore(store)).read_profile)  # the journey worker's
    if role != "workflows":  # the privacy queue: erasure and retention
        config = report.config
        privacy = PrivacyActivities(
            client, store, settings.erasure_secret, outbox_of(config, project), config.retention
        )
        activities += privacy.all()
        await _start_retention(client, settings)
        activities += AudienceActivities(client, store, settings.run_settings()).all()
        await _sync_broadcasts(client, settings, store)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    options = worker_options(settings)
    workers = build_workers(client, activities, options, role)

    async def ready() -> dict[str, bool]:
        try:
            reachable = await asyncio.wait_for(client.service_client.check_health(), CHECK_SECONDS)
        except Exception:  # any failure to answer is "not ready", never a crash of the probe
            reachable = False
        polling = not stop.is_set() and all(w.is_running and not w.is_shutdown for w in workers)
        return {"temporal": reachable, "polling": polling}

    async with AsyncExitStack() as stack:
        stack.callback(store.dispose)  # last: its connections close once the workers stopped
        if options.analytics and role != "activities":  # on before the workflows run, off after
            runtime = client.service_client.config.runtime  # set: TOUCHPOINT_METRICS_ADDRESS
            meter = runtime.metric_meter if runtime is not None else None
            stack.enter_context(
                analytics_recorded(options.queue_prefix + JOURNEY_QUEUE, store, meter)
            )
        for worker in workers:
            await stack.enter_async_context(worker)
        if health is not None:
            server = await _serve_health(health, ready)
            stack.push_async_callback(server.wait_closed)
            stack.callback(server.close)
        fetcher = asyncio.create_task(fetch_missing_plans(plans, stop))
        stack.push_async_callback(_finish, fetcher)
        queues = ", ".join(w.task_queue for w in workers)
        log.info("worker running on %s (%s): %s", settings.address, settings.namespace, queues)
        print(f"touchpoint worker ready: {queues}", flush=True)
        await stop.wait()
        log.info("shutting down")
    print("touchpoint worker stopped", flush=True)


async def _serve_health(address: tuple[str, int], ready: Checks) -> asyncio.Server:
    host, port = address
    try:
        return await serve_health(host, port, ready)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve the health checks on {host}:{port} "
            f"({os.strerror(error.errno) if error.errno else error}); "
            "give --health-port a free port"
        ) from None


async def _start_retention(client: Client, settings: Settings) -> None:
    """Register the retention schedule; a server that refuses (permissions) is a warning."""
    try:
        await start_retention(client, settings)
    except RPCError as error:
        log.warning("could not register the retention schedule: %s", error.message)


async def _sync_broadcasts(client: Client, settings: Settings, store: Engine) -> None:
    """Bring the scheduled journeys' Temporal Schedules to the store's deployments; a server
    that refuses (permissions) is a warning."""
    try:
        for line in await sync_broadcasts(
            client, Deployments(store), PlanStore(store), settings.queue_prefix
        ):
            log.info("broadcast %s", line)
    except RPCError as error:
        log.warning("could not register the broadcast schedules: %s", error.message)


async def _finish(task: asyncio.Task[None]) -> None:
    await task


def _activities(
    settings: Settings, project: Path, journey_names: dict[str, str], store: Engine
) -> list[Callable[..., Any]]:
    """Real delivery; the recording stand-in when TOUCHPOINT_RECORD_FILE is set (tests, demos)."""
    if settings.record_file is not None:
        fixtures = settings.lookup_fixtures
        lookups = json.loads(fixtures.read_text()) if fixtures else {}
        return RecordingActivities(record_file=settings.record_file, lookups=lookups).all()
    from activities.delivery import DeliveryActivities

    ledger = Ledger(store)  # one engine, one connection pool per process
    return DeliveryActivities.for_project(
        settings.config, project, ledger, journey_names=journey_names
    ).all()


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["all", "workflows", "activities"], default="all")
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--health-port", type=int, help="serve /healthz and /readyz on it")
    parser.add_argument("--health-host", default="127.0.0.1", help="interface for them")
    args = parser.parse_args(argv)
    health = None if args.health_port is None else (args.health_host, args.health_port)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    leave(
        exit_code(
            "worker.py",
            lambda: asyncio.run(run_worker(args.project.resolve(), args.role, health=health)),
        )
    )


if __name__ == "__main__":
    main()
