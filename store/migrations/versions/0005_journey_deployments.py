"""Journeys deployed while the system runs: the active version and state of each journey, and
an audit of every deploy, pause, resume and stop (who, when, why).

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("journey_id", sa.String(200), primary_key=True),
        sa.Column("active_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "journey_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_journey_audit_journey_id", "journey_audit", ["journey_id"])


def downgrade() -> None:
    op.drop_index("ix_journey_audit_journey_id", table_name="journey_audit")
    op.drop_table("journey_audit")
    op.drop_table("journeys")
