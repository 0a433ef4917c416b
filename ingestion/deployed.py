"""The journeys an API routes: the active version of every deployed journey, as the store says,
re-read every second — a ``touchpoint deploy`` reaches every API process within a couple of
seconds, without a restart.

Each API process reads the ``journeys`` table (:mod:`store.deployments`) every
:data:`POLL_SECONDS`. When an active version changed, it loads the plans it lacks from the
``plans`` table (a version never changes, so they are cached for good) and hands the router a
new routing table in one assignment (:meth:`ingestion.router.Router.use`). An event being
routed finishes with the table it started with: it goes to the old version or the new one,
and none is dropped. The earlier versions of each journey stay in the table as listeners, so
runs that entered them keep getting the events they wait for.

A journey's *state* is not cached here: the router reads it at every trigger, so a pause holds
from the moment the command returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.client import Client

from ingestion.router import Router
from store.deployments import Deployments
from store.entries import EntryStore
from store.plans import PlanStore
from workflows.models import RunSettings
from workflows.plan import Plan

POLL_SECONDS = 1.0
log = logging.getLogger("touchpoint.api")


@dataclass(frozen=True)
class Routing:
    """What the store says an API should route."""

    active: dict[str, Plan]  # journey id → its active version
    earlier: list[Plan]  # the journeys' other published versions: their runs still listen


class DeployedJourneys:
    """Reads the deployed journeys and their plans; :meth:`follow` keeps a router current."""

    def __init__(
        self, deployments: Deployments, plans: PlanStore, known: Iterable[Plan] = ()
    ) -> None:
        self.deployments = deployments
        self.plans = plans
        self._cache: dict[str, Plan] = {plan.version: plan for plan in known}
        self._seen: object = None

    def read(self) -> Routing | None:
        """The routing the store asks for, or ``None`` when it is what the last read found.
        Blocking (store reads)."""
        active_versions = {
            journey_id: journey.active_version
            for journey_id, journey in self.deployments.journeys().items()
        }
        published = self.deployments.published(active_versions)
        seen = (
            sorted(active_versions.items()),
            sorted(p.version for found in published.values() for p in found),
        )
        if seen == self._seen:
            return None
        active: dict[str, Plan] = {}
        for journey_id, version in active_versions.items():
            plan = self._plan(version)
            if plan is None or plan.journey_id != journey_id:
                log.error(
                    "journey %s: its active version %s is not in the store's plans; "
                    "not routing it (deploy it again)",
                    journey_id,
                    version,
                )
                continue
            active[journey_id] = plan
        earlier = [
            plan
            for found in published.values()
            for p in found
            if p.version != active_versions.get(p.journey_id)
            and (plan := self._plan(p.version)) is not None
        ]
        self._seen = seen
        return Routing(active, earlier)

    def router(self, client: Client, entries: EntryStore, settings: RunSettings) -> Router:
        """A router for what the store says now, asking it for each journey's state at every
        trigger; :meth:`follow` keeps it current."""
        self._seen = None
        routing = self.read()
        assert routing is not None
        router = Router(client, {}, entries, settings, deployments=self.deployments)
        router.use(routing.active, routing.earlier)
        for journey_id, plan in sorted(routing.active.items()):
            log.info("routing journey %s (version %s)", journey_id, plan.version)
        return router

    def _plan(self, version: str) -> Plan | None:
        plan = self._cache.get(version)
        if plan is None:
            try:
                plan = self.plans.get(version)
            except ValueError as error:  # a plan this code cannot read (pydantic says why)
                log.error("cannot load plan version %s from the store: %s", version, error)
                return None
            if plan is not None:
                self._cache[version] = plan
        return plan

    async def follow(self, router: Router, seconds: float = POLL_SECONDS) -> None:
        """Every ``seconds``, give ``router`` what the store asks for, if it changed. A store
        that cannot be read is logged; the router keeps routing as before."""
        failing = False
        while True:
            await asyncio.sleep(seconds)
            try:
                routing = await asyncio.to_thread(self.read)
            except Exception as error:
                if not failing:
                    log.warning("cannot read the deployed journeys (%s); routing as before", error)
                failing = True
                continue
            failing = False
            if routing is not None:
                before = dict(router.plans)
                router.use(routing.active, routing.earlier)
                for line in changes(before, routing.active):
                    log.info("%s", line)


def changes(before: dict[str, Plan], after: dict[str, Plan]) -> list[str]:
    """What a new routing changed, one line per journey (for the API's log)."""
    lines = []
    for journey_id, plan in sorted(after.items()):
        old = before.get(journey_id)
        if old is None:
            lines.append(f"routing journey {journey_id} (version {plan.version})")
        elif old.version != plan.version:
            lines.append(f"routing journey {journey_id}: version {old.version} → {plan.version}")
    lines += [f"no longer routing journey {j}" for j in sorted(set(before) - set(after))]
    return lines
