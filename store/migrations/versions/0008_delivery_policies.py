"""Delivery policies: what the ledger remembers of a message for frequency caps and the defer
limit.

* ``category``: marketing or transactional, for caps that count one of them;
* ``counted_at``: the run's clock at the step when the message took a slot of a frequency cap
  (none: it took none — skipped, deferred, failed, or no cap applied);
* ``deferred_since``: the run's clock when a policy first deferred it (the defer limit counts
  from there);
* an index by customer and ``counted_at``: a cap reads a customer's counted messages of the
  last window at every capped send.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.add_column(sa.Column("category", sa.String(16), nullable=True))
        table.add_column(sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("deferred_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deliveries_customer_counted_at", "deliveries", ["customer", "counted_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_customer_counted_at", table_name="deliveries")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("deferred_since")
        table.drop_column("counted_at")
        table.drop_column("category")
