"""Compiled plans by version: runs carry a reference, workers load the plan from here.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("journey_id", sa.String(200), nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_plans_journey_id", "plans", ["journey_id"])
    op.create_index("ix_plans_published_at", "plans", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_plans_published_at", table_name="plans")
    op.drop_index("ix_plans_journey_id", table_name="plans")
    op.drop_table("plans")
