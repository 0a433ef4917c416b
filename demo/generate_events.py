"""A realistic event log for replays and benches: N customers' profiles and 30 days of what
they did in the example shop, written into a store as the API would have recorded it.

    python demo/generate_events.py --customers 10000 --seed 7 [--days 30] [--end ISO-TIME]
                                   [--database-url URL] [-C PROJECT]

The calls are those the example journeys (``journeys/*.yaml``) listen to, with the properties
they read: newsletter sign-ups and a few unsubscribes, category views (``category``), laptop and
other orders (``order_id``, ``categories``, ``total``), deliveries (``Order Delivered``, and
``Laptop Delivered`` with its ``warranty_ends``), refunds, survey answers (``score``), email
clicks on the laptop picks, and identifies that raise ``lifetime_value`` after an order (some
cross the VIP threshold of 1,000). Profiles are written as they stand after the last call —
what a replay reads as "today's profile".

The same seed, customer count, days and end give the same rows. The end defaults to now (to
the minute), so ``touchpoint replay --since 30d`` finds them; tests pass ``--end``. Customer ids
are ``gen-<seed>-<n>`` and addresses ``@example.com``: no real person is in it.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert  # noqa: E402
from sqlalchemy.exc import IntegrityError  # noqa: E402

from store.database import event_log, profiles  # noqa: E402

SCOPE = "generated"  # the source the calls are logged under (their message ids' scope)
VIP_THRESHOLD = 1_000
INTERESTS = ("laptops", "phones", "accessories", "gaming")
CATEGORIES = ("laptops", "laptops", "phones", "accessories", "gaming")
ZONES = ("Europe/Berlin",) * 7 + ("Europe/London",) * 2 + ("America/New_York",)
FIRST_NAMES = ("Max", "Anna", "Lena", "Jonas", "Sofia", "Paul", "Mia", "Ben", "Emma", "Noah")


@dataclass
class Call:
    """One call as the event log keeps it."""

    at: datetime
    customer_id: str
    kind: str  # track or identify
    event: str | None
    data: dict[str, Any]


@dataclass
class Generated:
    start: datetime
    end: datetime
    profiles: list[dict[str, Any]] = field(default_factory=list)  # rows of the profiles table
    calls: list[Call] = field(default_factory=list)  # in time order

    def events(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.event == name]


def generate(customers: int, seed: int, end: datetime, days: int = 30) -> Generated:
    """``customers`` customers' profiles and ``days`` days of calls up to ``end``."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    found = Generated(start, end)
    for number in range(1, customers + 1):
        customer = _Customer(rng, f"gen-{seed}-{number:06d}", start, end)
        customer.live()
        found.profiles.append(customer.profile())
        found.calls += customer.calls
    found.calls.sort(key=lambda call: (call.at, call.customer_id))
    return found


class _Customer:
    """One customer's month: a story drawn from ``rng``, kept within ``[start, end)``."""

    def __init__(self, rng: random.Random, customer_id: str, start: datetime, end: datetime):
        self.rng, self.id, self.start, self.end = rng, customer_id, start, end
        self.locale = rng.choice(("en", "en", "en", "de", "de"))
        self.timezone = rng.choice(ZONES)
        self.traits: dict[str, Any] = {
            "email": f"{customer_id}@example.com",
            "first_name": rng.choice(FIRST_NAMES),
            "interests": sorted(rng.sample(INTERESTS, rng.randint(0, 2))),
            "email_opt_in": rng.random() < 0.75,
            "lifetime_value": rng.choice((0, 0, 0, 150, 400, 800, 950, 1200)),
        }
        self.calls: list[Call] = []
        self.orders = 0

    def moment(self, after: datetime | None = None, within: timedelta | None = None) -> datetime:
        """A moment after ``after`` (default: the window's start), within ``within``, on the
        second."""
        begin = after or self.start
        span = within or (self.end - begin)
        return begin + timedelta(seconds=self.rng.randrange(max(int(span.total_seconds()), 1)))

    def call(self, at: datetime, event: str | None, data: dict[str, Any]) -> None:
        if self.start <= at < self.end:
            kind = "track" if event is not None else "identify"
            self.calls.append(Call(at, self.id, kind, event, data))

    def live(self) -> None:
        rng = self.rng
        if rng.random() < 0.3:
            self.subscribe(self.moment())
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):
            self.browse(self.moment())

    def subscribe(self, at: datetime) -> None:
        self.call(at, None, dict(self.traits))
        self.call(at, "Newsletter Subscribed", {"source": self.rng.choice(("footer", "checkout"))})
        if self.rng.random() < 0.05:
            self.call(self.moment(at, timedelta(days=10)), "Newsletter Unsubscribed", {})

    def browse(self, at: datetime) -> None:
        rng = self.rng
        category = rng.choice(CATEGORIES)
        self.call(at, "Product Category Viewed", {"category": category})
        if category == "laptops" and rng.random() < 0.1:
            clicked = self.moment(at + timedelta(hours=1), timedelta(days=3))
            self.call(clicked, "email.clicked", {"step": "recommend"})
        if rng.random() < 0.25:
            self.order(self.moment(at, timedelta(days=5)), category)

    def order(self, at: datetime, category: str) -> None:
        rng = self.rng
        self.orders += 1
        order_id = f"O-{self.id.removeprefix('gen-')}-{self.orders}"
        categories = sorted({category, *rng.sample(("accessories", "services"), rng.randint(0, 1))})
        total = rng.choice((49, 129, 299)) if category != "laptops" else rng.choice((999, 1299))
        self.call(
            at,
            "Order Completed",
            {"order_id": order_id, "categories": categories, "total": total, "currency": "EUR"},
        )
        before = self.traits["lifetime_value"]
        self.traits["lifetime_value"] = before + total
        self.call(at + timedelta(minutes=1), None, {"lifetime_value": before + total})
        if rng.random() < 0.04:
            self.call(self.moment(at, timedelta(days=3)), "Order Refunded", {"order_id": order_id})
            return
        delivered = at + timedelta(days=rng.randint(1, 5), hours=rng.randint(0, 8))
        if rng.random() < 0.05:  # lost in the post: never delivered
            return
        self.call(delivered, "Order Delivered", {"order_id": order_id})
        if "laptops" not in categories:
            return
        # most warranties run two years; a refurbished laptop's ends within a few weeks
        years = rng.random() < 0.85
        ends = (
            delivered.date() + timedelta(days=730)
            if years
            else delivered.date() + timedelta(days=rng.randint(31, 45))
        )
        self.call(
            delivered,
            "Laptop Delivered",
            {"order_id": order_id, "warranty_ends": _iso_date(ends)},
        )
        answered = delivered + timedelta(days=19, hours=rng.randint(2, 100))
        if rng.random() < 0.4:
            self.call(
                answered, "Survey Answered", {"order_id": order_id, "score": rng.randint(0, 10)}
            )

    def profile(self) -> dict[str, Any]:
        """The profile as it stands after the month (what "today's profile" means)."""
        now = self.end
        return {
            "customer_id": self.id,
            "email": self.traits["email"],
            "phone": None,
            "locale": self.locale,
            "timezone": self.timezone,
            "traits": dict(self.traits),
            "created_at": now,
            "updated_at": now,
        }


def _iso_date(day: date) -> str:
    return day.isoformat()


def write(engine: Engine, generated: Generated, seed: int) -> None:
    """The profiles (replacing none: the ids are new) and the calls, in time order, as the
    ingestion service logs them (received when they happened)."""
    rows = [
        {
            "customer_id": call.customer_id,
            "kind": call.kind,
            "event": call.event,
            "data": call.data,
            "context": None,
            "truncated": False,
            "timestamp": call.at,
            "received_at": call.at,
            "message_id": f"{SCOPE}/{seed}-{number}",
        }
        for number, call in enumerate(generated.calls, start=1)
    ]
    with engine.begin() as db:
        for first in range(0, len(generated.profiles), 1_000):
            db.execute(insert(profiles), generated.profiles[first : first + 1_000])
        for first in range(0, len(rows), 5_000):
            db.execute(insert(event_log), rows[first : first + 5_000])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end", help="ISO time with offset; default now, to the minute")
    parser.add_argument("--database-url", help="default: the project's store")
    parser.add_argument("-C", "--project", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.customers < 1 or args.days < 1:
        parser.error("--customers and --days must be at least 1")
    try:
        end = (
            datetime.fromisoformat(args.end).astimezone(UTC)
            if args.end
            else datetime.now(UTC).replace(second=0, microsecond=0)
        )
    except ValueError:
        parser.error(f"--end {args.end!r}: expected an ISO time, e.g. 2027-01-31T00:00Z")
    from config.errors import UserError
    from config.settings import load_settings
    from language.validator import CONFIG_FILE, load_config
    from store.database import connect

    url = args.database_url
    if url is None:
        config, problems = load_config(args.project / CONFIG_FILE)
        if problems:
            print(f"✗ {CONFIG_FILE} has problems; run `touchpoint validate`", file=sys.stderr)
            return 1
        url = load_settings(config).database_url
    try:
        engine = connect(url)
    except UserError as error:
        print(f"✗ {error}", file=sys.stderr)
        return 1
    generated = generate(args.customers, args.seed, end, args.days)
    try:
        write(engine, generated, args.seed)
    except IntegrityError:
        print(
            f"✗ customers gen-{args.seed}-… are in the store already (nothing written): "
            "pass another --seed, or a fresh --database-url",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    print(
        f"{len(generated.profiles):,} customers, {len(generated.calls):,} calls from "
        f"{generated.start:%Y-%m-%d %H:%M} to {generated.end:%Y-%m-%d %H:%M} UTC (seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
