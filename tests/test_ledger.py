"""The delivery ledger on a real SQLite file and a real PostgreSQL: claims, leases, and final
states, with attempts racing from several processes' engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import update

from store.database import deliveries
from store.ledger import LEASE, Ledger
from tests.conftest import Database, at_once
from workflows.models import SEND_ATTEMPT_SECONDS


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.connect())


@pytest.fixture
def ledgers(database: Database) -> list[Ledger]:
    """Four workers' ledgers on one database."""
    return [Ledger(database.connect()) for _ in range(4)]


def racing_claims(ledgers: list[Ledger], message_id: str, attempts: int = 32) -> list[str]:
    return at_once(
        [lambda i=i: claim(ledgers[i % len(ledgers)], message_id) for i in range(attempts)]
    )


def claim(ledger: Ledger, message_id: str = "msg_1", customer: str = "c-hash") -> str:
    return ledger.claim(message_id, "welcome", "hello", "email", customer).decision


def test_the_first_attempt_sends_and_a_retry_after_sent_does_not(ledger: Ledger) -> None:
    assert claim(ledger) == "send"
    ledger.mark("msg_1", "sent", provider="maildir", provider_id="k-1")
    again = ledger.claim("msg_1", "welcome", "hello", "email", "c-hash")
    assert again.decision == "sent"
    assert again.delivery is not None and again.delivery.provider_id == "k-1"


def test_a_second_attempt_while_the_first_is_sending_backs_off(ledger: Ledger) -> None:
    assert claim(ledger) == "send"
    second = ledger.claim("msg_1", "welcome", "hello", "email", "c-hash")
    assert second.decision == "in_flight"
    assert 0 < second.retry_in <= LEASE.total_seconds()


def test_concurrent_attempts_send_exactly_once(ledgers: list[Ledger]) -> None:
    decisions = racing_claims(ledgers, "msg_race")
    assert decisions.count("send") == 1 and set(decisions) == {"send", "in_flight"}
    row = ledgers[0].get("msg_race")
    assert row is not None and row.attempts == 1


def test_attempts_racing_for_an_expired_lease_take_it_once(ledgers: list[Ledger]) -> None:
    """The worker holding the claim died: of the retries arriving together, one sends."""
    for round in range(3):
        assert claim(ledgers[0], f"msg_{round}") == "send"
        with ledgers[0].engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.message_id == f"msg_{round}")
                .values(updated_at=datetime.now(UTC) - LEASE - timedelta(seconds=1))
            )
        decisions = racing_claims(ledgers, f"msg_{round}")
        assert decisions.count("send") == 1, decisions
        row = ledgers[0].get(f"msg_{round}")
        assert row is not None and row.attempts == 2


def test_attempts_racing_after_a_retryable_failure_take_it_once(ledgers: list[Ledger]) -> None:
    assert claim(ledgers[0], "msg_1") == "send"
    ledgers[0].mark("msg_1", "retrying", reason="ProviderError: 503")
    decisions = racing_claims(ledgers, "msg_1")
    assert decisions.count("send") == 1
    assert set(decisions) == {"send", "in_flight"}


def test_sent_stays_final_when_a_late_failure_races_it(ledgers: list[Ledger]) -> None:
    """In either order the result is ``sent``: a failure never overwrites it."""
    for n in range(20):
        claim(ledgers[0], f"msg_{n}")
        at_once(
            [
                partial(ledgers[1].mark, f"msg_{n}", "sent", provider="maildir", provider_id="k"),
                partial(ledgers[2].mark, f"msg_{n}", "failed", reason="a stale attempt"),
            ]
        )
        row = ledgers[3].get(f"msg_{n}")
        assert row is not None and row.status == "sent"


def test_a_retryable_failure_releases_the_claim(ledger: Ledger) -> None:
    assert claim(ledger) == "send"
    ledger.mark("msg_1", "retrying", reason="ProviderError: 503")
    assert claim(ledger) == "send"
    row = ledger.get("msg_1")
    assert row is not None and row.attempts == 2


def test_an_expired_lease_lets_the_next_attempt_send(ledger: Ledger) -> None:
    """The attempt that held the claim died without a word: after the lease, try again."""
    assert claim(ledger) == "send"
    with ledger.engine.begin() as db:
        db.execute(update(deliveries).values(updated_at=datetime.now(UTC) - LEASE - timedelta(1)))
    assert claim(ledger) == "send"


def test_sent_is_final(ledger: Ledger) -> None:
    claim(ledger)
    ledger.mark("msg_1", "sent", provider="sendgrid", provider_id="x" * 300)
    ledger.mark("msg_1", "failed", reason="a late failure of an earlier attempt")
    row = ledger.get("msg_1")
    assert row is not None and row.status == "sent" and row.provider_id == "x" * 200


def test_rows_list_newest_first_by_customer_or_journey(ledger: Ledger) -> None:
    ledger.claim("msg_a", "welcome", "hello", "email", "max")
    ledger.mark("msg_a", "failed", reason="Rejected: 400 invalid recipient")
    ledger.claim("msg_b", "orders", "setup", "email", "max")
    ledger.claim("msg_c", "orders", "setup", "email", "erika")
    assert [d.message_id for d in ledger.list(customer="max")] == ["msg_b", "msg_a"]
    assert [d.message_id for d in ledger.list(journey_id="orders")] == ["msg_c", "msg_b"]
    failed = ledger.get("msg_a")
    assert failed is not None and failed.reason == "Rejected: 400 invalid recipient"
    assert ledger.get("msg_zzz") is None


def test_the_lease_outlasts_a_send_attempt_and_no_more() -> None:
    """A retry after a worker died mid-send waits out the lease: it must cover an attempt that
    may still be running (60 s at most), and not keep the message waiting minutes longer."""
    assert SEND_ATTEMPT_SECONDS < LEASE.total_seconds() <= 2 * SEND_ATTEMPT_SECONDS
