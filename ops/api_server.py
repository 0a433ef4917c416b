"""``touchpoint api``: the ingestion API wired to Temporal, the router and the store."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import text

from config.settings import connect, load_settings, warn_about_time_scale
from ingestion import sendgrid_events
from ingestion.api import Api, create_app
from ingestion.consent import Consents, Unsubscriber
from ingestion.service import Ingestion
from ingestion.unsubscribe import SECRET_ENV, secret_from_env
from language.validator import require_valid, validate
from ops.broadcasts import sync_broadcasts
from ops.environment import require_environment, webhook_key_problem
from ops.export import Exporter, outbox_of
from ops.forget import forget
from ops.journeys import start_routing
from store.consent import ConsentStore
from store.database import connect as connect_store
from store.deployments import Deployments
from store.entries import EntryStore
from store.event_log import event_log_of
from store.keys import ADMIN, WRITE, WriteKeys
from store.plans import PlanStore
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.suppressions import Suppressions


async def build_api(project: Path, deploy: bool = False) -> Api:
    """The API for ``project``. It routes the journeys deployed in the store; its folder's
    journeys are deployed when they never were, or (``deploy``) whatever is deployed."""
    report = require_valid(project)
    settings = load_settings(report.config)
    unusable_key = webhook_key_problem(os.environ)
    require_environment(
        report,
        os.environ,
        "the API",
        delivers=settings.record_file is None,
        also=[unusable_key] if unusable_key else [],
    )
    warn_about_time_scale(settings)  # runs record it: say so before any starts
    client = await connect(settings)
    engine = connect_store(settings.database_url)
    deployed = start_routing(engine, project, report.plans, deploy, "touchpoint api")
    if deploy:  # scheduled journeys' Temporal Schedules follow the deployed versions
        await sync_broadcasts(client, Deployments(engine), PlanStore(engine), settings.queue_prefix)
    router = deployed.router(client, EntryStore(engine), settings.run_settings())
    unsubscriber = Unsubscriber(client, ConsentStore(engine))
    sendgrid_key = os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY")

    async def ready() -> dict[str, bool]:
        checks = {}
        try:
            checks["temporal"] = await asyncio.wait_for(client.service_client.check_health(), 5)
        except Exception:
            checks["temporal"] = False
        try:
            await asyncio.to_thread(_ping, engine)
            checks["store"] = True
        except Exception:
            checks["store"] = False
        return checks

    async def erase(customer_id: str, request_id: str, actor: str) -> dict[str, Any]:
        erased = await forget(client, settings, customer_id, request_id=request_id, actor=actor)
        return {"customer": erased.customer, "runs": erased.runs, "messages": erased.messages}

    return Api(
        service=Ingestion(
            ProfileStore(engine),
            ProcessedMessages(engine),
            router.route,
            max_profile_bytes=report.config.profiles.max_bytes,
            enter_segments=router.enter_segments,
            event_log=event_log_of(engine, report.config.event_log),
        ),
        keys=WriteKeys(engine),
        unsubscribe=unsubscriber.withdraw,
        unsubscribe_secret=secret_from_env(os.environ) if os.environ.get(SECRET_ENV) else None,
        suppress=lambda customer, reason: unsubscriber.withdraw(customer, reason, "suppressed"),
        suppressions=Suppressions(engine),
        sendgrid_key=sendgrid_events.load_public_key(sendgrid_key) if sendgrid_key else None,
        ready=ready,
        background=[lambda: deployed.follow(router)],  # deploys reach this API within seconds
        export=Exporter(engine, client, outbox_of(project, report.config)).export,
        forget=erase,
        consents=Consents(engine, report.config.topics, client),
    )


def _ping(engine: object) -> None:
    with engine.connect() as db:  # type: ignore[attr-defined]
        db.execute(text("SELECT 1"))


async def serve_api(project: Path, host: str, port: int, deploy: bool = False) -> None:
    logging.basicConfig(  # the API's own lines (deploys it follows, purges) beside uvicorn's
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(await build_api(project, deploy))
    # no access log: a line per event costs a tenth of the request; /metrics counts them
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
    await uvicorn.Server(config).serve()


def create_key(project: Path, name: str, admin: bool = False) -> str:
    report = validate((), root=project)
    settings = load_settings(report.config)
    return WriteKeys(connect_store(settings.database_url)).create(name, ADMIN if admin else WRITE)
