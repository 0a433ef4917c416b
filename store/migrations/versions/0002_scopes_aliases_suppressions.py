"""Message ids unique per source, anonymous-id aliases, and address suppressions with an audit.

* ``processed_messages`` gets a ``scope`` (the write key's hash, or ``sendgrid``, ``cli``):
  the same ``messageId`` from two shops is two messages. Ids already recorded keep the scope
  ``""`` until they leave the 48-hour window; they no longer deduplicate new calls.
* ``aliases``: Segment's ``alias`` call links an anonymous id to a user id.
* ``suppressions`` (one row per address, all email) and ``suppression_audit`` (who added or
  removed a suppression, when and why).

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_processed_messages_received_at", table_name="processed_messages")
    op.rename_table("processed_messages", "processed_messages_0001")
    op.create_table(
        "processed_messages",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_processed_messages_received_at", "processed_messages", ["received_at"])
    op.execute(
        "INSERT INTO processed_messages (scope, message_id, received_at) "
        "SELECT '', message_id, received_at FROM processed_messages_0001"
    )
    op.drop_table("processed_messages_0001")

    op.create_table(
        "aliases",
        sa.Column("anonymous_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_aliases_customer_id", "aliases", ["customer_id"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "suppression_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_suppression_audit_address", "suppression_audit", ["address"])


def downgrade() -> None:
    op.drop_index("ix_suppression_audit_address", table_name="suppression_audit")
    op.drop_table("suppression_audit")
    op.drop_table("suppressions")
    op.drop_index("ix_aliases_customer_id", table_name="aliases")
    op.drop_table("aliases")
    op.drop_index("ix_processed_messages_received_at", table_name="processed_messages")
    op.drop_table("processed_messages")
    op.create_table(
        "processed_messages",
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_processed_messages_received_at", "processed_messages", ["received_at"])
