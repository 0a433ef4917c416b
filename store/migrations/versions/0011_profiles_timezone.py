"""Profiles by time zone: a date journey's occurrence reads only the zones where it is ``at``.

Revision ID: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profiles_timezone_customer", "profiles", ["timezone", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_profiles_timezone_customer", table_name="profiles")
