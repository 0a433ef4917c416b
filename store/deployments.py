"""Which version of each journey takes new entries, and whether it takes any — with who changed
it, when and why.

* ``journeys``: one row per deployed journey, its **active version** (a plan of
  :mod:`store.plans`: new entries start on it) and its **state**:

  - ``active``: new entries start;
  - ``paused``: no new entries; running runs go on;
  - ``stopped``: no new entries, and running runs end before their next send (the kill
    switch: :class:`activities.policies.JourneyStopped`).

* ``journey_audit``: every deploy, pause, resume and stop, kept for good.

Written by ``touchpoint deploy`` and ``touchpoint journeys pause|resume|stop`` (and by an API
starting from a folder whose journeys were never deployed); read by every API process
(:mod:`ingestion.deployed`) and by the send activities.

Concurrent writers (two deploys at once, on SQLite or PostgreSQL) take the journey's row lock
by writing to it first, then read what they replace: the audit's ``previous`` is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from config.errors import NotDeployed
from store.database import journey_audit, journeys, plans
from store.prepared import Prepared
from workflows.plan import Plan

State = Literal["active", "paused", "stopped"]
Action = Literal["deployed", "paused", "resumed", "stopped"]
ACTION_TO: dict[State, Action] = {"active": "resumed", "paused": "paused", "stopped": "stopped"}
"""The audit's word for a change to each state."""


@dataclass(frozen=True)
class Journey:
    journey_id: str
    active_version: str
    state: State
    changed_at: datetime  # UTC: the last deploy or change of state


@dataclass(frozen=True)
class Change:
    """One line of a journey's audit."""

    journey_id: str
    action: Action
    version: str | None  # deployed: the version made active
    previous: str | None  # deployed: the version it replaced (none: the journey's first)
    actor: str
    reason: str | None
    at: datetime  # UTC


@dataclass(frozen=True)
class Deployed:
    """What a deploy did to one journey."""

    journey_id: str
    version: str
    previous: str | None  # the version active before (none: never deployed)
    state: State  # the journey's state, which a deploy keeps

    @property
    def changed(self) -> bool:
        return self.version != self.previous


@dataclass(frozen=True)
class Published:
    """A compiled version in the ``plans`` table."""

    journey_id: str
    version: str
    published_at: datetime  # UTC


class Deployments:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- writes -----------------------------------------------------------------------------

    def deploy(self, compiled: Sequence[Plan], *, actor: str, reason: str | None) -> list[Deployed]:
        """Make each plan its journey's active version, all in one transaction (the plans must
        be published: :meth:`store.plans.PlanStore.publish`). A journey keeps its state (a
        stopped journey stays stopped); one whose version is active already is unchanged and
        gets no audit line."""
        for attempt in range(3):
            try:
                with self.engine.begin() as db:
                    return [self._deploy(db, plan, actor, reason) for plan in compiled]
            except IntegrityError:  # another process deployed the same new journey just now
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _deploy(self, db: Connection, plan: Plan, actor: str, reason: str | None) -> Deployed:
        now = datetime.now(UTC)
        row = _locked(db, plan.journey_id)
        if row is None:
            db.execute(
                insert(journeys).values(
                    journey_id=plan.journey_id,
                    active_version=plan.version,
                    state="active",
                    changed_at=now,
                )
            )
            previous, state = None, cast(State, "active")
        else:
            previous, state = row.active_version, cast(State, row.state)
            if previous == plan.version:
                return Deployed(plan.journey_id, plan.version, previous, state)
            db.execute(
                update(journeys)
                .where(journeys.c.journey_id == plan.journey_id)
                .values(active_version=plan.version, changed_at=now)
            )
        _audit(db, plan.journey_id, "deployed", actor, reason, now, plan.version, previous)
        return Deployed(plan.journey_id, plan.version, previous, state)

    def deploy_new(
        self, compiled: Iterable[Plan], *, actor: str, reason: str | None
    ) -> list[Deployed]:
        """Deploy the plans whose journeys were never deployed; leave the others as they are
        (what an API does with its folder when it starts). What it deployed."""
        done = []
        for plan in compiled:
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as db:
                    db.execute(
                        insert(journeys).values(
                            journey_id=plan.journey_id,
                            active_version=plan.version,
                            state="active",
                            changed_at=now,
                        )
                    )
                    _audit(db, plan.journey_id, "deployed", actor, reason, now, plan.version)
            except IntegrityError:  # deployed before (perhaps a moment ago by another API)
                continue
            done.append(Deployed(plan.journey_id, plan.version, None, "active"))
        return done

    def set_state(
        self, journey_id: str, state: State, *, actor: str, reason: str
    ) -> tuple[State, Journey]:
        """Pause, resume (``active``) or stop a journey; the state it had, and the journey now.
        Setting the state it has changes nothing and writes no audit line. :class:`NotDeployed`
        when the journey was never deployed."""
        with self.engine.begin() as db:
            row = _locked(db, journey_id)
            if row is None:
                raise NotDeployed(_never_deployed(journey_id, self.journeys()))
            before = cast(State, row.state)
            now = datetime.now(UTC)
            if before != state:
                db.execute(
                    update(journeys)
                    .where(journeys.c.journey_id == journey_id)
                    .values(state=state, changed_at=now)
                )
                _audit(db, journey_id, ACTION_TO[state], actor, reason, now)
            changed_at = now if before != state else _utc(row.changed_at)
            return before, Journey(journey_id, row.active_version, state, changed_at)

    # --- reads ------------------------------------------------------------------------------

    def journeys(self) -> dict[str, Journey]:
        """Every deployed journey, by id."""
        with self.engine.connect() as db:
            rows = db.execute(select(journeys).order_by(journeys.c.journey_id)).all()
        return {row.journey_id: _journey(row) for row in rows}

    def get(self, journey_id: str) -> Journey:
        """The journey, or :class:`NotDeployed`."""
        with self.engine.connect() as db:
            row = db.execute(select(journeys).where(journeys.c.journey_id == journey_id)).first()
        if row is None:
            raise NotDeployed(_never_deployed(journey_id, self.journeys()))
        return _journey(row)

    def state(self, journey_id: str) -> State | None:
        """The journey's state now (``None``: never deployed). One primary-key read: the
        router asks at every trigger, the send activities before every send (a statement
        built once: a third of the CPU of building it per call)."""
        with self.engine.connect() as db:
            return journey_state(db, journey_id)

    def history(self, journey_id: str) -> list[Change]:
        """Every deploy and change of state of the journey, oldest first."""
        query = (
            select(journey_audit)
            .where(journey_audit.c.journey_id == journey_id)
            .order_by(journey_audit.c.id)
        )
        with self.engine.connect() as db:
            return [_change(row) for row in db.execute(query)]

    def last_change(self, journey_id: str) -> Change | None:
        query = (
            select(journey_audit)
            .where(journey_audit.c.journey_id == journey_id)
            .order_by(journey_audit.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as db:
            row = db.execute(query).first()
        return None if row is None else _change(row)

    def stop_reason(self, journey_id: str) -> str:
        """``journey stopped by ann: sends the wrong price``: what a run that ends because its
        journey is stopped records as its outcome's reason (and the ledger as the skip's)."""
        change = self.last_change(journey_id)
        if change is None or change.action != "stopped":
            return "journey stopped"
        return f"journey stopped by {change.actor}" + (
            f": {change.reason}" if change.reason else ""
        )

    def published(self, journey_ids: Iterable[str]) -> dict[str, list[Published]]:
        """The compiled versions of these journeys in the ``plans`` table, oldest first."""
        wanted = list(journey_ids)
        if not wanted:
            return {}
        query = (
            select(plans.c.journey_id, plans.c.version, plans.c.published_at)
            .where(plans.c.journey_id.in_(wanted))
            .order_by(plans.c.published_at, plans.c.version)
        )
        found: dict[str, list[Published]] = {journey: [] for journey in wanted}
        with self.engine.connect() as db:
            for row in db.execute(query):
                found[row.journey_id].append(
                    Published(row.journey_id, row.version, _utc(row.published_at))
                )
        return found


_STATE = Prepared(select(journeys.c.state).where(journeys.c.journey_id == bindparam("journey_id")))


def journey_state(db: Connection, journey_id: str) -> State | None:
    """:meth:`Deployments.state` on a connection the caller holds (the router reads it in its
    entry transaction: one pool checkout for both)."""
    rows = _STATE.run(db, {"journey_id": journey_id})
    return cast(State | None, rows[0][0]) if rows else None


def _locked(db: Connection, journey_id: str) -> Row[Any] | None:
    """The journey's row, after a write to it that takes its lock (SQLite: the database's
    write lock; PostgreSQL: the row's) — a concurrent writer waits until this one commits."""
    key = journeys.c.journey_id == journey_id
    db.execute(update(journeys).where(key).values(changed_at=journeys.c.changed_at))
    return db.execute(select(journeys).where(key)).first()


def _audit(
    db: Connection,
    journey_id: str,
    action: Action,
    actor: str,
    reason: str | None,
    at: datetime,
    version: str | None = None,
    previous: str | None = None,
) -> None:
    db.execute(
        insert(journey_audit).values(
            journey_id=journey_id,
            action=action,
            version=version,
            previous=previous,
            actor=actor[:200],
            reason=None if reason is None else reason[:500],
            at=at,
        )
    )


def _never_deployed(journey_id: str, deployed: dict[str, Journey]) -> str:
    known = ", ".join(deployed) if deployed else "none yet"
    return (
        f"no journey {journey_id!r} has been deployed (deployed: {known}); "
        f"`touchpoint deploy {journey_id}` deploys it from the project folder"
    )


def _journey(row: object) -> Journey:
    values = row._mapping  # type: ignore[attr-defined]
    return Journey(
        journey_id=values["journey_id"],
        active_version=values["active_version"],
        state=values["state"],
        changed_at=_utc(values["changed_at"]),
    )


def _change(row: object) -> Change:
    values = row._mapping  # type: ignore[attr-defined]
    return Change(
        journey_id=values["journey_id"],
        action=values["action"],
        version=values["version"],
        previous=values["previous"],
        actor=values["actor"],
        reason=values["reason"],
        at=_utc(values["at"]),
    )


def _utc(value: datetime) -> datetime:
    """SQLite gives naive UTC back."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
