"""Compiled plans, stored by version (their content hash): runs carry ``journey_id`` and the
version, and every worker loads the plan from here (and caches it: a version never changes)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from store.database import plans
from workflows.plan import Plan


class PlanStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, compiled: Iterable[Plan]) -> int:
        """Store each plan under its version unless it is there already; how many were new."""
        new = 0
        for plan in compiled:
            try:
                with self.engine.begin() as db:
                    db.execute(
                        insert(plans).values(
                            version=plan.version,
                            journey_id=plan.journey_id,
                            plan=plan.model_dump(mode="json"),
                            published_at=datetime.now(UTC),
                        )
                    )
                new += 1
            except IntegrityError:  # published before (by this or another process)
                continue
        return new

    def get(self, version: str) -> Plan | None:
        with self.engine.connect() as db:
            row = db.execute(select(plans.c.plan).where(plans.c.version == version)).first()
        return None if row is None else Plan.model_validate(row.plan)

    def versions(self) -> set[str]:
        with self.engine.connect() as db:
            return set(db.scalars(select(plans.c.version)))
