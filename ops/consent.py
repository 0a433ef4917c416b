"""``touchpoint consent CUSTOMER``: a customer's consent shown, and set by support staff.

Shown: all-marketing email, SMS, each topic of the project per channel, and the suppression of
their address. Set (``--leave``, ``--join``, ``--leave-all``): the same changes the customer
can make on the page behind their unsubscribe link (:class:`ingestion.consent.Consents`),
recorded with the reason and who did it, and running runs told as an unsubscribe tells them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config.errors import UserError
from config.settings import Settings, connect, load_settings
from ingestion.consent import CUSTOMER_CHANNELS, Applied, Change, Consents, ConsentView
from ops.operations import _project
from store.database import connect as connect_store
from store.topic_consent import ALL, SUBSCRIBED, UNSUBSCRIBED


@dataclass(frozen=True)
class ConsentChange:
    """What the command line asks for."""

    leave: Sequence[str] = ()
    join: Sequence[str] = ()
    channel: str = ALL
    leave_all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.leave or self.join or self.leave_all)


def open_consents(project: Path) -> tuple[Consents, Settings]:
    """The project's consent (its store and topics), and the settings to reach Temporal."""
    _, config = _project(project)
    settings = load_settings(config)
    return Consents(connect_store(settings.database_url), config.topics), settings


def check_change(consents: Consents, customer_id: str, change: ConsentChange) -> list[Change]:
    """The changes asked for, once the customer, the topics and the channel are known."""
    if not consents.known(customer_id):
        raise UserError(
            f"no customer {customer_id!r} in the store: check the id "
            f"(`touchpoint export {customer_id}` shows what is held)"
        )
    consents.check_channel(change.channel)
    for topic in (*change.leave, *change.join):
        consents.check_topic(topic)
    both = set(change.leave) & set(change.join)
    if both:
        raise UserError(f"{sorted(both)[0]!r} is both joined and left: choose one")
    if change.leave_all and change.join:
        raise UserError("--leave-all leaves every topic: do not --join one with it")
    changes: list[Change] = [(t, change.channel, UNSUBSCRIBED) for t in change.leave]
    return changes + [(t, change.channel, SUBSCRIBED) for t in change.join]


async def change_consent(
    consents: Consents,
    settings: Settings,
    customer_id: str,
    changes: list[Change],
    reason: str,
    leave_all: bool,
) -> Applied:
    """Connect to Temporal (runs are told), then record and signal."""
    consents.client = await connect(settings)
    return await consents.apply(customer_id, changes, reason, leave_all=leave_all)


def describe(view: ConsentView) -> list[str]:
    """The customer's consent as lines for the terminal."""
    lines = [f"customer {view.customer_id}" + (f" <{view.address}>" if view.address else "")]
    lines.append(f"all marketing email: {_withdrawal(view.marketing_email, 'withdrawn')}")
    lines.append(f"SMS: {_withdrawal(view.sms, 'opted out')}")
    if view.address:
        suppressed = f"suppressed ({view.suppression})" if view.suppression else "not suppressed"
        lines.append(f"address {view.address}: {suppressed}")
    names = view.topic_names()
    if not names:
        lines.append("topics: none (touchpoint.yaml has no topics:)")
        return lines
    width = max(len("TOPIC"), *(len(n) for n in names))
    header = ["TOPIC".ljust(width), *(c.upper().ljust(12) for c in CUSTOMER_CHANNELS)]
    lines.append("  ".join(header).rstrip())
    for name in names:
        cells = [view.status(name, channel).ljust(12) for channel in CUSTOMER_CHANNELS]
        unknown = "" if name in view.topics else "  (no longer a topic of the project)"
        lines.append("  ".join([name.ljust(width), *cells]).rstrip() + unknown)
    return lines


def describe_applied(applied: Applied) -> list[str]:
    lines = []
    if applied.left_all:
        lines.append("left all marketing: email withdrawn, every topic left on all channels")
    else:
        for topic, channel, status in applied.changes:
            verb = "joined" if status == SUBSCRIBED else "left"
            lines.append(f"{verb} {topic} on {'all channels' if channel == ALL else channel}")
    lines += [f"note: {note}" for note in applied.notes]
    lines.append(f"{applied.runs_told} running run(s) told")
    return lines


def _withdrawal(found: tuple[str, str | None] | None, word: str) -> str:
    if found is None:
        return "subscribed"
    status, reason = found
    return f"{word} ({status}{': ' + reason if reason else ''})"
