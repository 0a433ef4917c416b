"""The event log: the calls the ingestion API accepted, per customer, in order.

Revision ID: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event", sa.String(200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
    )
    op.create_index("ix_event_log_customer_id_id", "event_log", ["customer_id", "id"])
    op.create_index("ix_event_log_received_at", "event_log", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_event_log_received_at", table_name="event_log")
    op.drop_index("ix_event_log_customer_id_id", table_name="event_log")
    op.drop_table("event_log")
