"""SendGrid's Event Webhook: check the signature, then turn the posted batch into feedback.

SendGrid POSTs a JSON **array** of events, batched, unordered, possibly repeated, and retries any
non-2xx answer for up to 24 hours. With the Signed Event Webhook on, each post carries::

    X-Twilio-Email-Event-Webhook-Signature   base64 DER ECDSA (P-256, SHA-256) signature
    X-Twilio-Email-Event-Webhook-Timestamp   unix seconds, as a string

over ``timestamp + raw body`` (no separator). Verify the **raw request bytes**: re-serialising
the JSON changes them and breaks the signature. The verification key is shown in SendGrid's
mail settings (and returned by ``GET /v3/user/webhooks/event/settings/signed``) as base64 DER of
a P-256 SubjectPublicKeyInfo, without PEM armour.

What Touchpoint takes from an event (see :func:`parse_events`):

* ``bounce``, ``dropped``, ``spamreport``, ``unsubscribe``, ``group_unsubscribe``: feedback
  about the address (kind ``suppression``, with the reason), of three sorts —

  - **suppresses the address** (:attr:`FeedbackEvent.suppresses_address`): a hard bounce (a
    ``bounce`` whose ``type`` is not ``blocked``) and a ``spamreport``. No email of any kind,
    transactional included, may go to the address again (``store.suppressions``), as SendGrid
    itself refuses to send to it.
  - **withdraws marketing consent** (:attr:`FeedbackEvent.withdraws_marketing`):
    ``unsubscribe`` and ``group_unsubscribe``. The customer stops getting marketing email;
    order mails still reach them (``store.consent.ConsentStore``).
  - **informational**, neither of the two: a ``blocked`` bounce (the receiving server refused
    this message for now, often for the sender's reputation; the address itself is fine) and
    ``dropped`` (SendGrid did not send it, usually because the address is on one of SendGrid's
    own suppression lists already; the event that put it there came on its own).
* ``delivered``, ``open``, ``click``: the events ``email.delivered``, ``email.opened``,
  ``email.clicked`` (a click with its ``url``)
* anything else (``processed``, ``deferred``, ``group_resubscribe``, account events): ignored

Every event keeps ``sg_event_id`` (the dedupe key) and the ``custom_args`` Touchpoint sent, which
SendGrid copies to the top level of each event: ``touchpoint_message_id``, ``journey``, ``step``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_TOLERANCE = timedelta(minutes=10)

SUPPRESSION_EVENTS = frozenset(
    {"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"}
)
ADDRESS_SUPPRESSIONS = frozenset({"bounce", "spamreport"})  # by reason: a "blocked" bounce is not
MARKETING_WITHDRAWALS = frozenset({"unsubscribe", "group_unsubscribe"})
EVENT_NAMES = {"delivered": "email.delivered", "open": "email.opened", "click": "email.clicked"}

_MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658: more is not a timestamp


@dataclass(frozen=True)
class FeedbackEvent:
    """One SendGrid event Touchpoint acts on.

    ``kind`` is ``"suppression"`` (feedback about ``email``: ``reason`` says which) or
    ``"event"`` (``name`` is the Touchpoint event: ``email.delivered``, ``email.opened``,
    ``email.clicked``). What feedback asks for is :attr:`suppresses_address` (stop all email
    to the address), :attr:`withdraws_marketing` (stop marketing email to the customer), or
    neither (informational: a blocked bounce, a dropped message).
    """

    sg_event_id: str  # SendGrid's id for this event: the dedupe key
    kind: Literal["suppression", "event"]
    sendgrid_event: str  # SendGrid's own ``event`` value
    email: str
    timestamp: datetime  # when it happened (UTC)
    name: str | None = None  # the Touchpoint event, for kind "event"
    # For kind "suppression": ``blocked`` for a bounce of type "blocked", else the SendGrid event.
    reason: str | None = None
    detail: str | None = None  # SendGrid's ``reason`` text (bounce, dropped), when given
    url: str | None = None  # click
    asm_group_id: int | None = None  # group_unsubscribe: the unsubscribe group, not all mail
    message_id: str | None = None  # custom arg ``touchpoint_message_id``
    journey: str | None = None  # custom arg
    step: str | None = None  # custom arg
    sg_message_id: str | None = None  # absent on asynchronous bounces
    test: bool = False  # custom arg ``test``: a preview/test send

    @property
    def suppresses_address(self) -> bool:
        """A hard bounce or a spam report: no email of any kind may go to ``email`` again."""
        return self.kind == "suppression" and self.reason in ADDRESS_SUPPRESSIONS

    @property
    def withdraws_marketing(self) -> bool:
        """An unsubscribe (from everything, or from one unsubscribe group): the customer gets
        no more marketing email; transactional email still goes."""
        return self.kind == "suppression" and self.reason in MARKETING_WITHDRAWALS

    @property
    def natural_key(self) -> tuple[str | None, str, int, str | None]:
        """A second dedupe key: SendGrid has been seen re-sending an event with a new
        ``sg_event_id`` (sendgrid-nodejs #1435), so also dedupe on what the event says."""
        return (self.sg_message_id, self.sendgrid_event, int(self.timestamp.timestamp()), self.url)


# -- signature ----------------------------------------------------------------------------------


def load_public_key(base64_der_or_pem: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 DER SubjectPublicKeyInfo, or PEM) as a P-256 key.

    Raises ``ValueError`` when it is not a P-256 public key.
    """
    if not isinstance(base64_der_or_pem, str) or not base64_der_or_pem.strip():
        raise ValueError("SendGrid verification key is empty")
    text = base64_der_or_pem.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = load_der_public_key(der)
    except (ValueError, binascii.Error, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            "SendGrid verification key is not a public key "
            "(expected base64 DER SubjectPublicKeyInfo, as shown in SendGrid's mail settings)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("SendGrid verification key is not an ECDSA P-256 (prime256v1) key")
    return key


def verify(
    public_key: ec.EllipticCurvePublicKey, payload: bytes, signature_b64: str, timestamp: str
) -> bool:
    """Whether ``signature_b64`` signs ``timestamp + payload`` (the raw request body).

    Never raises on malformed input (missing header, bad base64, bad DER, wrong types): ``False``.
    """
    try:
        if not isinstance(signature_b64, str) or not isinstance(timestamp, str):
            return False
        signature = base64.b64decode(signature_b64.strip(), validate=True)
        if not signature:
            return False
        public_key.verify(
            signature, timestamp.encode("utf-8") + bytes(payload), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        return False
    return True


def is_fresh(timestamp: str, now: datetime, tolerance: timedelta = DEFAULT_TOLERANCE) -> bool:
    """Whether the signed timestamp is within ``tolerance`` of ``now`` (either way: clock skew).

    Optional: SendGrid documents no tolerance and retries for up to 24 hours, and whether a
    retry is signed afresh is not documented. Dedupe on ``sg_event_id`` is the real defence
    against replays; use this only with a tolerance you have checked against SendGrid's retries.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    seconds = _unix_seconds(timestamp)
    if seconds is None:
        return False
    try:
        signed_at = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return False
    return abs(now - signed_at) <= tolerance


def _unix_seconds(timestamp: object) -> int | None:
    if not isinstance(timestamp, str):
        return None
    text = timestamp.strip()
    if not text or len(text) > _MAX_TIMESTAMP_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


# -- events -------------------------------------------------------------------------------------


def parse_events(payload: bytes) -> list[FeedbackEvent]:
    """The events Touchpoint acts on, in the order posted, each ``sg_event_id`` once.

    Raises ``ValueError`` saying what is wrong when the body is not a JSON array of event
    objects, or an event Touchpoint acts on lacks ``sg_event_id``, ``email`` or ``timestamp``.
    Events Touchpoint ignores are only checked for an ``event`` name.
    """
    try:
        document = json.loads(payload, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    except TypeError as exc:
        raise ValueError("body must be bytes") from exc
    if not isinstance(document, list):
        raise ValueError(f"body must be a JSON array of events, not {_json_type(document)}")
    events: list[FeedbackEvent] = []
    seen: set[str] = set()
    for index, item in enumerate(document):
        event = _parse_event(index, item)
        if event is None or event.sg_event_id in seen:
            continue
        seen.add(event.sg_event_id)
        events.append(event)
    return events


def _parse_event(index: int, item: Any) -> FeedbackEvent | None:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object, not {_json_type(item)}")
    sendgrid_event = item.get("event")
    if not isinstance(sendgrid_event, str) or not sendgrid_event:
        raise ValueError(f"{where}: 'event' must be a non-empty string")
    if sendgrid_event not in SUPPRESSION_EVENTS and sendgrid_event not in EVENT_NAMES:
        return None
    where = f"event {index} ({sendgrid_event})"
    sg_event_id = item.get("sg_event_id")
    if sg_event_id is None:
        sg_event_id = _derived_event_id(item)
    if not isinstance(sg_event_id, str) or not sg_event_id.strip():
        raise ValueError(f"{where}: 'sg_event_id' must be a non-empty string")
    email = item.get("email")
    if not isinstance(email, str) or not email.strip():
        raise ValueError(f"{where}: 'email' must be a non-empty string")
    common: dict[str, Any] = {
        "sg_event_id": sg_event_id,
        "sendgrid_event": sendgrid_event,
        "email": email.strip(),
        "timestamp": _event_time(where, item.get("timestamp")),
        "message_id": _optional_text(where, item, "touchpoint_message_id"),
        "journey": _optional_text(where, item, "journey"),
        "step": _optional_text(where, item, "step"),
        "sg_message_id": _optional_text(where, item, "sg_message_id"),
        "test": _optional_text(where, item, "test") in ("true", "1"),
    }
    if sendgrid_event in EVENT_NAMES:
        url = _optional_text(where, item, "url") if sendgrid_event == "click" else None
        return FeedbackEvent(kind="event", name=EVENT_NAMES[sendgrid_event], url=url, **common)
    reason = sendgrid_event
    if sendgrid_event == "bounce" and _optional_text(where, item, "type") == "blocked":
        reason = "blocked"
    return FeedbackEvent(
        kind="suppression",
        reason=reason,
        detail=_optional_text(where, item, "reason"),
        asm_group_id=_optional_int(where, item, "asm_group_id"),
        **common,
    )


def read_events(
    items: Iterable[tuple[int, Any]],
) -> tuple[list[FeedbackEvent], list[tuple[int, str]]]:
    """The events Touchpoint acts on from a parsed post (given with their positions), each
    ``sg_event_id`` once, and ``(position, sentence)`` for each event it cannot read: that one
    is skipped, the others are not lost.

    An event without ``sg_event_id`` (some SendGrid versions and proxies drop it) is given one
    derived from its content, so a repeated post still deduplicates it.
    """
    events: list[FeedbackEvent] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, item in items:
        try:
            event = _parse_event(index, item)
        except ValueError as error:
            problems.append((index, str(error)))
            continue
        if event is None or event.sg_event_id in seen:
            continue
        seen.add(event.sg_event_id)
        events.append(event)
    return events, problems


def _derived_event_id(item: dict[str, Any]) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return "derived-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _event_time(where: str, value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: 'timestamp' must be unix seconds (a number)")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{where}: 'timestamp' {value!r} is out of range") from exc


def _optional_text(where: str, item: dict[str, Any], key: str) -> str | None:
    """A string field; custom args are strings, numbers are taken as their text."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: '{key}' must be a string, not {_json_type(value)}")


def _optional_int(where: str, item: dict[str, Any], key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"{where}: '{key}' must be an integer, not {_json_type(value)}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"body is not JSON: {name} is not a JSON value")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
