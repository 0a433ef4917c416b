"""``touchpoint dashboard``: the dashboard wired to the project's store and Temporal."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import uvicorn

from config.settings import DASHBOARD_SECRET_ENV, connect, load_settings
from dashboard.app import Sources, create_app
from dashboard.timelines import Timelines
from language.validator import require_valid
from store.analytics import Analytics
from store.database import connect as connect_store

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEV_STACK_ENV = "TOUCHPOINT_DEV_STACK"  # set by `touchpoint dev` for the processes it starts


def build_sources(project: Path, secret: str | None) -> Sources:
    """What the pages read: the store of the project's settings (``TOUCHPOINT_DATABASE_URL``,
    as ``touchpoint api``), its journeys, and Temporal, reached only when a page asks."""
    report = require_valid(project)
    settings = load_settings(report.config)
    engine = connect_store(settings.database_url)
    return Sources(
        analytics=Analytics(engine),
        engine=engine,
        timelines=Timelines(lambda: connect(settings)),
        plans=dict(report.plans),
        secret=secret,
    )


async def serve_dashboard(project: Path, host: str, port: int, secret: str | None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(build_sources(project, secret))
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    await uvicorn.Server(config).serve()


def startup_problem(
    host: str, port: int, dev: bool, secret: str | None, in_dev_stack: bool = True
) -> str | None:
    """Why the dashboard must not start so (the command exits 2 with it), or ``None``.
    ``in_dev_stack``: started by ``touchpoint dev`` (the only place ``--dev`` is for)."""
    if dev and not in_dev_stack:
        return (
            f"--dev (no login) is how `touchpoint dev` starts the dashboard, not a mode to run "
            f"it in: run `touchpoint dev`, or drop --dev and set {DASHBOARD_SECRET_ENV}"
        )
    if dev and host not in LOOPBACK:
        return (
            f"--dev serves the dashboard with no login: only on 127.0.0.1 or localhost, not "
            f"{host}; drop --dev and set {DASHBOARD_SECRET_ENV} to serve it on {host}"
        )
    if not dev and secret is None:
        return (
            f"the dashboard shows personal data and needs a login: set {DASHBOARD_SECRET_ENV} "
            "(at least 16 bytes, e.g. `openssl rand -hex 32`); `touchpoint dev` starts one "
            "without login on 127.0.0.1"
        )
    if port_taken(host, port):
        return f"port {port} on {host} is in use: stop what listens there or choose --port"
    return None


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (or ``host`` is no interface of this
    machine): binding it fails."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return True
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False
