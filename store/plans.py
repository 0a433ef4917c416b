"""Compiled plans, stored by version (their content hash): runs carry ``journey_id`` and the
version, and every worker loads the plan from here (and caches it: a version never changes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from store.atomic import insert_new
from store.database import plans
from workflows.plan import Plan


class PlanStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, compiled: Iterable[Plan]) -> int:
        """Store each plan under its version unless it is there already; how many were new.

        Workers and APIs starting together all publish the same plans: the version is the
        primary key, so each is stored once and counted new by one of them. One transaction
        per plan, so two publishers never hold one plan each while waiting for the other's."""
        new = 0
        for plan in compiled:
            with self.engine.begin() as db:
                new += insert_new(
                    db,
                    plans,
                    {
                        "version": plan.version,
                        "journey_id": plan.journey_id,
                        "plan": plan.model_dump(mode="json"),
                        "published_at": datetime.now(UTC),
                    },
                )
        return new

    def get(self, version: str) -> Plan | None:
        with self.engine.connect() as db:
            row = db.execute(select(plans.c.plan).where(plans.c.version == version)).first()
        return None if row is None else Plan.model_validate(row.plan)

    def versions(self) -> set[str]:
        with self.engine.connect() as db:
            return set(db.scalars(select(plans.c.version)))
