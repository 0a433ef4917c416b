"""The API's Prometheus registry, served at ``GET /metrics``, and what the router counts in it.

``touchpoint_runs_started_total{journey}`` counts the runs the router started: a signal-with-
start the server answered with a new run (an event that only reached a running run is not a
start). It is counted in the process that started the run — the API, or ``touchpoint emit``;
the runs a broadcast's or date journey's page starts are counted by the worker under the same
name (:func:`activities.metrics.count_run_started`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry()
RUNS_STARTED = Counter(
    "touchpoint_runs_started",
    "Runs started by the router, by journey",
    ["journey"],
    registry=REGISTRY,
)
