"""A profile's traits have a size cap: a call that would pass it is refused with the field to
blame and changes nothing. Through the real API on uvicorn, with a real HTTP client, at the
exact boundary; and from the command line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.project import ProjectConfig
from ingestion.api import Api, create_app
from ingestion.service import Ingestion
from store.database import connect
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import DEFAULT_MAX_TRAITS_BYTES, ProfileStore, ProfileTooLarge, traits_size
from tests.conftest import Routed
from tests.net import served

CAP = 2_048


def size(traits: dict[str, Any]) -> int:
    """The documented measure: compact JSON, UTF-8 bytes."""
    return len(json.dumps(traits, ensure_ascii=False, separators=(",", ":")).encode())


def padded(traits: dict[str, Any], key: str, total: int) -> dict[str, Any]:
    """``traits`` plus ``key``, a text that makes the whole exactly ``total`` bytes."""
    filler = total - size({**traits, key: ""})
    assert filler >= 0
    return {**traits, key: "x" * filler}


class Shop:
    def __init__(self, client: httpx.AsyncClient, profiles: ProfileStore, routed: Routed):
        self.client, self.profiles, self.routed = client, profiles, routed

    def traits(self, customer: str = "max-1") -> dict[str, Any]:
        profile = self.profiles.get(customer)
        return profile.traits if profile else {}


async def shop_api(tmp_path: Path, cap: int | None) -> AsyncIterator[Shop]:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    profiles, keys, routed = ProfileStore(engine), WriteKeys(engine), Routed()
    service = Ingestion(profiles, ProcessedMessages(engine), routed)
    if cap is not None:
        service.max_profile_bytes = cap
    key = keys.create("web shop")
    async with (
        served(create_app(Api(service, keys))) as url,
        httpx.AsyncClient(base_url=url, auth=(key, "")) as client,
    ):
        yield Shop(client, profiles, routed)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async for api in shop_api(tmp_path, CAP):
        yield api


@pytest.fixture
async def default_shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async for api in shop_api(tmp_path, None):
        yield api


async def test_exactly_the_cap_is_accepted_one_byte_more_is_refused(shop: Shop) -> None:
    exact = padded({"email": "max@example.com"}, "bio", CAP)
    assert size(exact) == traits_size(exact) == CAP
    accepted = await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": exact})
    assert (accepted.status_code, accepted.json()) == (200, {"success": True})

    one_more = {"bio": exact["bio"] + "x"}
    refused = await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": one_more})
    assert refused.status_code == 413
    body = refused.json()
    assert body["success"] is False
    assert body["errors"] == [
        {
            "path": "traits.bio",
            "message": "the profile's traits would take 2,049 bytes (as compact JSON), more "
            "than the 2,048 allowed (profiles.max_bytes); nothing was changed — send less, or "
            "remove traits (set them to null) first",
        }
    ]
    assert body["message"].startswith("traits.bio: the profile's traits would take 2,049 bytes")
    assert shop.traits() == exact, "nothing lost, nothing changed"


async def test_the_default_cap_is_64_kb(default_shop: Shop) -> None:
    assert DEFAULT_MAX_TRAITS_BYTES == 65_536 == ProjectConfig().profiles.max_bytes
    shop = default_shop
    parts = {f"part{n}": "x" * 12_000 for n in range(5)}  # a call holds at most 32 KB
    for name, text in parts.items():
        answer = await shop.client.post(
            "/v1/identify", json={"userId": "max-1", "traits": {name: text}}
        )
        assert answer.status_code == 200
    last = padded(parts, "c", 65_536)
    answer = await shop.client.post(
        "/v1/identify", json={"userId": "max-1", "traits": {"c": last["c"]}}
    )
    assert answer.status_code == 200 and size(shop.traits()) == 65_536
    answer = await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": {"d": "ü"}})
    assert answer.status_code == 413 and answer.json()["errors"][0]["path"] == "traits.d"
    assert shop.traits() == last


async def test_a_track_whose_context_traits_would_pass_it_is_refused_whole(shop: Shop) -> None:
    start = padded({}, "bio", CAP - 20)
    await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": start})
    call = {
        "userId": "max-1",
        "event": "Order Completed",
        "context": {"traits": {"note": "y" * 30, "plan": "pro"}},
    }
    answer = await shop.client.post("/v1/track", json=call)
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["path"] == "context.traits.note"
    assert shop.routed.events == [], "the event of a refused call is not routed"
    assert shop.traits() == start
    retry = await shop.client.post(
        "/v1/track", json={**call, "context": {"traits": {"plan": "pro"}}}
    )
    assert retry.status_code == 200 and shop.traits()["plan"] == "pro"


async def test_identify_blames_its_own_traits_before_context_traits(shop: Shop) -> None:
    call = {
        "userId": "max-1",
        "traits": {"bio": "x" * (CAP + 10)},
        "context": {"traits": {"plan": "pro"}},
    }
    answer = await shop.client.post("/v1/identify", json=call)
    assert answer.status_code == 413 and answer.json()["errors"][0]["path"] == "traits.bio"
    assert shop.profiles.get("max-1") is None


async def test_a_batch_lists_the_call_that_would_pass_it_and_does_the_others(shop: Shop) -> None:
    batch = [
        {"type": "identify", "userId": "max-1", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "max-1", "traits": {"bio": "x" * CAP}},
        {"type": "track", "userId": "max-1", "event": "Signed Up"},
        {"type": "track", "userId": "max-1"},  # invalid: no event
    ]
    answer = await shop.client.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 400
    body = answer.json()
    assert body["processed"] == 2
    assert [(e["index"], e["path"]) for e in body["errors"]] == [
        (1, "batch[1].traits.bio"),
        (3, "batch[3].event"),
    ]
    assert shop.traits() == {"plan": "pro"}
    assert [e.event for e, _ in shop.routed.events] == ["Signed Up"]


async def test_an_alias_that_would_merge_past_it_is_refused(shop: Shop) -> None:
    visitor = padded({}, "viewed", CAP // 2 + 50)
    known = padded({}, "bio", CAP // 2 + 50)
    await shop.client.post("/v1/identify", json={"anonymousId": "anon-1", "traits": visitor})
    await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": known})
    answer = await shop.client.post("/v1/alias", json={"previousId": "anon-1", "userId": "max-1"})
    assert answer.status_code == 413 and answer.json()["errors"][0]["path"] == "previousId"
    assert shop.traits() == known and shop.profiles.linked_ids("max-1") == []


async def test_a_profile_over_a_lowered_cap_may_still_shrink(shop: Shop) -> None:
    shop.profiles.upsert("max-1", {"bio": "x" * (CAP * 2)})  # written before the cap was lowered
    grow = await shop.client.post("/v1/identify", json={"userId": "max-1", "traits": {"a": 1}})
    assert grow.status_code == 413
    shrink = await shop.client.post(
        "/v1/identify", json={"userId": "max-1", "traits": {"bio": None}}
    )
    assert shrink.status_code == 200 and shop.traits() == {"bio": None}


def test_the_store_refuses_too_before_writing(tmp_path: Path) -> None:
    profiles = ProfileStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
    profiles.upsert("max-1", {"plan": "pro"}, max_bytes=CAP)
    with pytest.raises(ProfileTooLarge) as caught:
        profiles.upsert("max-1", {"bio": "x" * CAP}, max_bytes=CAP)
    assert caught.value.path == "traits.bio" and caught.value.limit == CAP
    assert profiles.get("max-1").traits == {"plan": "pro"}  # type: ignore[union-attr]


def test_the_cap_is_configurable_within_bounds() -> None:
    assert (
        ProjectConfig.model_validate({"profiles": {"max_bytes": 4096}}).profiles.max_bytes == 4096
    )
    for wrong in (1_023, 1_048_577):
        with pytest.raises(ValueError, match="max_bytes"):
            ProjectConfig.model_validate({"profiles": {"max_bytes": wrong}})
