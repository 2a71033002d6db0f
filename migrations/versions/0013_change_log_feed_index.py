"""The change log's index on `version` becomes (version, seq): the feed's order.

The feed reads `WHERE version > :cursor ORDER BY version, seq LIMIT n`. With `version` alone
PostgreSQL had to sort the rows: where its statistics were stale (right after many writes) it
read and sorted every row after the cursor for each page; with the order in the index it reads
the page's rows and stops (docs/history-and-webhooks.md, the feed). On SQLite `seq` is the rowid,
which the old index already held in this order: there the new one changes nothing but its name.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("department_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_department_changes_version_seq"), ["version", "seq"], unique=False)
        batch_op.drop_index(batch_op.f("ix_department_changes_version"))


def downgrade() -> None:
    with op.batch_alter_table("department_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_department_changes_version"), ["version"], unique=False)
        batch_op.drop_index(batch_op.f("ix_department_changes_version_seq"))
