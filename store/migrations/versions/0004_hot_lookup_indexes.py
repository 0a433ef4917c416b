"""Indexes for the lookups made per event or per command, so none of them reads a whole table.

* ``profiles``: ``lower(email)`` — the SendGrid event webhook finds the customer by address,
  case-insensitively, for every event it receives.
* ``deliveries``: by customer and by journey, newest first, and by time alone — the ledger
  listings of ``touchpoint messages``.
* ``suppressions``: by time — the list, newest first.

Every other hot lookup is a primary key already: entries by journey and customer (and key),
deliveries by message id, processed ids by source and id, consent, aliases, write keys, plans.
The tables were young when this revision came (PostgreSQL was not usable before it), so the
indexes are built in the migration's transaction rather than ``CONCURRENTLY``.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profiles_email_lower", "profiles", [sa.text("lower(email)")])
    op.create_index("ix_deliveries_customer_created_at", "deliveries", ["customer", "created_at"])
    op.create_index(
        "ix_deliveries_journey_id_created_at", "deliveries", ["journey_id", "created_at"]
    )
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])
    op.create_index("ix_suppressions_created_at", "suppressions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_created_at", table_name="suppressions")
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_journey_id_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_customer_created_at", table_name="deliveries")
    op.drop_index("ix_profiles_email_lower", table_name="profiles")
