"""Journey analytics: runs, the steps they passed, and what the provider said of each message.

Revision ID: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journey_runs",
        sa.Column("workflow_id", sa.String(300), primary_key=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("customer", sa.String(64), nullable=True),
        sa.Column("holdout", sa.Boolean, nullable=False, default=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_day", sa.String(10), nullable=False),
        sa.Column("current_step", sa.String(200), nullable=True),
        sa.Column("step_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("failed_step", sa.String(200), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_day", sa.String(10), nullable=True),
    )
    op.create_index("ix_journey_runs_journey_entered", "journey_runs", ["journey_id", "entered_at"])
    op.create_index("ix_journey_runs_journey_outcome", "journey_runs", ["journey_id", "outcome"])
    op.create_index("ix_journey_runs_customer", "journey_runs", ["customer"])
    op.create_table(
        "step_passes",
        sa.Column("workflow_id", sa.String(300), primary_key=True),
        sa.Column("step_id", sa.String(200), primary_key=True),
        sa.Column("visit", sa.Integer, primary_key=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("next_step", sa.String(200), nullable=True),
        sa.Column("edge", sa.String(200), nullable=True),
    )
    op.create_index("ix_step_passes_journey_day", "step_passes", ["journey_id", "day"])
    op.create_table(
        "message_events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
    )
    op.create_index("ix_message_events_message_id", "message_events", ["message_id"])


def downgrade() -> None:
    op.drop_table("message_events")
    op.drop_table("step_passes")
    op.drop_table("journey_runs")
