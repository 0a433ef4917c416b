"""Deployment settings: ``touchpoint.yaml`` first, the environment on top, secrets only from
the environment.

| variable | meaning |
|---|---|
| TOUCHPOINT_TEMPORAL_ADDRESS, TOUCHPOINT_TEMPORAL_NAMESPACE | override ``temporal:`` |
| TOUCHPOINT_TEMPORAL_API_KEY | API key (Temporal Cloud); implies TLS |
| TOUCHPOINT_TEMPORAL_TLS_CERT, TOUCHPOINT_TEMPORAL_TLS_KEY | client certificate, key (mTLS) |
| TOUCHPOINT_QUEUE_PREFIX | prefix for every task queue (several deployments on one namespace) |
| TOUCHPOINT_DATABASE_URL | Touchpoint's own store |
| TOUCHPOINT_TIME_SCALE | multiply every wait (tests and demos; 1 in production) |
| TOUCHPOINT_RECORD_FILE | where the recording stand-in writes sends (JSON lines) |
| TOUCHPOINT_LOOKUP_FIXTURES | JSON file of lookup answers for the stand-in |
| TOUCHPOINT_METRICS_ADDRESS | host:port where the worker serves Temporal SDK metrics (Prometheus) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from runtime.workers import WorkerOptions
from workflows.language.project import ProjectConfig
from workflows.models import RunSettings


@dataclass(frozen=True)
class Settings:
    config: ProjectConfig
    address: str
    namespace: str
    api_key: str | None
    tls_cert: Path | None
    tls_key: Path | None
    queue_prefix: str
    database_url: str
    time_scale: float
    record_file: Path | None
    lookup_fixtures: Path | None
    metrics_address: str | None = None

    def run_settings(self) -> RunSettings:
        return RunSettings(
            default_timezone=self.config.defaults.timezone,
            default_locale=self.config.defaults.locale,
            queue_prefix=self.queue_prefix,
            index_runs=self.config.worker.index_runs,
            time_scale=self.time_scale,
        )

    def worker_options(self) -> WorkerOptions:
        worker = self.config.worker
        return WorkerOptions(
            queue_prefix=self.queue_prefix,
            max_cached_workflows=worker.max_cached_workflows,
            max_concurrent_activities=worker.max_concurrent_activities,
            rate_limits={str(channel): rate for channel, rate in worker.rate_limits.items()},
        )


def load_settings(config: ProjectConfig, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ

    def path(name: str) -> Path | None:
        return Path(env[name]) if env.get(name) else None

    return Settings(
        config=config,
        address=env.get("TOUCHPOINT_TEMPORAL_ADDRESS", config.temporal.address),
        namespace=env.get("TOUCHPOINT_TEMPORAL_NAMESPACE", config.temporal.namespace),
        api_key=env.get("TOUCHPOINT_TEMPORAL_API_KEY") or None,
        tls_cert=path("TOUCHPOINT_TEMPORAL_TLS_CERT"),
        tls_key=path("TOUCHPOINT_TEMPORAL_TLS_KEY"),
        queue_prefix=env.get("TOUCHPOINT_QUEUE_PREFIX", config.worker.task_queue_prefix),
        database_url=env.get("TOUCHPOINT_DATABASE_URL", config.database_url),
        time_scale=float(env.get("TOUCHPOINT_TIME_SCALE", "1")),
        record_file=path("TOUCHPOINT_RECORD_FILE"),
        lookup_fixtures=path("TOUCHPOINT_LOOKUP_FIXTURES"),
        metrics_address=env.get("TOUCHPOINT_METRICS_ADDRESS") or None,
    )


def _runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves the SDK's metrics for Prometheus, when asked to."""
    if settings.metrics_address is None:
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.metrics_address))
    )


async def connect(settings: Settings, *, with_metrics: bool = False) -> Client:
    """A client for a local server, a self-hosted cluster (mTLS) or Temporal Cloud (API key)."""
    tls: TLSConfig | bool = False
    if settings.tls_cert and settings.tls_key:
        tls = TLSConfig(
            client_cert=settings.tls_cert.read_bytes(),
            client_private_key=settings.tls_key.read_bytes(),
        )
    elif settings.api_key:
        tls = True
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=tls,
        data_converter=pydantic_data_converter,
        runtime=_runtime(settings) if with_metrics else None,
    )
