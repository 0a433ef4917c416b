"""Admin keys beside write keys: ``write_keys.kind`` is ``write`` (ingestion: identify, track …)
or ``admin`` (the shop backend's privacy requests: export, and later erasure). A write key
never opens an admin endpoint, an admin key never sends events. Keys made before this revision
are write keys.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("write_keys") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="write"))


def downgrade() -> None:
    with op.batch_alter_table("write_keys") as batch:
        batch.drop_column("kind")
