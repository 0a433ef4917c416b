"""What an erasure leaves in the store, on SQLite and PostgreSQL: keyed hashes only, an address
that was suppressed stays suppressed for all email, one only erased for marketing, and the
command refuses clearly without its key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from config.errors import ConfigurationError
from config.project import ProjectConfig
from config.settings import load_settings
from store.consent import ConsentStore
from store.database import suppression_audit
from store.erasure import ErasureStore, keyed_hash
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import ROOT, Database

KEY = b"erasure-secret-for-tests-0123456789"


def test_an_erased_customer_leaves_only_keyed_hashes(database: Database) -> None:
    engine = database.connect()
    store, profiles = ErasureStore(engine, KEY), ProfileStore(engine)
    profiles.upsert("u-1", {"email": "Erika@Example.com"})
    profiles.upsert("anon-1", {"email": "erika.old@example.com"})
    profiles.link("anon-1", "u-1")
    ConsentStore(engine).withdraw("u-1", "one-click")
    Suppressions(engine).add("erika.old@example.com", "bounce", source="sendgrid", actor="sendgrid")

    record = store.begin("u-1", "T-1", "dpo")
    assert (
        record.customer
        == keyed_hash(KEY, "customer", "u-1")
        != keyed_hash(b"x" * 16, "customer", "u-1")
    )
    assert store.begin("u-1", "T-1", "someone else") == record, "one row per request"
    ids = store.identities("u-1")
    assert ids == ["u-1", "anon-1"]
    addresses = store.addresses(ids)
    assert addresses == ["erika.old@example.com", "erika@example.com"]
    store.keep_addresses(addresses)
    store.keep_addresses(addresses)  # again: the same
    store.delete_customer(ids, addresses)
    store.complete(record.customer)

    assert profiles.get("u-1") is None and profiles.get("anon-1") is None
    assert ConsentStore(engine).blocked("u-1") is None
    assert Suppressions(engine).get("erika.old@example.com") is None
    with engine.connect() as db:
        audit = [row.address for row in db.execute(select(suppression_audit))]
    assert audit == [store.address_key("erika.old@example.com")]
    # an address only erased: no marketing email; one that bounced: no email at all
    assert store.blocked("ERIKA@example.com", marketing=False) is None
    assert store.blocked("erika@example.com", marketing=True) == (
        "the address belonged to an erased customer (no consent since)"
    )
    assert store.blocked("erika.old@example.com", marketing=False) == (
        "the address is suppressed (bounce)"
    )
    assert store.blocked("someone@example.com", marketing=True) is None
    assert store.lift("erika@example.com") and not store.lift("erika@example.com")
    assert store.blocked("erika@example.com", marketing=True) is None
    [done] = store.records(record.customer)
    assert done.completed_at is not None and (done.request_id, done.actor) == ("T-1", "dpo")


def test_a_short_erasure_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="TOUCHPOINT_ERASURE_SECRET is too short"):
        load_settings(ProjectConfig(), {"TOUCHPOINT_ERASURE_SECRET": "short"})
    assert load_settings(ProjectConfig(), {}).erasure_secret is None


def test_forget_without_the_key_says_how_to_set_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"}
    done = subprocess.run(
        [sys.executable, "cli.py", "forget", "u-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "✗ set TOUCHPOINT_ERASURE_SECRET (at least 16 bytes, the same on the worker): an "
        "erasure keeps keyed hashes of the customer id and address"
    )
