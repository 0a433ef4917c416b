"""A broadcast page retried after its worker died, for journeys whose entries are claimed in the
store (``reentry: once``, a cooldown): the claim the dead attempt committed is the occurrence's
own, so the retry starts the customer whose run never started, does not start twice the one
whose run did, and counts each entry once — the next occurrence still refuses them.

The dead attempt is played by hand: the entry store's claim is taken (and, in the second case,
the run started) the way ``broadcast_page`` does, and no undo follows, as after ``kill -9``."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.audience import AudienceActivities
from simulation.recording import RecordingActivities
from store.entries import EntryStore
from tests.temporal import running_workers
from tests.test_broadcast import MONDAY, deployed, engine, expected, sent_to  # noqa: F401
from workflows.broadcast_models import PageRequest
from workflows.models import RunSettings, customer_hash
from workflows.plan import Plan

REENTRY = {
    "once": ("once", {"once": True, "cooldown_seconds": 0}),
    "cooldown": ("one_at_a_time\n  after: 30d", {"once": False, "cooldown_seconds": 30 * 86400}),
}
PAGE = sorted(c for c in expected() if c <= "c00099")  # the audience among the first 100


async def page(env: WorkflowEnvironment, store: Engine, plan: Plan, prefix: str) -> Any:
    """One page of 100 profiles, as a retry after a heartbeat-less death runs it."""
    audience = AudienceActivities(
        env.client, store, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    request = PageRequest(
        journey_id=plan.journey_id,
        plan_version=plan.version,
        occurrence=MONDAY,
        after=None,
        page_size=100,
        starts_per_second=100_000,
    )
    return await ActivityEnvironment().run(audience.broadcast_page, request)


@pytest.mark.parametrize("rule", sorted(REENTRY))
async def test_a_claim_left_by_a_dead_attempt_is_resumed_not_refused(
    time_env: WorkflowEnvironment,
    engine: Engine,  # noqa: F811
    rule: str,
) -> None:
    reentry, claim = REENTRY[rule]
    plan = deployed(engine, reentry=reentry)
    victim = PAGE[0]
    entries = EntryStore(engine)
    taken = entries.enter(plan.journey_id, customer_hash(victim), MONDAY, **claim)
    assert taken.claimed is not None, "the dead attempt took the entry"
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all(), prefix):
        done = await page(time_env, engine, plan, prefix)
        customers = await sent_to(recorder, len(PAGE))
    assert (done.counts.started, done.counts.refused) == (len(PAGE), 0)
    assert sorted(customers) == PAGE, "everyone once, the dead attempt's customer too"
    record = entries.record(plan.journey_id, customer_hash(victim))
    assert (record.entered, record.last_entered_at) == (1, MONDAY), "one entry, not two"
    # the rule still holds at the next occurrence, for the resumed customer as for the others
    later = entries.enter(
        plan.journey_id, customer_hash(victim), MONDAY + timedelta(days=7), **claim
    )
    assert later.refused is not None


async def test_a_run_the_dead_attempt_started_is_not_started_again(
    time_env: WorkflowEnvironment,
    engine: Engine,  # noqa: F811
) -> None:
    plan = deployed(engine, reentry="once")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all(), prefix):
        first = await page(time_env, engine, plan, prefix)  # the attempt that died after it
        assert first.counts.started == len(PAGE)
        again = await page(time_env, engine, plan, prefix)  # its retry, from the page's start
        customers = await sent_to(recorder, len(PAGE))
    assert (again.counts.started, again.counts.already_started, again.counts.refused) == (
        0,
        len(PAGE),
        0,
    )
    assert sorted(customers) == PAGE, "nobody twice"
    for customer in PAGE[:3]:
        assert EntryStore(engine).record(plan.journey_id, customer_hash(customer)).entered == 1
