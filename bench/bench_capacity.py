"""Per-run costs of the three example journeys, and the capacity they imply (issue 15, point 6).

Typical customers go through each example end to end on the real stack: the dev server, the
real worker (``python worker.py``) with **real delivery** (the Maildir outbox; chat, webhook
and the shop's API answered by a local HTTP server), and the real API (``touchpoint api``),
which takes every call (``/v1/identify``, ``/v1/track``) — a day lasts a second
(``TOUCHPOINT_TIME_SCALE``). One journey at a time, so each process's CPU belongs to one
journey. Per run it measures:

- history events and bytes (every execution of the run, ``bench/payloads.py``);
- Temporal Cloud actions, counted from the history by :func:`actions` (the rule and its source
  are in its docstring);
- rows and bytes the run adds to the store (SQLite here): rows per table before and after;
  bytes from SQLite's ``dbstat`` virtual table (payload bytes of the table and its indexes, and
  the pages they take);
- CPU of the worker, the dev server and the API (``/proc``), less what each spends idle, per
  step executed (the run's timeline) and per API call.

``--json PATH`` writes the per-run figures; ``--table [PATH]`` prints the capacity table of
docs/deploy.md from such a file (default ``bench/capacity.json``) without running anything, so
the table can be recomputed with other assumptions (``--peak``, ``--retention-days``).
Size: ``BENCH_CUSTOMERS`` per journey (default 10)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from bench_ingestion import wait_ready
from payloads import sizes
from report import env_int, header, table
from stack import (
    BENCH,
    ROOT,
    DevServer,
    bench_project,
    child,
    connect,
    cpu_seconds,
    create_write_key,
    dev_server,
    free_port,
    temporary_directory,
    worker_env,
)
from starts import DAY_IN_SECONDS
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from store.analytics import Analytics
from store.database import connect as connect_store
from workflows.models import RunResult, customer_hash
from workflows.search import CUSTOMER

DEFAULT_JSON = BENCH / "capacity.json"
SECRETS = {  # what the example project needs in its environment; nothing real is reached
    "CRM_WEBHOOK_SECRET": "whsec_YmVuY2gtc2VjcmV0LWZvci10aGUtY3Jt",
    "SHOP_API_TOKEN": "bench-shop-api-token",
    "TOUCHPOINT_UNSUBSCRIBE_SECRET": "bench-unsubscribe-secret-0123456789",
}
PRODUCTS = {
    "products": [
        {
            "name": name,
            "price": price,
            "currency": "EUR",
            "url": f"https://shop.example/{slug}",
            "image_url": f"https://shop.example/{slug}.png",
            "highlights": ["14 inch"],
        }
        for name, price, slug in (("Aero 14", 1299.0, "a14"), ("Work 15", 999.0, "w15"))
    ]
}
IDLE_SECONDS = 3.0


@dataclass(frozen=True)
class Scenario:
    """A typical customer of one example: the profile, the trigger, and the events the customer
    sends when the run waits at a step (the step's search attribute says where it waits)."""

    journey: str
    path: str  # the path a run takes, for people
    days: float  # how long such a run lives in production (its waits; see SCENARIOS)
    traits: Mapping[str, Any]
    trigger: str
    properties: Callable[[str], dict[str, Any]]
    replies: Mapping[str, tuple[str, Callable[[str], dict[str, Any]]]] = field(default_factory=dict)


def _order(customer: str) -> dict[str, Any]:
    return {"order_id": f"o-{customer}", "categories": ["laptops"]}


SCENARIOS = (
    Scenario(
        "newsletter-welcome",
        "welcome, 2d, branch, wait_until, recommendations, 5d, split: an offer (or the holdout)",
        9.0,  # 2d, then the next Tue-Thu 09:00 (1.6d on average), 5d
        {"interests": ["laptops"]},
        "Newsletter Subscribed",
        lambda customer: {},
    ),
    Scenario(
        "laptop-recommendation",
        "1h, lookup, picks, no click for 3d, reminder",
        3.0,  # 1h, then 3d without a click
        {"email_opt_in": True},
        "Product Category Viewed",
        lambda customer: {"category": "laptops"},
    ),
    Scenario(
        "post-purchase-accessories",
        "delivered, setup guide, +5d, lookup, accessory offer, 2w, survey, answered 9, referral",
        22.0,  # delivered after 2d (timeout 14d), +5d at 10:00, 14d, answered after 1d
        {},
        "Order Completed",
        _order,
        {
            "delivery": ("Order Delivered", _order),
            "answer": ("Survey Answered", lambda c: {**_order(c), "score": 9}),
        },
    ),
)


# --- Temporal Cloud actions ------------------------------------------------------------------


def actions(history: Any) -> collections.Counter[str]:
    """Billable Temporal Cloud actions of one execution, from its history, as
    https://docs.temporal.io/cloud/actions lists them (read 2026-12-06):

    - workflow started: 1 per execution (client start, signal-with-start, continue-as-new;
      the ``ContinuedAsNew`` event itself is not counted again);
    - signal: 1 per ``WorkflowExecutionSignaled``, except the signal of a signal-with-start
      that started the run ("one total action for any Signal-With-Start": the start above);
    - activity: 1 per ``ActivityTaskScheduled``, plus each retry (``attempt - 1`` of its
      ``ActivityTaskStarted``);
    - markers: all ``MarkerRecorded`` of one workflow task count 1 ("counts all RecordMarkers
      from each Workflow Task as one action": local activities, and here also the SDK's patch
      markers, which are RecordMarker commands too), plus local activity retries
      (``metering_metadata.nonfirst_local_activity_execution_attempts``);
    - timer: 1 per ``TimerStarted`` (the timeout of a ``wait_for`` is one);
    - search attributes: 1 per ``UpsertWorkflowSearchAttributes``, except an upsert of
      ``TemporalChangeVersion`` alone (exempt); attributes given at start are free;
    - child workflow: 2 per ``StartChildWorkflowExecutionInitiated``; update: 1 per
      ``WorkflowExecutionUpdateAccepted``; options updated: 1.

    Not in a history, so not counted: queries (none here: the driver lists runs through
    visibility, which is not billed), heartbeats (none: no activity heartbeats)."""
    found: collections.Counter[str] = collections.Counter()
    marker_tasks: set[int] = set()
    activity_names: dict[int, str] = {}  # scheduled event id → activity type
    events = list(history.events)
    for index, event in enumerate(events):
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if kind == "WORKFLOW_EXECUTION_STARTED":
            found["workflow started"] += 1
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            with_start = index == 1 and EventType.Name(events[0].event_type).endswith("STARTED")
            if not with_start:
                found["signal"] += 1
        elif kind == "ACTIVITY_TASK_SCHEDULED":
            found["activity"] += 1
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            activity_names[event.event_id] = name
        elif kind == "ACTIVITY_TASK_STARTED":
            started = event.activity_task_started_event_attributes
            if started.attempt > 1:  # named: a retry is worth a look
                name = activity_names.get(started.scheduled_event_id, "?")
                found[f"activity retry ({name})"] += started.attempt - 1
        elif kind == "MARKER_RECORDED":
            marker_tasks.add(
                event.marker_recorded_event_attributes.workflow_task_completed_event_id
            )
        elif kind == "WORKFLOW_TASK_COMPLETED":
            metering = event.workflow_task_completed_event_attributes.metering_metadata
            found["marker"] += metering.nonfirst_local_activity_execution_attempts
        elif kind == "TIMER_STARTED":
            found["timer"] += 1
        elif kind == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            names = set(
                event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            )
            found["search attributes"] += names != {"TemporalChangeVersion"}
        elif kind == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            found["child workflow"] += 2
        elif kind in ("WORKFLOW_EXECUTION_UPDATE_ACCEPTED", "WORKFLOW_EXECUTION_OPTIONS_UPDATED"):
            found["update"] += 1
    found["marker"] += len(marker_tasks)
    return +found  # without the kinds that counted nothing


# --- the shop's API, the chat and the CRM: a local HTTP server --------------------------------


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # lookups: the shop's recommendations and accessories
        self._reply(json.dumps(PRODUCTS).encode(), "application/json")

    def do_POST(self) -> None:  # Slack incoming webhook, the CRM's webhook
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(b"ok", "text/plain")

    def _reply(self, body: bytes, kind: str) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def outside_world() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.requests = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def project_for(directory: Path, base: str) -> Path:
    """A copy of the example project whose connection and CRM webhook point at ``base``."""
    project = bench_project(directory)
    config = (project / "touchpoint.yaml").read_text()
    for address in ("https://shop.laptops.example/api", "https://crm.laptops.example"):
        if address not in config:
            raise SystemExit(f"touchpoint.yaml no longer names {address}; update bench_capacity")
        config = config.replace(address, base)
    (project / "touchpoint.yaml").write_text(config)
    return project


# --- the store -------------------------------------------------------------------------------


@dataclass
class StoreSize:
    rows: dict[str, int]
    payload: dict[str, int]  # bytes of the rows (and their index entries), per table
    pages: dict[str, int]  # bytes of the pages the table and its indexes take


def store_size(database: Path) -> StoreSize:
    """Rows per table, and bytes from ``dbstat`` (SQLite's own accounting of its pages)."""
    with sqlite3.connect(database) as db:
        tables = [
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_master"))
        rows = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        payload: collections.Counter[str] = collections.Counter()
        pages: collections.Counter[str] = collections.Counter()
        for name, used, allocated in db.execute(
            "SELECT name, sum(payload), sum(pgsize) FROM dbstat GROUP BY name"
        ):
            table_name = owner.get(name, name)
            payload[table_name] += used
            pages[table_name] += allocated
    return StoreSize(rows, dict(payload), dict(pages))


# --- one journey ------------------------------------------------------------------------------


@dataclass
class RunFigures:
    journey: str
    executions: int
    events: int
    history_bytes: int
    actions: dict[str, int]
    steps: int
    sends: int
    api_calls: int
    outcome: str
    scaled_days: float  # the run's life here / time scale: waits plus every delay, × 86,400


@dataclass
class JourneyFigures:
    journey: str
    path: str
    days: float
    runs: list[RunFigures]
    cpu_ms: dict[str, float]  # per process, idle subtracted, whole phase
    store_rows: dict[str, int]  # added by the phase, per table
    store_payload: dict[str, int]
    store_pages: dict[str, int]
    seconds: float


class Stack:
    def __init__(
        self,
        server: DevServer,
        client: Client,
        http: httpx.AsyncClient,
        pids: dict[str, int],
        database: Path,
    ) -> None:
        self.server, self.client, self.http, self.pids = server, client, http, pids
        self.database = database
        self.idle: dict[str, float] = {}  # CPU seconds per wall second, per process

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    async def measure_idle(self) -> None:
        before, began = self.cpu(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        after, took = self.cpu(), time.monotonic() - began
        self.idle = {name: (after[name] - before[name]) / took for name in after}

    async def call(self, kind: str, body: dict[str, Any]) -> None:
        body = {**body, "messageId": uuid.uuid4().hex}
        response = await self.http.post(f"/v1/{kind}", json=body)
        if response.status_code != 200:
            raise SystemExit(f"/v1/{kind} answered {response.status_code}: {response.text}")


async def run_journey(stack: Stack, scenario: Scenario, customers: int) -> JourneyFigures:
    names = [f"cap-{uuid.uuid4().hex[:12]}" for _ in range(customers)]
    by_hash = {customer_hash(c): c for c in names}
    calls = collections.Counter[str]()
    store_before = store_size(stack.database)
    cpu_before, began = stack.cpu(), time.monotonic()

    async def enter(customer: str) -> None:
        traits = {"email": f"{customer}@example.com", **scenario.traits}
        await stack.call("identify", {"userId": customer, "traits": traits})
        properties = scenario.properties(customer)
        await stack.call(
            "track", {"userId": customer, "event": scenario.trigger, "properties": properties}
        )
        calls[customer] += 2

    await asyncio.gather(*(enter(c) for c in names))
    query = f'TouchpointJourney = "{scenario.journey}"'
    answered: set[tuple[str, str]] = set()
    analytics = Analytics(connect_store(f"sqlite:///{stack.database}"))
    deadline = time.monotonic() + 180
    while True:
        executions = [e async for e in stack.client.list_workflows(query)]
        mine = [e for e in executions if (e.typed_search_attributes.get(CUSTOMER) or "") in by_hash]
        done = {
            e.id
            for e in mine
            if e.status
            not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW)
        }
        if len(done) == customers:
            break
        # where each run is: the analytics store (runs of input version 4 keep it only there)
        where = analytics.latest_runs([e.id for e in mine])
        for execution in mine:
            run = where.get(execution.id)
            step = (run.current_step if run else None) or ""
            customer = by_hash[execution.typed_search_attributes.get(CUSTOMER) or ""]
            if execution.status != WorkflowExecutionStatus.RUNNING or step not in scenario.replies:
                continue
            if (customer, step) in answered:
                continue
            answered.add((customer, step))
            event, properties = scenario.replies[step]
            await stack.call(
                "track", {"userId": customer, "event": event, "properties": properties(customer)}
            )
            calls[customer] += 1
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{scenario.journey}: {len(done)} of {customers} runs finished in 180 s"
            )
        await asyncio.sleep(0.25)
    seconds = time.monotonic() - began
    cpu_after = stack.cpu()
    store_after = store_size(stack.database)
    cpu_ms = {
        name: max(0.0, cpu_after[name] - cpu_before[name] - stack.idle[name] * seconds) * 1000
        for name in cpu_after
    }
    runs = []
    for workflow_id in sorted(done):
        chain = sorted((e for e in mine if e.id == workflow_id), key=lambda e: e.start_time)
        figures = RunFigures(scenario.journey, len(chain), 0, 0, {}, 0, 0, 0, "", 0.0)
        counted: collections.Counter[str] = collections.Counter()
        for execution in chain:
            handle = stack.client.get_workflow_handle(workflow_id, run_id=execution.run_id)
            history = await handle.fetch_history()
            found = sizes(history)
            figures.events += found.events
            figures.history_bytes += found.history_bytes
            figures.sends += found.sends
            counted += actions(history)
        last = chain[-1]
        result = RunResult.model_validate(
            await stack.client.get_workflow_handle(workflow_id, run_id=last.run_id).result()
        )
        figures.actions = dict(counted)
        figures.steps = len(result.timeline)
        figures.outcome = str(result.outcome.kind)
        figures.api_calls = calls[by_hash[last.typed_search_attributes.get(CUSTOMER) or ""]]
        closed = last.close_time or last.start_time
        figures.scaled_days = (
            (closed - chain[0].start_time) / timedelta(seconds=1) / 86_400 / DAY_IN_SECONDS
        )
        runs.append(figures)
    return JourneyFigures(
        scenario.journey,
        scenario.path,
        scenario.days,
        runs,
        cpu_ms,
        _delta(store_before.rows, store_after.rows),
        _delta(store_before.payload, store_after.payload),
        _delta(store_before.pages, store_after.pages),
        seconds,
    )


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in sorted(after)
        if after.get(k, 0) != before.get(k, 0)
    }


# --- per run, per journey ---------------------------------------------------------------------


def per_run(journey: Mapping[str, Any]) -> dict[str, float]:
    """Mean figures of one journey's runs (from the JSON, so ``--table`` can recompute)."""
    runs = journey["runs"]
    count = len(runs)

    def mean(key: str) -> float:
        return sum(r[key] for r in runs) / count

    steps = sum(r["steps"] for r in runs)
    calls = sum(r["api_calls"] for r in runs)
    cpu = journey["cpu_ms"]
    return {
        "runs": count,
        "events": mean("events"),
        "history_bytes": mean("history_bytes"),
        "actions": sum(sum(r["actions"].values()) for r in runs) / count,
        "steps": steps / count,
        "sends": mean("sends"),
        "api_calls": calls / count,
        "days": journey["days"],
        "store_rows": sum(journey["store_rows"].values()) / count,
        "store_payload": sum(journey["store_payload"].values()) / count,
        # what stays: the API forgets processed message ids after 48 hours (store/processed.py)
        "kept_rows": sum(n for t, n in journey["store_rows"].items() if t not in PURGED) / count,
        "kept_payload": sum(n for t, n in journey["store_payload"].items() if t not in PURGED)
        / count,
        # a customer has one profile, whichever journeys they go through (each run here is a
        # new customer's): counted once per customer in the capacity model
        "profile_rows": journey["store_rows"].get("profiles", 0) / count,
        "profile_payload": journey["store_payload"].get("profiles", 0) / count,
        "store_pages": sum(journey["store_pages"].values()) / count,
        "worker_ms_per_step": cpu["worker"] / steps,
        "server_ms_per_step": cpu["server"] / steps,
        "api_ms_per_call": cpu["api"] / calls,
        "worker_ms": cpu["worker"] / count,
        "server_ms": cpu["server"] / count,
        "api_ms": cpu["api"] / count,
    }


def action_mix(journey: Mapping[str, Any]) -> str:
    total: collections.Counter[str] = collections.Counter()
    for run in journey["runs"]:
        total.update(run["actions"])
    count = len(journey["runs"])
    return ", ".join(f"{k} {v / count:.3g}" for k, v in sorted(total.items()))


def print_runs(data: Mapping[str, Any]) -> None:
    rows, store_rows = [], []
    for journey in data["journeys"]:
        f = per_run(journey)
        rows.append(
            [
                journey["journey"],
                f["runs"],
                f["steps"],
                f["sends"],
                f["events"],
                f["history_bytes"],
                f["actions"],
                f["days"],
                f["worker_ms_per_step"],
                f["server_ms_per_step"],
                f["api_ms_per_call"],
            ]
        )
        count = len(journey["runs"])
        store_rows.append(
            [
                journey["journey"],
                f["store_rows"],
                f["store_payload"],
                f["store_pages"],
                ", ".join(f"{t} {n / count:.3g}" for t, n in journey["store_rows"].items()),
                action_mix(journey),
            ]
        )
    print(
        table(
            [
                "journey (per run)",
                "runs",
                "steps",
                "sends",
                "history events",
                "history bytes",
                "actions",
                "lives (days, assumed)",
                "worker CPU ms/step",
                "server CPU ms/step",
                "API CPU ms/call",
            ],
            rows,
        )
    )
    print(
        table(
            [
                "journey (per run)",
                "store rows",
                "store bytes (dbstat payload)",
                "store bytes (pages)",
                "rows by table",
                "actions by kind",
            ],
            store_rows,
        )
    )


# --- capacity ---------------------------------------------------------------------------------

MONTH_SECONDS = 30 * 86_400
PURGED = {"processed_messages"}  # kept 48 hours: not part of the store's growth
APS_DEFAULT = 500  # a Temporal Cloud namespace's default rate (1 TRU = 500 actions/s)
ACTIVE_GBH, RETAINED_GBH = 0.042, 0.00105  # USD per GB-hour (docs.temporal.io/cloud/pricing)
ACTION_TIERS = ((5e6, 50.0), (5e6, 45.0), (10e6, 40.0), (30e6, 35.0), (50e6, 30.0), (1e99, 25.0))
VOLUMES = (100_000, 1_000_000, 10_000_000)


def actions_usd(count: float) -> float:
    """Pay-as-you-go price of ``count`` actions a month (Business plan tiers, USD per million;
    above 200M the price is negotiated: 25 is assumed)."""
    usd, left = 0.0, count
    for size, per_million in ACTION_TIERS:
        used = min(left, size)
        usd += used / 1e6 * per_million
        left -= used
        if left <= 0:
            break
    return usd


@dataclass(frozen=True)
class Assumptions:
    peak: float = 10.0  # the busiest hour's rate, as a multiple of the month's average
    retention_days: float = 30.0  # closed histories kept (Temporal Cloud: 1 to 90 days)
    utilisation: float = 0.7  # plan processes to run at most this busy at the peak


@dataclass
class Capacity:
    customers: int
    runs: float
    actions: float
    peak_aps: float
    active_gb: float
    retained_gb: float
    temporal_usd: float
    store_gb_month: float
    store_rows_month: float
    api_calls: float
    api_processes: int
    worker_processes: int
    server_cores: float
    cores_per_customer_peak: float


def capacity(data: Mapping[str, Any], customers: int, assume: Assumptions) -> Capacity:
    """Every customer goes through each of the three examples once a month (the figures are
    linear: another mix is a weighted sum of the per-run figures)."""
    figures = [per_run(j) for j in data["journeys"]]
    actions_month = customers * sum(f["actions"] for f in figures)
    history = sum(f["history_bytes"] for f in figures)
    # open runs at any moment: the monthly arrivals times each run's life (full history: an
    # upper bound, a history grows over the run); closed ones: kept for the retention period
    active_gb = customers * sum(f["history_bytes"] * f["days"] for f in figures) / 30 / 1e9
    retained_gb = customers * history * assume.retention_days / 30 / 1e9
    usd = actions_usd(actions_month) + 720 * (active_gb * ACTIVE_GBH + retained_gb * RETAINED_GBH)
    rate = customers / MONTH_SECONDS * assume.peak  # customers a second through each journey
    api_cores = rate * sum(f["api_ms"] for f in figures) / 1000
    worker_cores = rate * sum(f["worker_ms"] for f in figures) / 1000
    server_cores = rate * sum(f["server_ms"] for f in figures) / 1000
    return Capacity(
        customers=customers,
        runs=customers * len(figures),
        actions=actions_month,
        peak_aps=actions_month / MONTH_SECONDS * assume.peak,
        active_gb=active_gb,
        retained_gb=retained_gb,
        temporal_usd=usd,
        store_gb_month=customers * _once(figures, "kept_payload", "profile_payload") / 1e9,
        store_rows_month=customers * _once(figures, "kept_rows", "profile_rows"),
        api_calls=customers * sum(f["api_calls"] for f in figures),
        api_processes=max(1, math.ceil(api_cores / assume.utilisation)),
        worker_processes=max(1, math.ceil(worker_cores / assume.utilisation)),
        server_cores=server_cores,
        cores_per_customer_peak=(api_cores + worker_cores + server_cores) / customers,
    )


def _once(figures: list[dict[str, float]], kept: str, profile: str) -> float:
    """What one customer keeps in the store after going through every journey: the rows of
    each run, the profile once."""
    return sum(f[kept] - f[profile] for f in figures) + max(f[profile] for f in figures)


def limits(data: Mapping[str, Any], assume: Assumptions) -> list[tuple[str, float]]:
    """Customers a month at which each limit is reached at the peak, lowest first."""
    one = capacity(data, 1, assume)
    figures = [per_run(j) for j in data["journeys"]]
    rate = 1 / MONTH_SECONDS * assume.peak
    per = {
        "one API process (1 core)": rate * sum(f["api_ms"] for f in figures) / 1000,
        "one worker process (1 core)": rate * sum(f["worker_ms"] for f in figures) / 1000,
        "the dev server (1 process, SQLite)": rate * sum(f["server_ms"] for f in figures) / 1000,
    }
    found = [(name, assume.utilisation / load) for name, load in per.items()]
    found.append(
        (
            "one 2-core machine (API, worker, dev server)",
            2 * assume.utilisation / one.cores_per_customer_peak,
        )
    )
    found.append(
        (
            f"Temporal Cloud: a namespace's default {APS_DEFAULT} actions/s",
            APS_DEFAULT / one.peak_aps,
        )
    )
    return sorted(found, key=lambda item: item[1])


def capacity_table(data: Mapping[str, Any], assume: Assumptions) -> str:
    ordered = limits(data, assume)
    rows = []
    for customers in VOLUMES:
        c = capacity(data, customers, assume)
        reached = [name for name, at in ordered if at <= customers]
        first = (
            reached[0] if reached else f"none (next: {ordered[0][0]}, at {_count(ordered[0][1])})"
        )
        rows.append(
            [
                _count(customers),
                _count(c.runs),
                _count(c.actions),
                f"{c.peak_aps:.3g}",
                f"{c.active_gb:.3g} / {c.retained_gb:.3g}",
                f"{c.temporal_usd:,.0f}",
                f"{c.store_gb_month:.3g} ({_count(c.store_rows_month)} rows)",
                c.api_processes,
                c.worker_processes,
                f"{c.server_cores:.2g}",
                first,
            ]
        )
    return table(
        [
            "customers / month",
            "runs",
            "Temporal actions",
            "peak actions/s",
            "history GB open / retained",
            "Temporal Cloud USD/month (actions + storage)",
            "store growth GB/month (kept rows)",
            "API processes",
            "worker processes",
            "server cores (dev server CPU)",
            "first limit reached",
        ],
        rows,
    )


def limits_table(data: Mapping[str, Any], assume: Assumptions) -> str:
    return table(
        ["limit", "reached at customers / month"],
        [[name, _count(at)] for name, at in limits(data, assume)],
    )


def _count(value: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def print_capacity(data: Mapping[str, Any], assume: Assumptions) -> None:
    print(
        f"\nAssumptions: every customer through each example once a month; the peak hour "
        f"{assume.peak:g}× the month's average; processes at most {assume.utilisation:.0%} busy; "
        f"closed histories kept {assume.retention_days:g} days."
    )
    print(capacity_table(data, assume))
    print(limits_table(data, assume))
    print(burst(data, assume))


def burst(data: Mapping[str, Any], assume: Assumptions) -> str:
    """``newsletter-welcome`` waits until 09:00 on a Tuesday, Wednesday or Thursday: the runs of
    a month wake on about 13 mornings, all in the same minute. How long the backlog takes."""
    journey = next((j for j in data["journeys"] if j["journey"] == "newsletter-welcome"), None)
    if journey is None:
        return ""
    f = per_run(journey)
    lines = ["newsletter-welcome wakes its runs at 09:00 on ~13 mornings a month:"]
    for customers in VOLUMES:
        workers = capacity(data, customers, assume).worker_processes
        runs = customers / 13
        # the wake-up and the send that follows: two steps of worker and server CPU
        worker_minutes = runs * 2 * f["worker_ms_per_step"] / 1000 / workers / 60
        server_minutes = runs * 2 * f["server_ms_per_step"] / 1000 / 60
        lines.append(
            f"  {_count(customers)} customers: {_count(runs)} runs at once; "
            f"{worker_minutes:.3g} min of work for {workers} worker process(es), "
            f"{server_minutes:.3g} core-minutes of (dev) server CPU"
        )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


async def measure(customers: int) -> dict[str, Any]:
    header(
        "Capacity: per-run costs of the three example journeys",
        f"{customers} customers per journey, real delivery (Maildir, local HTTP), real API, "
        "dev server WAL/normal, a day lasts a second",
    )
    with temporary_directory("capacity") as tmp, outside_world() as world:
        directory = Path(tmp)
        base = f"http://127.0.0.1:{world.server_address[1]}"
        project = project_for(directory, base)
        async with dev_server(directory) as server:
            client = await connect(server.address)
            env = worker_env(server, directory, **SECRETS)
            del env["TOUCHPOINT_RECORD_FILE"]  # real delivery: the ledger is written
            env["SLACK_SUPPORT_WEBHOOK_URL"] = f"{base}/slack"
            env["TOUCHPOINT_TIME_SCALE"] = repr(DAY_IN_SECONDS)
            key = create_write_key(env, "capacity")
            port = free_port()
            api = [
                sys.executable,
                "-m",
                "cli",
                "api",
                "--port",
                str(port),
                "-C",
                str(project),
            ]
            worker = [sys.executable, str(ROOT / "worker.py"), "--project", str(project)]
            with (  # the API starts while the worker compiles the project
                child(api, env, directory / "api.log") as a,
                child(worker, env, directory / "worker.log", "touchpoint worker ready") as w,
            ):
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=30
                ) as http:
                    await wait_ready(http)
                    pids = {"worker": w.pid, "server": server.pid, "api": a.pid}
                    stack = Stack(server, client, http, pids, directory / "touchpoint.db")
                    await stack.measure_idle()
                    journeys = []
                    for scenario in SCENARIOS:
                        found = await run_journey(stack, scenario, customers)
                        print(
                            f"  {scenario.journey}: {customers} runs in {found.seconds:.1f} s",
                            flush=True,
                        )
                        journeys.append(asdict(found))
            outbox = sum(1 for p in (project / ".touchpoint" / "outbox").rglob("*") if p.is_file())
    sends = sum(r["sends"] for j in journeys for r in j["runs"])
    ledger = sum(j["store_rows"].get("deliveries", 0) for j in journeys)
    print(
        f"sends in the histories {sends}, ledger rows {ledger}, emails in the outbox {outbox}, "
        f"lookups and chat/webhook requests answered {world.requests}: "  # type: ignore[attr-defined]
        + ("consistent" if sends == ledger else "MISMATCH: the per-run store figures are suspect")
    )
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "customers_per_journey": customers,
        "time_scale": DAY_IN_SECONDS,
        "idle_cpu_per_second": stack.idle,
        "emails_in_outbox": outbox,
        "http_requests_answered": world.requests,  # type: ignore[attr-defined]
        "store_bytes": "SQLite dbstat: payload (rows and index entries) and pages, per table",
        "journeys": journeys,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the per-run figures to this file")
    parser.add_argument(
        "--table",
        nargs="?",
        type=Path,
        const=DEFAULT_JSON,
        help="print the capacity table from a JSON of per-run figures (no run)",
    )
    parser.add_argument("--peak", type=float, default=Assumptions.peak)
    parser.add_argument("--retention-days", type=float, default=Assumptions.retention_days)
    parser.add_argument("--utilisation", type=float, default=Assumptions.utilisation)
    args = parser.parse_args()
    assume = Assumptions(args.peak, args.retention_days, args.utilisation)
    if args.table is not None:
        try:
            data = json.loads(args.table.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"cannot read per-run figures from {args.table}: {error}") from None
        if not isinstance(data, dict):
            raise SystemExit(f"{args.table} is not per-run figures of bench_capacity.py")
        print(f"per-run figures measured {data.get('measured')} ({args.table})")
    else:
        from stack import run

        box: dict[str, Any] = {}

        async def go() -> None:
            box.update(await measure(env_int("BENCH_CUSTOMERS", 10)))

        run(go)
        data = box
        if args.json:
            args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
            print(f"per-run figures written to {args.json}")
    try:
        print_runs(data)
        print_capacity(data, assume)
    except (KeyError, TypeError, ZeroDivisionError) as error:
        raise SystemExit(f"not per-run figures of bench_capacity.py: {error!r}") from None


if __name__ == "__main__":
    main()
