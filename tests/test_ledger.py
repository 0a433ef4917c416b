"""The delivery ledger on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.database import connect
from store.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))


def test_a_send_is_pending_then_sent_and_a_retry_sees_sent(ledger: Ledger) -> None:
    first = ledger.begin("msg_1", "welcome", "hello", "email", "c-hash")
    assert (first.status, first.attempts) == ("pending", 1)
    ledger.mark("msg_1", "sent", provider="maildir", provider_id="k-1")
    retry = ledger.begin("msg_1", "welcome", "hello", "email", "c-hash")
    assert (retry.status, retry.provider_id) == ("sent", "k-1")
    assert retry.attempts == 1, "a row that is sent is left alone"


def test_a_retry_of_a_pending_send_counts_attempts(ledger: Ledger) -> None:
    ledger.begin("msg_2", "welcome", "hello", "email", "c-hash")
    again = ledger.begin("msg_2", "welcome", "hello", "email", "c-hash")
    assert (again.status, again.attempts) == ("pending", 2)


def test_failures_keep_their_reason_and_rows_list_newest_first(ledger: Ledger) -> None:
    ledger.begin("msg_a", "welcome", "hello", "email", "max")
    ledger.mark("msg_a", "failed", reason="Rejected: 400 invalid recipient")
    ledger.begin("msg_b", "orders", "setup", "email", "max")
    ledger.begin("msg_c", "orders", "setup", "email", "erika")
    assert [d.message_id for d in ledger.list(customer="max")] == ["msg_b", "msg_a"]
    assert [d.message_id for d in ledger.list(journey_id="orders")] == ["msg_c", "msg_b"]
    failed = ledger.get("msg_a")
    assert failed is not None and failed.reason == "Rejected: 400 invalid recipient"
    assert ledger.get("msg_zzz") is None
