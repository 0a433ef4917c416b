"""Deployment settings: ``touchpoint.yaml`` first, the environment on top, secrets only from
the environment.

| variable | meaning |
|---|---|
| TOUCHPOINT_TEMPORAL_ADDRESS, TOUCHPOINT_TEMPORAL_NAMESPACE | override ``temporal:`` |
| TOUCHPOINT_TEMPORAL_API_KEY | API key (Temporal Cloud); implies TLS |
| TOUCHPOINT_TEMPORAL_TLS_CERT, TOUCHPOINT_TEMPORAL_TLS_KEY | client certificate, key (mTLS) |
| TOUCHPOINT_TEMPORAL_TLS_CA | CA file the server's certificate must chain to (TLS) |
| TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME | the server certificate's name, if not the address's (TLS) |
| TOUCHPOINT_QUEUE_PREFIX | prefix for every task queue (several deployments on one namespace) |
| TOUCHPOINT_DATABASE_URL | Touchpoint's own store |
| TOUCHPOINT_TIME_SCALE | multiply every wait (tests and demos; 1 in production) |
| TOUCHPOINT_RECORD_FILE | where the recording stand-in writes sends (JSON lines) |
| TOUCHPOINT_LOOKUP_FIXTURES | JSON file of lookup answers for the stand-in |
| TOUCHPOINT_METRICS_ADDRESS | host:port of the worker's Prometheus metrics (its own, the SDK's) |
| TOUCHPOINT_ERASURE_SECRET | key of the hashes an erasure keeps (``store.erasure``; ≥ 16 bytes) |
| TOUCHPOINT_DASHBOARD_SECRET | the dashboard's login, which signs its cookie too (≥ 16 bytes) |
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from config.errors import ConfigurationError, TemporalUnreachable
from config.project import ProjectConfig
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
    tls_ca: Path | None = None
    tls_server_name: str | None = None
    erasure_secret: bytes | None = None

    def run_settings(self) -> RunSettings:
        return RunSettings(
            default_timezone=self.config.defaults.timezone,
            default_locale=self.config.defaults.locale,
            queue_prefix=self.queue_prefix,
            index_runs=self.config.worker.index_runs,
            time_scale=self.time_scale,
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
        time_scale=_time_scale(env.get("TOUCHPOINT_TIME_SCALE", "1")),
        record_file=path("TOUCHPOINT_RECORD_FILE"),
        lookup_fixtures=path("TOUCHPOINT_LOOKUP_FIXTURES"),
        metrics_address=env.get("TOUCHPOINT_METRICS_ADDRESS") or None,
        tls_ca=path("TOUCHPOINT_TEMPORAL_TLS_CA"),
        tls_server_name=env.get("TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME") or None,
        erasure_secret=erasure_secret(env),
    )


ERASURE_SECRET_ENV = "TOUCHPOINT_ERASURE_SECRET"
MIN_ERASURE_SECRET_BYTES = 16


def erasure_secret(env: Mapping[str, str]) -> bytes | None:
    """The key of the hashes an erasure keeps, from the environment; ``None`` if unset."""
    value = env.get(ERASURE_SECRET_ENV)
    if not value:
        return None
    if len(value.encode()) < MIN_ERASURE_SECRET_BYTES:
        raise ConfigurationError(
            f"{ERASURE_SECRET_ENV} is too short (use at least {MIN_ERASURE_SECRET_BYTES} "
            "bytes, e.g. the output of `openssl rand -hex 32`)"
        )
    return value.encode()


DASHBOARD_SECRET_ENV = "TOUCHPOINT_DASHBOARD_SECRET"
MIN_DASHBOARD_SECRET_BYTES = 16


def dashboard_secret(env: Mapping[str, str]) -> str | None:
    """The dashboard's login secret, from the environment; ``None`` if unset."""
    value = env.get(DASHBOARD_SECRET_ENV)
    if not value:
        return None
    if len(value.encode()) < MIN_DASHBOARD_SECRET_BYTES:
        raise ConfigurationError(
            f"{DASHBOARD_SECRET_ENV} is too short (use at least {MIN_DASHBOARD_SECRET_BYTES} "
            "bytes, e.g. the output of `openssl rand -hex 32`)"
        )
    return value


def _time_scale(text: str) -> float:
    try:
        scale = float(text)
    except ValueError:
        scale = float("nan")
    if not 0 < scale < float("inf"):
        raise ConfigurationError(
            f"TOUCHPOINT_TIME_SCALE={text!r} is not a positive number; unset it in production "
            "(waits last as long as written), or e.g. 0.0000115741 to make a day last a second"
        )
    return scale


def warn_about_time_scale(settings: Settings) -> None:
    """Say it on stderr when this process will start runs with scaled waits."""
    warning = time_scale_warning(settings)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def time_scale_warning(settings: Settings) -> str | None:
    """What to tell an operator when new runs will not wait as long as written. The scale is
    recorded in each run when it starts, so it cannot change a running run's waits later."""
    if settings.time_scale == 1:
        return None
    return (
        f"TOUCHPOINT_TIME_SCALE={settings.time_scale:g}: every run started here waits "
        f"{settings.time_scale:g}× as long as its journey says (a day lasts "
        f"{86400 * settings.time_scale:g} s) — for tests and demos only; unset it in production"
    )


CONNECT_SECONDS = 5.0
"""How long a command or process keeps trying to reach Temporal before it says so: long enough
for a server that is still starting, short enough for an operator waiting at a prompt."""


def _runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves the SDK's metrics for Prometheus, when asked to."""
    if settings.metrics_address is None:
        return None
    try:
        return metrics_runtime(settings.metrics_address)
    except (ValueError, RuntimeError) as error:
        raise ConfigurationError(
            f"TOUCHPOINT_METRICS_ADDRESS={settings.metrics_address!r}: cannot serve metrics there "
            f"({error}); give a free host:port, e.g. 0.0.0.0:9464"
        ) from None


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime serving Prometheus metrics on ``address`` (host:port): the SDK's
    own and the worker's (:mod:`activities.metrics`, ``touchpoint_runs_ended_total``)."""
    from activities.metrics import histogram_buckets

    prometheus = PrometheusConfig(
        bind_address=address, histogram_bucket_overrides=histogram_buckets()
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


def _tls(settings: Settings) -> TLSConfig | bool:
    """mTLS needs the certificate and its key; a CA file or a server name (a private CA, a
    cluster behind a name other than its address) means TLS verified that way; an API key alone
    means TLS against the system's roots; none of these means plain text (a local server)."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        given, missing = (
            ("TOUCHPOINT_TEMPORAL_TLS_CERT", "TOUCHPOINT_TEMPORAL_TLS_KEY")
            if settings.tls_cert
            else ("TOUCHPOINT_TEMPORAL_TLS_KEY", "TOUCHPOINT_TEMPORAL_TLS_CERT")
        )
        raise ConfigurationError(
            f"{given} is set but {missing} is not: mTLS needs both the client certificate and "
            "its private key; set both, or neither"
        )
    if not (settings.tls_cert or settings.tls_ca or settings.tls_server_name):
        return bool(settings.api_key)
    return TLSConfig(
        server_root_ca_cert=_read(settings.tls_ca, "TOUCHPOINT_TEMPORAL_TLS_CA")
        if settings.tls_ca
        else None,
        domain=settings.tls_server_name,
        client_cert=_read(settings.tls_cert, "TOUCHPOINT_TEMPORAL_TLS_CERT")
        if settings.tls_cert
        else None,
        client_private_key=_read(settings.tls_key, "TOUCHPOINT_TEMPORAL_TLS_KEY")
        if settings.tls_key
        else None,
    )


def _read(path: Path, variable: str) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"{variable}={str(path)!r} cannot be read ({error.strerror}); "
            "give the path of a PEM file this process can read"
        ) from None
    if b"-----BEGIN " not in content:
        raise ConfigurationError(
            f"{variable}={str(path)!r} is not a PEM file (no -----BEGIN line); "
            "give the path of a PEM file"
        )
    return content


async def connect(settings: Settings, *, with_metrics: bool = False) -> Client:
    """A client for a local server, a self-hosted cluster (mTLS) or Temporal Cloud (API key).

    Tries for :data:`CONNECT_SECONDS`, then raises :class:`TemporalUnreachable` naming the
    address: a server that is down is the operator's to start, not a crash.
    """
    tls = _tls(settings)
    runtime = _runtime(settings) if with_metrics else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_SECONDS
    pause = 0.25
    while True:
        try:
            return await asyncio.wait_for(
                Client.connect(
                    settings.address,
                    namespace=settings.namespace,
                    api_key=settings.api_key,
                    tls=tls,
                    data_converter=pydantic_data_converter,
                    runtime=runtime,
                ),
                timeout=max(deadline - loop.time(), 0.5),
            )
        except RPCError as error:
            if error.status != RPCStatusCode.UNAVAILABLE:  # it answered, and said no
                raise ConfigurationError(
                    f"Temporal at {settings.address} refused this client ({error.message}); "
                    "check TOUCHPOINT_TEMPORAL_API_KEY or the TLS certificate and key"
                ) from None
            failure: Exception = error
        except (RuntimeError, TimeoutError) as error:  # the SDK's "Failed client connect: …"
            untrusted = _certificate_problem(settings, str(error))
            if untrusted is not None:  # it answered, with a certificate we must not accept
                raise ConfigurationError(untrusted) from None
            failure = error
        if loop.time() + pause >= deadline:
            raise TemporalUnreachable(
                f"Temporal is not reachable at {settings.address} ({_reason(failure)}, "
                f"tried for {CONNECT_SECONDS:.0f} s); start it (`touchpoint dev` runs one) "
                "or set TOUCHPOINT_TEMPORAL_ADDRESS"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


def _certificate_problem(settings: Settings, failure: str) -> str | None:
    """What to do about a server certificate this client refused (the SDK's error text names
    rustls's reason), or None when the failure was something else."""
    found = re.search(r"InvalidCertificate\((\w+)", failure)
    if found is None:
        return None
    said = f"Temporal at {settings.address} presented a TLS certificate this client does not accept"
    if found.group(1).startswith("NotValidForName"):
        names = ", ".join(re.findall(r'DnsName\(\\?"([^"\\]+)', failure)) or "another name"
        return (
            f"{said}: it is for {names}, not the host of the address; set "
            "TOUCHPOINT_TEMPORAL_TLS_SERVER_NAME to the name it carries, or connect by that name"
        )
    if found.group(1) == "UnknownIssuer":
        return (
            f"{said}: it is signed by a CA this client does not trust; set "
            "TOUCHPOINT_TEMPORAL_TLS_CA to the file of the CA that signed it"
        )
    return (
        f"{said} ({found.group(1)}); check the server's certificate and TOUCHPOINT_TEMPORAL_TLS_CA"
    )


def _reason(error: Exception) -> str:
    """The gist of the SDK's connection error (its text is a Rust debug dump)."""
    if isinstance(error, TimeoutError):
        return "no answer"
    if isinstance(error, RPCError):
        return error.message
    found = re.search(r'(?:message|error): "([^"]+)"', str(error))
    return found.group(1).lower() if found else str(error).removeprefix("Failed client connect: ")
