"""What the worker counts of messages, providers, lookups and policies, for Prometheus.

Recorded through the Temporal SDK's metric meter (``activity.metric_meter()``), so the worker
serves them on ``TOUCHPOINT_METRICS_ADDRESS`` beside the SDK's own ``temporal_…`` metrics: one
scrape target per worker. Without that setting the meter is a no-op and nothing is recorded.
The SDK adds ``namespace``, ``task_queue`` and ``activity_type`` to every series.

| metric | labels |
|---|---|
| ``touchpoint_messages_total`` | journey, channel, status (sent, skipped, deferred, failed), |
| | policy (who kept it back) |
| ``touchpoint_policy_decisions_total`` | policy, action (send, skip, defer, end) |
| ``touchpoint_provider_seconds`` (histogram) | provider, channel |
| ``touchpoint_provider_errors_total`` | provider, channel, class (retryable, permanent), kind |
| ``touchpoint_lookups_total`` | connection, result (found, not_found, retryable, permanent, |
| | cancelled) |
| ``touchpoint_lookup_seconds`` (histogram) | connection |
| ``touchpoint_runs_started_total`` | journey (runs a broadcast or date journey's page started; |
| | the API counts the runs its router starts under the same name) |
| ``touchpoint_analytics_dropped_total`` | — (batches of analytics records the worker dropped) |
| ``touchpoint_analytics_backlog`` (gauge) | — (batches waiting for the store to take them) |

Label values come from bounded sets only: journey ids, channel, provider and connection names
of the project, policy names, the error kinds of :mod:`activities.errors`. Never a customer
id, an address, a reason's free text. Each value is counted by the attempt that learnt it: a
retry that finds its message already sent counts nothing more.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError

MessageStatus = Literal["sent", "skipped", "deferred", "failed"]
NO_POLICY = "none"  # the chain had no objection, or nothing but the chain decided
NO_RECIPIENT = "no-recipient"  # skipped before the chain: no address, number or destination
SENDER = "sender"  # skipped by the channel's sender (no chat id …)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HISTOGRAMS = ("touchpoint_provider_seconds", "touchpoint_lookup_seconds")


def histogram_buckets() -> dict[str, list[float]]:
    """Bucket bounds (seconds) for the runtime's Prometheus exporter (its defaults are ms)."""
    return {name: list(LATENCY_BUCKETS) for name in HISTOGRAMS}


def _meter() -> MetricMeter:
    return activity.metric_meter() if activity.in_activity() else MetricMeter.noop


def count_message(
    journey: str, channel: str, status: MessageStatus, policy: str = NO_POLICY
) -> None:
    _meter().create_counter(
        "touchpoint_messages_total", "Messages by journey, channel, status"
    ).add(1, {"journey": journey, "channel": channel, "status": status, "policy": policy})


def count_run_started(journey: str) -> None:
    """A run the worker started (a broadcast's or a date journey's page): counted once the
    server accepted the start, so a customer whose run already existed counts nothing."""
    _meter().create_counter(
        "touchpoint_runs_started_total", "Runs started by the worker's pages, by journey"
    ).add(1, {"journey": journey})


def count_decision(policy: str | None, action: str) -> None:
    _meter().create_counter(
        "touchpoint_policy_decisions_total", "Decisions of the delivery policy chain"
    ).add(1, {"policy": policy or NO_POLICY, "action": action})


def error_class(error: BaseException) -> Literal["retryable", "permanent"]:
    """As Temporal treats it: only a non-retryable ``ApplicationError`` is permanent."""
    permanent = isinstance(error, ApplicationError) and error.non_retryable
    return "permanent" if permanent else "retryable"


def _kind(error: BaseException) -> str:
    return (error.type if isinstance(error, ApplicationError) else None) or type(error).__name__


@asynccontextmanager
async def provider_call(provider: str, channel: str) -> AsyncIterator[None]:
    """Time one hand-over to a provider; count it as an error of its class if it raises."""
    labels = {"provider": provider or "unknown", "channel": channel}
    meter = _meter()
    started = time.perf_counter()
    try:
        yield
    except Exception as error:  # a cancelled activity (its run ended) is no provider error
        meter.create_counter(
            "touchpoint_provider_errors_total", "Provider calls that failed, by class"
        ).add(1, {**labels, "class": error_class(error), "kind": _kind(error)})
        raise
    finally:
        meter.create_histogram_float(
            "touchpoint_provider_seconds", "Time a provider took to accept a message", "s"
        ).record(time.perf_counter() - started, labels)


@asynccontextmanager
async def lookup_call(connection: str) -> AsyncIterator[dict[str, str]]:
    """Time one lookup and count its result: the caller sets ``result`` on success (found,
    not_found); a failure counts as its class."""
    meter = _meter()
    outcome = {"result": "found"}
    started = time.perf_counter()
    try:
        yield outcome
    except Exception as error:
        outcome["result"] = error_class(error)
        raise
    except BaseException:
        outcome["result"] = "cancelled"
        raise
    finally:
        labels = {"connection": connection}
        meter.create_histogram_float(
            "touchpoint_lookup_seconds", "Time a lookup took, answer read", "s"
        ).record(time.perf_counter() - started, labels)
        meter.create_counter("touchpoint_lookups_total", "Lookups by connection and result").add(
            1, {**labels, **outcome}
        )


class AnalyticsMetrics:
    """The worker's analytics recorder (:class:`store.analytics.RetryingRecorder`) on the
    runtime's meter: batches dropped because its backlog was full, and its backlog's length.
    Not an activity's meter: the recorder's thread reports, outside any activity."""

    def __init__(self, meter: MetricMeter) -> None:
        self._dropped = meter.create_counter(
            "touchpoint_analytics_dropped_total",
            "Batches of analytics records dropped: the store refused them and the backlog was full",
        )
        self._backlog = meter.create_gauge(
            "touchpoint_analytics_backlog", "Batches of analytics records waiting for the store"
        )

    def dropped(self, batches: int) -> None:
        self._dropped.add(batches)

    def backlog(self, batches: int) -> None:
        self._backlog.set(batches)
