"""Segment's call types, as the ingestion API reads them, and what each means for Touchpoint.

Every call becomes one :class:`Ingest`: who it is about, what it adds to their profile, and
the event it records, if any:

| call | profile | event |
|---|---|---|
| ``identify`` | ``traits`` | — |
| ``track`` | — | ``event`` with ``properties`` |
| ``page`` | — | ``Page Viewed`` with ``properties`` plus ``name`` and ``category`` |
| ``screen`` | — | ``Screen Viewed``, likewise |
| ``group`` | ``group_id`` and ``group`` (the group's traits) | — |
| ``alias`` | ``previousId``'s profile merged into ``userId``'s | — |

**Traits where SDKs put them.** rudder-sdk-python sends identify traits only in
``context.traits``; Segment documents ``context.traits`` on any call as the user's traits. So
on every call ``context.traits`` is merged into the profile, and on ``identify`` the call's own
``traits`` are merged over them. Precedence, strongest first: the call's ``traits``, then its
``context.traits``, then what the profile already holds.

**One spelling rule** (:func:`with_template_names`): Segment's reserved traits written in
camelCase (``firstName``, ``lastName``, ``createdAt``, ``address.postalCode``) are stored under
both spellings, so ``profile.traits.first_name`` in a template works for an SDK that sends
``firstName`` and the other way round. When a call gives both spellings, the snake_case one wins.

**Identity.** A call with ``userId`` is about that user; a call with only ``anonymousId`` is about
the user that id was linked to (by ``alias``, or by an earlier call that carried both ids), or
else about the anonymous visitor. A call carrying both ids links them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_CALLS = 2_500

PAGE_EVENT = "Page Viewed"
SCREEN_EVENT = "Screen Viewed"

CAMEL_TO_SNAKE = {"firstName": "first_name", "lastName": "last_name", "createdAt": "created_at"}
ADDRESS_CAMEL_TO_SNAKE = {"postalCode": "postal_code"}

CallType = Literal["identify", "track", "page", "screen", "group", "alias"]


class SegmentCall(BaseModel):
    """The fields Segment's calls share; unknown fields are allowed, as Segment allows them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    user_id: str | None = Field(None, alias="userId", max_length=200)
    anonymous_id: str | None = Field(None, alias="anonymousId", max_length=200)
    message_id: str | None = Field(None, alias="messageId", max_length=200)
    timestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> SegmentCall:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self

    @model_validator(mode="after")
    def _context_traits_are_an_object(self) -> SegmentCall:
        if not isinstance(self.context.get("traits", {}), dict):
            raise ValueError("context.traits must be an object")
        return self

    def ingest(self) -> Ingest:
        raise NotImplementedError

    def _base(self, **fields: Any) -> Ingest:
        context_traits = self.context.get("traits") or {}
        return Ingest(
            user_id=self.user_id,
            anonymous_id=self.anonymous_id,
            message_id=self.message_id or _derived_message_id(self),
            timestamp=self.timestamp,
            traits=dict(context_traits) if context_traits else None,
            trait_fields={name: f"context.traits.{name}" for name in context_traits},
            locale=_text(self.context.get("locale")),
            timezone=_text(self.context.get("timezone")),
            **fields,
        )


class IdentifyCall(SegmentCall):
    traits: dict[str, Any] = Field(default_factory=dict)

    def ingest(self) -> Ingest:
        ingest = self._base()
        ingest.traits = {**(ingest.traits or {}), **self.traits}
        ingest.trait_fields.update({name: f"traits.{name}" for name in self.traits})
        return ingest


class TrackCall(SegmentCall):
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)

    def ingest(self) -> Ingest:
        return self._base(event=self.event, properties=dict(self.properties))


class PageCall(SegmentCall):
    """``page`` (web) and, as :class:`ScreenCall`, ``screen`` (apps): a view, as an event."""

    name: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)

    event_name: ClassVar[str] = PAGE_EVENT

    def ingest(self) -> Ingest:
        named = {"name": self.name, "category": self.category}
        properties = {**{k: v for k, v in named.items() if v is not None}, **self.properties}
        return self._base(event=self.event_name, properties=properties)


class ScreenCall(PageCall):
    event_name: ClassVar[str] = SCREEN_EVENT


class GroupCall(SegmentCall):
    group_id: str = Field(alias="groupId", min_length=1, max_length=200)
    traits: dict[str, Any] = Field(default_factory=dict)

    def ingest(self) -> Ingest:
        ingest = self._base()
        group = {"group_id": self.group_id, "group": dict(self.traits)}
        ingest.traits = {**(ingest.traits or {}), **group}
        ingest.trait_fields.update({"group_id": "groupId", "group": "traits"})
        return ingest


class AliasCall(SegmentCall):
    previous_id: str = Field(alias="previousId", min_length=1, max_length=200)
    user_id: str = Field(alias="userId", min_length=1, max_length=200)

    def ingest(self) -> Ingest:
        return self._base(previous_id=self.previous_id)


CALL_MODELS: dict[str, type[SegmentCall]] = {
    "identify": IdentifyCall,
    "track": TrackCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: CallType


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: list[Any] = Field(min_length=1, max_length=MAX_BATCH_CALLS)
    context: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Ingest:
    """One call, as Touchpoint applies it (see the module docstring)."""

    user_id: str | None
    anonymous_id: str | None
    message_id: str
    timestamp: datetime | None = None
    traits: dict[str, Any] | None = None  # None: the call does not touch the profile
    trait_fields: dict[str, str] = field(default_factory=dict)  # trait → the call's field
    locale: str | None = None
    timezone: str | None = None
    event: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    previous_id: str | None = None  # alias: the anonymous id to link to ``user_id``


def with_template_names(traits: dict[str, Any]) -> dict[str, Any]:
    """``traits`` with Segment's camelCase reserved traits also under their snake_case names,
    and the other way round (see the module docstring)."""
    result = dict(traits)
    for camel, snake in CAMEL_TO_SNAKE.items():
        if snake in traits:
            result[camel] = traits[snake]
        elif camel in traits:
            result[snake] = traits[camel]
    address = traits.get("address")
    if isinstance(address, dict):
        result["address"] = {**address}
        for camel, snake in ADDRESS_CAMEL_TO_SNAKE.items():
            if snake in address:
                result["address"][camel] = address[snake]
            elif camel in address:
                result["address"][snake] = address[camel]
    return result


def _derived_message_id(call: SegmentCall) -> str:
    """For a call without ``messageId``: with a timestamp, a hash of the call (so a retried
    request is recognised); without one, two equal calls may be two real events — a new id."""
    if call.timestamp is None:
        return f"api-{uuid.uuid4()}"
    content = call.model_dump(mode="json", by_alias=True, exclude={"context"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "api-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
