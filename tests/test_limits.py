"""Templates and journey expressions are bounded while they run (workflows/limits.py): a costly
one fails early with the limit in its error — a message's render error (non-retryable), a run's
failed step — and rendering never holds up a worker's event loop.

The hostile corpus (tests/test_hostile.py) tries the many ways in; these tests pin the messages,
the accounting per message and per expression, and what happens around them (the activity, the
workflow, compiling)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from language.template_env import make_template_environment
from language.validator import validate
from simulation.recording import RecordingActivities
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT
from tests.temporal import event, plan_from, running_workers, start_run
from tests.test_rendering import make_templates, render_error, request
from workflows import evaluation
from workflows.limits import EXPRESSION_LIMITS, LimitExceeded, Limits, bounded
from workflows.models import RunResult

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
FAN_OUT = (
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
)


# --- messages ------------------------------------------------------------------------------------


def test_a_loop_bomb_fails_at_once_naming_the_file_the_line_and_the_limit(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path, {"bomb/en.html": f"---\nsubject: s\n---\n<p>Hello</p>\n\n{NESTED_LOOPS}\n"}
    )
    started = time.monotonic()
    error = render_error(r, request("bomb"))
    assert time.monotonic() - started < 1.0
    assert error.message == (
        "templates/bomb/en.html line 6: LimitExceeded: loops ran more than 100,000 times "
        "(the limit per message)"
    )


@pytest.fixture
def clock_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the one-second deadline (work costs operations too: most templates that run long
    run out of those first)."""
    monkeypatch.setattr("activities.rendering.TEMPLATE_LIMITS", Limits(seconds=1.0, what="message"))


@pytest.mark.usefixtures("clock_only")
def test_a_slow_template_stops_after_about_a_second(tmp_path: Path) -> None:
    r = make_templates(tmp_path, {"slow/en.md": f"Hi\n{FAN_OUT}"})
    started = time.thread_time()  # the CPU of this thread: the machine may be busy
    error = render_error(r, request("slow", channel="chat"))
    assert 1.0 <= time.thread_time() - started < 1.5
    assert error.message == (
        "templates/slow/en.md line 2: LimitExceeded: rendering took more than 1 s of CPU time "
        "(the limit per message)"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'x'.ljust(10**9) }}", "ljust() would build 1,000,000,000 characters"),
        ("{{ '%*d' % (10**9, 1) }}", "% would build 1,000,000,003 characters"),
        ("{{ '{:>999999999}'.format(1) }}", "format() would build 999,999,999 characters"),
        ("{{ profile.email | indent(10**9) }}", "indent would build 1,000,000,016 characters"),
        ("{{ ([0] * 1000) | join('x' * 1000) }}", "join would build more than 524,288 characters"),
    ],
)
def test_a_builder_is_refused_before_it_builds(tmp_path: Path, source: str, expected: str) -> None:
    r = make_templates(tmp_path, {"big/en.md": source})
    started = time.monotonic()
    error = render_error(r, request("big", channel="chat"))
    assert time.monotonic() - started < 0.5
    assert error.message == (
        f"templates/big/en.md line 1: LimitExceeded: {expected} (at most 524,288 in one value)"
    )


def test_the_parts_of_an_email_share_one_budget(tmp_path: Path) -> None:
    """Subject and body each loop 60,000 times: each alone is fine, the message is not."""
    loop = "{% for i in range(60000) %}{% endfor %}"
    r = make_templates(
        tmp_path,
        {
            "one/en.html": f"---\nsubject: s{loop}\n---\n<p>body</p>",
            "two/en.html": f"---\nsubject: s{loop}\n---\n<p>body</p>\n<p>{loop}</p>",
        },
    )
    r.render(request("one"))
    error = render_error(r, request("two"))
    assert error.message.startswith("templates/two/en.html line 5: LimitExceeded: loops ran")


def test_compiling_does_not_fold_a_huge_constant() -> None:
    """Jinja computes constant filters while compiling (validate does): not past the limits."""
    env = make_template_environment(ROOT / "templates")
    started = time.monotonic()
    env.compile("{{ 'x' | center(1000000000) }}{{ 'y' | indent(1000000000) }}")
    assert time.monotonic() - started < 0.5


def test_html_nested_too_deeply_is_refused_before_the_css_inliner(tmp_path: Path) -> None:
    """The inliner crashes the whole worker process on HTML ~10,000 elements deep."""
    r = make_templates(
        tmp_path,
        {
            "deep/en.html": "---\nsubject: s\n---\n{% for i in range(20000) %}<div>{% endfor %}",
            "fine/en.html": "---\nsubject: s\n---\n{% for i in range(900) %}<div>{% endfor %}",
        },
    )
    error = render_error(r, request("deep"))
    assert error.message == (
        "templates/deep/en.html: the HTML nests elements more than 1,000 deep "
        "(the most an email may)"
    )
    assert r.render(request("fine")).html


@pytest.mark.usefixtures("clock_only")
async def test_rendering_runs_off_the_event_loop(tmp_path: Path) -> None:
    """A send whose template burns its whole second: the event loop (and every other send on
    it) keeps running meanwhile, and the send fails for good with the limit."""
    r = make_templates(tmp_path, {"slow/en.html": f"---\nsubject: s\n---\n{FAN_OUT}"})
    config = validate((), root=ROOT).config
    activities = DeliveryActivities(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=r,
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"unsubscribe-secret",
        environ={},
    )
    gaps: list[float] = []
    sending = True

    async def heartbeat() -> None:
        last = time.monotonic()
        while sending:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    started = time.monotonic()
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            activities.sends["email"], request("slow", category="transactional")
        )
    sending = False
    await beating
    assert time.monotonic() - started >= 1.0
    assert caught.value.type == "RenderError" and caught.value.non_retryable
    assert "LimitExceeded: " in caught.value.message
    assert len(gaps) > 20 and max(gaps) < 0.5, max(gaps)


# --- expressions ---------------------------------------------------------------------------------

NAMES: dict[str, Any] = {
    "profile": {"id": "c1", "traits": {"plan": "pro"}},
    "lookups": {"picks": {"products": [{"sku": str(i), "price": i} for i in range(2000)]}},
}


def test_an_expression_fails_with_the_limit_after_the_same_work_every_time() -> None:
    source = "range(40000) | map('string') | join | length"
    counts, messages = set(), set()
    for _ in range(3):
        with bounded(EXPRESSION_LIMITS) as budget, pytest.raises(LimitExceeded) as caught:
            evaluation._compiled(source)(**NAMES)
        counts.add(budget.operations)
        messages.add(str(caught.value))
    assert counts == {50_001}
    with pytest.raises(evaluation.ExpressionFailed) as failed:
        evaluation.evaluate(source, NAMES)
    assert str(failed.value) == (
        f"{source!r}: the expression ran more than 50,000 operations (each call, filter, "
        "comparison, item handled or 64 characters built is one; the limit per expression)"
    )
    assert len(messages) == 1


def test_expressions_over_real_lookups_fit_in_the_budget() -> None:
    products = "lookups.picks.products"
    assert evaluation.is_true(f"{products} | selectattr('price', 'gt', 10) | list | length", NAMES)
    assert evaluation.evaluate(f"{products} | map(attribute='price') | sum", NAMES) == 1999000
    assert evaluation.evaluate(f"({products} | sort(attribute='price'))[0].sku", NAMES) == "0"


def test_runs_recorded_before_the_limits_evaluate_unbounded() -> None:
    """What ``workflow.patched("bounded-expressions")`` keeps for old runs: the same answer."""
    source = "range(30000) | map('string') | join | length"
    with pytest.raises(evaluation.ExpressionFailed):
        evaluation.evaluate(source, NAMES)
    assert evaluation.evaluate(source, NAMES, bounded=False) == 138890


def test_a_lookup_path_is_bounded_too() -> None:
    with pytest.raises(evaluation.ExpressionFailed) as caught:
        evaluation.render_text(f"/x/{NESTED_LOOPS}", NAMES)
    assert str(caught.value).endswith("loops ran more than 10,000 times (the limit per expression)")


HEADER = """
id: t
name: T
category: marketing
trigger:
  event: Signed Up
"""


async def test_a_costly_set_fails_its_step_with_the_limit(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
steps:
  - id: score
    set:
      big: range(40000) | map('string') | join | length
  - send: email
    template: newsletter-welcome
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "failed"
    assert result.outcome.step == "score"
    assert result.outcome.error is not None
    assert "the expression ran more than 50,000 operations" in result.outcome.error
    assert recorder.sent == []
    history = await handle.fetch_history()
    failed_tasks = [
        e for e in history.events if e.HasField("workflow_task_failed_event_attributes")
    ]
    assert failed_tasks == []  # failed at once: no workflow task retried (deadlock or crash)
