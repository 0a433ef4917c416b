"""Stand-in delivery that records messages instead of sending them.

Used by tests, by ``touchpoint simulate`` and by the worker until a real provider is configured.
It is exactly-once in effect: a message id it has seen before is answered ``duplicate`` and not
recorded again, which is what the real ledger will guarantee across processes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity

from workflows.channels import CHANNELS, Channel
from workflows.models import (
    READ_PROFILE_ACTIVITY,
    LookupRequest,
    LookupResult,
    Profile,
    ProfileAnswer,
    ProfileRequest,
    SendRequest,
    SendResult,
)


@dataclass
class RecordingActivities:
    """A ``send_<channel>`` for every registered channel, and ``lookup``, that only record.

    ``record_file`` (JSON lines) makes the record visible to other processes; ``lookups`` maps
    ``"<connection> <path>"`` (or just ``"<connection>"``) to the answer a lookup returns.
    """

    record_file: Path | None = None
    lookups: Mapping[str, Any] = field(default_factory=dict)
    sent: list[SendRequest] = field(default_factory=list)
    looked_up: list[LookupRequest] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)  # what read_profile answers
    _ids: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.record_file is not None and self.record_file.exists():
            for line in self.record_file.read_text().splitlines():
                self._ids.add(json.loads(line)["message_id"])

    def _deliver(self, request: SendRequest) -> SendResult:
        with self._lock:
            if request.message_id in self._ids:
                return SendResult(message_id=request.message_id, status="duplicate")
            self._ids.add(request.message_id)
            self.sent.append(request)
            if self.record_file is not None:
                line = {
                    "message_id": request.message_id,
                    "journey_id": request.journey_id,
                    "step_id": request.step_id,
                    "channel": request.channel,
                    "template": request.template,
                    "destination": request.destination,
                    "customer_id": request.customer_id,
                    "at": datetime.now(UTC).isoformat(),
                }
                with self.record_file.open("a") as out:
                    out.write(json.dumps(line) + "\n")
        return SendResult(
            message_id=request.message_id, to=CHANNELS[request.channel].recipient_of(request)
        )

    def _send_activity(self, channel: Channel) -> Callable[..., Any]:
        async def send(request: SendRequest) -> SendResult:
            return self._deliver(request)

        send.__name__ = send.__qualname__ = channel.activity
        return activity.defn(name=channel.activity)(send)

    @activity.defn(name="lookup")
    async def lookup(self, request: LookupRequest) -> LookupResult:
        self.looked_up.append(request)
        for key in (f"{request.connection} {request.path}", request.connection):
            if key in self.lookups:
                return LookupResult(data=self.lookups[key])
        return LookupResult(status=404, data=None)

    @activity.defn(name=READ_PROFILE_ACTIVITY)
    async def read_profile(self, request: ProfileRequest) -> ProfileAnswer:
        """No store here: the run goes on with the profile it was given (tests, demos)."""
        return ProfileAnswer(profile=self.profiles.get(request.customer_id))

    def all(self) -> list[Any]:
        return [
            *(self._send_activity(c) for c in CHANNELS.values()),
            self.lookup,
            self.read_profile,
        ]
