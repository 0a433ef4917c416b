"""What a finished run wrote to its history: events, bytes, and the payloads that matter for
issue 13 — the run's input (the start event), each send's request and the template context in
it. Pure: reads a fetched history (``WorkflowHandle.fetch_history()``), nothing else."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType

SEND_ACTIVITIES = {"send_email", "send_sms", "send_slack", "send_webhook"}


def _compact(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (how the pydantic data converter writes it)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _payload_bytes(payloads: Any) -> int:
    return sum(len(p.data) for p in payloads.payloads)


@dataclass
class RunSizes:
    events: int = 0
    types: collections.Counter[str] = field(default_factory=collections.Counter)
    history_bytes: int = 0  # every event, serialized as the server stores it (protobuf)
    started_event_bytes: int = 0  # WorkflowExecutionStarted, whole event
    input_bytes: int = 0  # the run's input payload (JSON) in that event
    signal_bytes: int = 0  # payloads of every signal (the trigger event travels with the start)
    sends: int = 0
    send_request_bytes: list[int] = field(default_factory=list)  # each SendRequest (JSON)
    context_bytes: list[int] = field(default_factory=list)  # its ``context`` field
    profile_bytes: list[int] = field(default_factory=list)  # its ``profile`` field (0: none)
    local_activities: int = 0  # local activity markers (read_profile in input version 2)
    patch_markers: int = 0  # workflow.patched markers

    @property
    def per_send(self) -> tuple[float, float, float]:
        """Mean SendRequest, context and profile bytes per send."""
        if not self.sends:
            return 0.0, 0.0, 0.0
        return (
            sum(self.send_request_bytes) / self.sends,
            sum(self.context_bytes) / self.sends,
            sum(self.profile_bytes) / self.sends,
        )


def sizes(history: Any) -> RunSizes:
    """The sizes of one run's history (all its events, one run: no continue-as-new)."""
    found = RunSizes()
    for event in history.events:
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        found.events += 1
        found.types[kind] += 1
        found.history_bytes += event.ByteSize()
        if kind == "WORKFLOW_EXECUTION_STARTED":
            found.started_event_bytes = event.ByteSize()
            found.input_bytes = _payload_bytes(
                event.workflow_execution_started_event_attributes.input
            )
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            found.signal_bytes += _payload_bytes(
                event.workflow_execution_signaled_event_attributes.input
            )
        elif kind == "MARKER_RECORDED":
            name = event.marker_recorded_event_attributes.marker_name
            found.local_activities += name == "core_local_activity"
            found.patch_markers += name == "core_patch"
        elif kind == "ACTIVITY_TASK_SCHEDULED":
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name not in SEND_ACTIVITIES:
                continue
            data = scheduled.input.payloads[0].data
            request = json.loads(data)
            found.sends += 1
            found.send_request_bytes.append(len(data))
            found.context_bytes.append(_compact(request.get("context") or {}))
            profile = request.get("profile")
            found.profile_bytes.append(_compact(profile) if profile else 0)
    return found
