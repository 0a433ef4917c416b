"""Customer data in a lookup's path cannot change what is asked for: each value an expression
inserts is one percent-encoded segment, query values go as parameters. Checked on the wire: a
real journey on the time-skipping server, the real lookup activity, and a local HTTP server
recording the request line exactly as it arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from language.validator import validate
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT
from tests.httpstub import HttpStub, Reply
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.evaluation import ExpressionFailed
from workflows.lookup_paths import render_path
from workflows.models import Profile, RunResult

JOURNEY = """
id: t
name: T
category: transactional
trigger:
  event: Order Completed
steps:
  - id: accessories
    lookup: shop-api
    path: /orders/{{ event.properties.order_id }}/accessories
    query:
      limit: 4
      ref: "{{ event.properties.ref }}"
    save_as: accessories
"""


def delivery(stub: HttpStub, tmp_path: Path) -> DeliveryActivities:
    config = validate((), root=ROOT).config
    shop = config.connections["shop-api"].model_copy(update={"base_url": stub.url("/api")})
    config = config.model_copy(update={"connections": {"shop-api": shop}})
    return DeliveryActivities(
        config=config,
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=Renderer(ROOT / "templates", config.defaults.locale),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        environ={"SHOP_API_TOKEN": "shop-token"},
    )


async def run_lookup(
    env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path, **properties: Any
) -> RunResult:
    activities = delivery(stub, tmp_path)
    async with running_workers(env.client, activities.all()) as prefix:
        trigger = event("Order Completed", customer="max-1", **properties)
        handle = await start_run(
            env.client, plan_from(JOURNEY), prefix, trigger, profile=Profile(id="max-1")
        )
        return RunResult.model_validate(await handle.result())


async def test_an_order_id_cannot_add_a_query_or_cut_the_path(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path
) -> None:
    stub.reply(Reply(200, body={"products": []}))
    result = await run_lookup(time_env, stub, tmp_path, order_id="x?admin=true#", ref="a&b=c #d")
    assert result.outcome.kind == "completed", result.outcome
    [request] = stub.requests
    assert (
        request.target == "/api/orders/x%3Fadmin%3Dtrue%23/accessories?limit=4&ref=a%26b%3Dc+%23d"
    )
    assert request.query == {"limit": ["4"], "ref": ["a&b=c #d"]}
    assert request.headers["authorization"] == "Bearer shop-token"
    [looked_up] = [e for e in result.timeline if e.step == "accessories"]
    assert "/orders/x%3Fadmin%3Dtrue%23/accessories" in looked_up.detail


@pytest.mark.parametrize("order_id", ["../../admin", "..", "%2e%2e", "", "."])
async def test_an_order_id_that_climbs_or_is_empty_fails_the_step_and_asks_nothing(
    time_env: WorkflowEnvironment, stub: HttpStub, tmp_path: Path, order_id: str
) -> None:
    result = await run_lookup(time_env, stub, tmp_path, order_id=order_id, ref="r")
    assert (result.outcome.kind, result.outcome.step) == ("failed", "accessories")
    assert "would" in (result.outcome.error or ""), result.outcome
    assert stub.requests == []


# --- the rendering rule itself (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("x?admin=true#", "x%3Fadmin%3Dtrue%23"),
        ("a/b", "a%2Fb"),
        ("a b+c", "a%20b%2Bc"),
        ("50%", "50%25"),
        ("max@example.com", "max@example.com"),
        ("2026-11-27T10:00:00", "2026-11-27T10:00:00"),
        ("Grüße", "Gr%C3%BC%C3%9Fe"),
        ("a;b=c&d", "a%3Bb%3Dc%26d"),
        ("\\..\\x", None),
        ("...", "..."),
        (42, "42"),
    ],
)
def test_each_inserted_value_is_one_segment(value: Any, segment: str | None) -> None:
    if segment is None:
        with pytest.raises(ExpressionFailed, match=r"contains '\.\.'"):
            render_path("/c/{{ v }}/x", {"v": value})
    else:
        assert render_path("/c/{{ v }}/x", {"v": value}) == f"/c/{segment}/x"


def test_the_text_written_in_the_journey_stays_as_written() -> None:
    names = {"id": "a/b"}
    assert render_path("/search?q=laptops&id={{ id }}", names) == "/search?q=laptops&id=a%2Fb"
    assert render_path("/customers/max", names) == "/customers/max"
    assert render_path("/c/{{ id ~ '-' ~ id }}", names) == "/c/a%2Fb-a%2Fb"


def test_an_undefined_name_is_an_expression_failure() -> None:
    with pytest.raises(ExpressionFailed, match="'profil' is undefined"):
        render_path("/c/{{ profil.id }}", {"profile": {"id": "1"}})
