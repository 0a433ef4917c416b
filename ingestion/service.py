"""The ingestion service: what happens to a Segment call, wherever it comes from.

The HTTP API (:mod:`ingestion.api`), ``touchpoint emit`` / ``touchpoint identify``
(:mod:`ops.operations`) and the simulator (:mod:`simulation.simulator`) all hand their calls
to :meth:`Ingestion.apply`, so a simulation runs exactly the production path:

1. **claim** the call's message id in its source's scope (:mod:`store.processed`): a duplicate
   is accepted and not processed again;
2. **resolve** who it is about (a user, or the user an anonymous id is linked to) and **link**
   identities (``alias``, or a call carrying both ids);
3. **update the profile** with its traits (Segment's spelling rule, :mod:`ingestion.segment`),
   unless the profile would pass its size cap: then :class:`~store.profiles.ProfileTooLarge`
   and nothing of the call is done;
4. **enter segments**: the profile before and after step 3 go to the router, which starts
   the segment journeys whose condition the change made true (:mod:`ingestion.segments`);
5. **route** its event, if it has one (:mod:`ingestion.router`): start the journeys it
   triggers, signal the runs that wait for it.

Step 1 also writes the call to the event log (:mod:`store.event_log`), where one is kept, in
the claim's transaction (who the call is about is resolved just before). Steps 1–3 and the
profile read are one trip to the store's thread. If anything fails (or step 3 refuses the
call), the claim is released and the log entry taken back, so the sender's retry is
processed: nothing is half done twice. The profile change of step 3 is undone too, unless
another call changed the profile since, so the retry makes the same change and crosses the
same segments again (runs its first attempt started are found by their workflow ids, and not
started twice).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from ingestion.segment import Ingest, with_template_names
from store.event_log import EventLog
from store.processed import ProcessedMessages
from store.profiles import DEFAULT_MAX_TRAITS_BYTES, ProfileChange, ProfileStore, require_fits
from workflows.models import Event, Profile

RouteEvent = Callable[[Event, Profile, Sequence[str]], Awaitable[Any]]
"""The router's ``route``: the event, the customer's profile, the anonymous ids linked to them."""
EnterSegments = Callable[[str, ProfileChange, str], Awaitable[Sequence[Any]]]
"""The router's ``enter_segments``: the customer, their profile change, the call's message id."""


@dataclass(frozen=True)
class Applied:
    """What became of one call."""

    duplicate: bool = False  # its message id was processed before: nothing done
    customer_id: str = ""
    event: Event | None = None  # the event routed, if the call had one
    routed: list[Any] = field(default_factory=list)  # the router's answers (Routed …)


@dataclass(frozen=True)
class _Recorded:
    first: bool
    customer_id: str = ""
    profile: Profile | None = None
    linked: tuple[str, ...] = ()
    change: ProfileChange | None = None  # the profile before and after this call's update
    logged: int | None = None  # the call's event log entry, if one is kept


@dataclass
class Ingestion:
    profiles: ProfileStore
    processed: ProcessedMessages
    route: RouteEvent
    max_profile_bytes: int = DEFAULT_MAX_TRAITS_BYTES  # profiles.max_bytes in touchpoint.yaml
    enter_segments: EnterSegments | None = None  # None: no segment journeys (tests, tools)
    event_log: EventLog | None = None  # None: no event log (event_log.enabled: false)

    async def apply(self, call: Ingest, scope: str) -> Applied:
        """Apply one call from the source ``scope`` (a write key's scope, ``cli``, ``sim``)."""
        recorded = await asyncio.to_thread(self._record, call, scope)
        if not recorded.first:
            return Applied(duplicate=True)
        message_id = f"{scope}/{call.message_id}"  # unique per source, like the claim
        routed: list[Any] = []
        event = None
        try:
            if recorded.change is not None and self.enter_segments is not None:
                routed += await self.enter_segments(
                    recorded.customer_id, recorded.change, message_id
                )
            if call.event is not None:
                event = Event(
                    message_id=message_id,
                    event=call.event,
                    customer_id=recorded.customer_id,
                    properties=call.properties,
                    timestamp=call.timestamp or datetime.now(UTC),
                )
                routed += (
                    await self.route(
                        event, recorded.profile or Profile(id=event.customer_id), recorded.linked
                    )
                    or []
                )
        except BaseException:
            await asyncio.to_thread(self._undo, recorded, scope, call.message_id)
            raise
        return Applied(customer_id=recorded.customer_id, event=event, routed=routed)

    def _undo(self, recorded: _Recorded, scope: str, message_id: str) -> None:
        """Release the claim, take the event log's entry back, and undo the profile change if
        nobody changed the profile since: the sender's retry is then processed as the first
        attempt was."""
        try:
            if recorded.logged is not None and self.event_log is not None:
                self.event_log.remove(recorded.logged)
            if recorded.change is not None:
                self.profiles.undo(recorded.change)
        finally:  # whatever became of the profile, the retry must not be taken for a duplicate
            self.processed.release(scope, message_id)

    async def identify(
        self, customer_id: str, traits: dict[str, Any], scope: str, **fields: Any
    ) -> Applied:
        """An ``identify`` for ``customer_id`` (``fields``: ``message_id``, ``locale`` …)."""
        return await self.apply(_call(customer_id, fields, traits=dict(traits)), scope)

    async def track(
        self, customer_id: str, event: str, properties: dict[str, Any], scope: str, **fields: Any
    ) -> Applied:
        """A ``track`` of ``event`` for ``customer_id`` (``fields``: ``message_id`` …)."""
        call = _call(customer_id, fields, event=event, properties=dict(properties))
        return await self.apply(call, scope)

    def _record(self, call: Ingest, scope: str) -> _Recorded:
        """Claim the message id (and log the call, in the same transaction), link identities,
        update the profile and read it back."""
        profiles = self.profiles
        customer = profiles.resolve(call.user_id, call.anonymous_id)
        linking = call.previous_id or (
            call.anonymous_id if call.anonymous_id and call.anonymous_id != customer else None
        )
        logged: list[int] = []

        def log_it(db: Connection) -> None:
            logged.append(self._log(db, call, scope, customer, linking))

        also = log_it if self.event_log is not None else None
        if not self.processed.claim(scope, call.message_id, also=also):
            return _Recorded(first=False)
        entry = logged[0] if logged else None
        change = None
        try:
            traits = with_template_names(call.traits or {})
            if traits or linking:  # the whole change fits, or nothing of it is written
                require_fits(
                    profiles.traits_after(customer, traits, linking=linking),
                    self.max_profile_bytes,
                    traits,
                    call.trait_fields,
                    merged_from="previousId" if call.previous_id else "anonymousId",
                )
            if linking:
                profiles.link(linking, customer)
            if call.traits is not None or call.locale or call.timezone:
                change = profiles.change(
                    customer,
                    traits,
                    locale=call.locale,
                    timezone=call.timezone,
                    max_bytes=self.max_profile_bytes,
                )
            if call.event is None:
                return _Recorded(first=True, customer_id=customer, change=change, logged=entry)
            profile, linked = profiles.get_with_links(customer)
            return _Recorded(
                first=True,
                customer_id=customer,
                profile=profile,
                linked=tuple(linked),
                change=change,
                logged=entry,
            )
        except BaseException:
            self._undo(_Recorded(first=True, change=change, logged=entry), scope, call.message_id)
            raise

    def _log(
        self, db: Connection, call: Ingest, scope: str, customer: str, linking: str | None
    ) -> int:
        """Write the call's event log entry in the claim's transaction ``db``; its id."""
        assert self.event_log is not None
        context = {
            "locale": call.locale,
            "timezone": call.timezone,
            "linked": linking,
            "traits": call.traits if call.event is not None else None,  # context.traits
        }
        return self.event_log.write(
            db,
            customer,
            "identify" if call.event is None else "track",
            (call.traits or {}) if call.event is None else call.properties,
            f"{scope}/{call.message_id}",
            event=call.event,
            context={name: value for name, value in context.items() if value},
            timestamp=call.timestamp,
        )


def _call(customer_id: str, fields: dict[str, Any], **content: Any) -> Ingest:
    """An :class:`Ingest` for a known customer; without a ``message_id``, a fresh one (two
    equal calls from the command line are two events)."""
    extra = dict(fields)
    message_id = extra.pop("message_id", None) or str(uuid.uuid4())
    return Ingest(user_id=customer_id, anonymous_id=None, message_id=message_id, **extra, **content)
