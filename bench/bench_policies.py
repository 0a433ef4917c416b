"""The delivery policy chain's cost per send: the real email send activity (ledger claim,
current profile, policy chain, rendering in the sandbox, the Maildir outbox) with the
repository's policies (frequency caps counted from the ledger, quiet hours in the customer's
timezone) against the same sends with no policies — interleaved rounds in one process.

Every message goes out in both arms: the caps are set high enough never to hold a message,
and the sends happen at a moment outside every quiet window, so both arms do the same work
except for asking the policies. The caps still count each customer's messages in their
window from the ledger, which is what a cap costs.

Sizes: BENCH_SENDS per round and arm (default 300), BENCH_CUSTOMERS (default 300: each
customer's windows hold a few messages at most, as real caps keep them), BENCH_ROUNDS (default
4). Goal (issue 17): CPU per send with policies ≤ 1.1× without.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from report import env_int, header, median, table, verdict
from stack import ROOT, bench_project, temporary_directory
from temporalio.testing import ActivityEnvironment

from activities.delivery import DeliveryActivities
from config.policies import FrequencyCap, PolicySettings, QuietHours
from language.validator import load_config
from store.database import connect
from store.ledger import Ledger
from store.profiles import ProfileStore
from workflows.models import SendRequest

GOAL = 1.1
MONDAY_MORNING = datetime(2027, 1, 4, 10, 30, tzinfo=UTC)  # outside every quiet window
SECRET = {"TOUCHPOINT_UNSUBSCRIBE_SECRET": "bench-secret-0123456789abcdef"}
POLICIES = PolicySettings(
    frequency_caps=[
        FrequencyCap(name="marketing-email-daily", limit=10_000, per="24h", channels=["email"]),
        FrequencyCap(name="marketing-weekly", limit=10_000, per="7d"),
    ],
    quiet_hours=[
        QuietHours.model_validate(
            {"name": "evenings", "from": "21:00", "to": "08:00", "channels": ["email", "sms"]}
        ),
        QuietHours.model_validate({"name": "sundays", "days": ["sun"], "channels": ["email"]}),
    ],
)


@dataclass
class Arm:
    name: str
    delivery: DeliveryActivities
    cpu_per_send_ms: list[float] = field(default_factory=list)
    sent: int = 0


def arm(name: str, project: Path, policies: PolicySettings, customers: int) -> Arm:
    config, problems = load_config(project / "touchpoint.yaml")
    assert not problems, problems
    config = config.model_copy(update={"policies": policies})
    engine = connect(f"sqlite:///{project / 'touchpoint.db'}")
    profiles = ProfileStore(engine)
    for number in range(customers):
        profiles.upsert(
            f"customer-{number}",
            {"email": f"customer-{number}@example.com", "first_name": "Max"},
            locale="en",
            timezone="Europe/Berlin",
        )
    delivery = DeliveryActivities.for_project(config, project, Ledger(engine), environ=SECRET)
    return Arm(name, delivery)


def request(arm: str, number: int, customers: int, moment: datetime) -> SendRequest:
    return SendRequest(
        message_id=f"{arm}-{number}",
        journey_id="newsletter-welcome",
        journey_version="bench",
        category="marketing",
        step_id="welcome",
        channel="email",
        template="newsletter-welcome",
        customer_id=f"customer-{number % customers}",
        context={"now": moment.isoformat()},
    )


async def one_round(target: Arm, first: int, sends: int, customers: int) -> None:
    send = target.delivery.sends["email"]
    environment = ActivityEnvironment()
    started = time.process_time()
    for number in range(first, first + sends):
        moment = MONDAY_MORNING + timedelta(seconds=number)
        result = await environment.run(send, request(target.name, number, customers, moment))
        if result.status != "sent":
            raise SystemExit(f"{target.name}: a message was {result.status}: {result.reason}")
        target.sent += 1
    target.cpu_per_send_ms.append((time.process_time() - started) * 1000 / sends)


async def main() -> None:
    sends = env_int("BENCH_SENDS", 300)
    customers = env_int("BENCH_CUSTOMERS", 300)
    rounds = env_int("BENCH_ROUNDS", 4)
    header(
        "Delivery policies: CPU per send, with the chain against without",
        f"{sends} sends per round and arm to {customers} customers, {rounds} rounds, "
        f"interleaved; SQLite store, Maildir outbox, email",
    )
    with temporary_directory("policies") as name:
        arms = [  # each its own project: its own store and outbox, growing alike
            arm("without", bench_project(Path(name), "without"), PolicySettings(), customers),
            arm("with", bench_project(Path(name), "with"), POLICIES, customers),
        ]
        for target in arms:  # warm-up: imports, the template cache
            await one_round(target, 0, 20, customers)
            target.sent = 0
        for target in arms:
            target.cpu_per_send_ms.clear()
        for number in range(rounds):
            order = arms if number % 2 == 0 else arms[::-1]
            for target in order:
                await one_round(target, 1_000 + number * sends, sends, customers)
        rows = [[a.name, a.sent, median(a.cpu_per_send_ms), min(a.cpu_per_send_ms)] for a in arms]
        print(table(["policies", "sent", "CPU ms/send (median)", "best round"], rows))
        for target in arms:
            rounds_text = ", ".join(f"{ms:.1f}" for ms in target.cpu_per_send_ms)
            print(f"{target.name}: CPU ms/send by round: {rounds_text}")
        # the outbox and the ledger grow round by round (in both arms alike): compare each
        # round's arms, then take the median of those ratios
        pairs = zip(arms[1].cpu_per_send_ms, arms[0].cpu_per_send_ms, strict=True)
        ratio = median([with_ / without for with_, without in pairs])
        print(
            f"ratio with/without (median of the rounds' ratios): {ratio:.3f} — "
            f"{verdict(ratio, GOAL, higher_is_better=False)}"
        )
        per_customer = arms[1].sent // customers
        print(f"each customer's window held about {per_customer} counted messages at the end")


if __name__ == "__main__":
    assert ROOT.exists()
    asyncio.run(main())
