"""A partial index of the departments the lists show (not units, not archived), holding every
column their default page, its total and a `text` search read.

The statements carry the predicate verbatim (models.LISTED): SQLite then scans this index alone
and leaves the predicate's terms out of the scan instead of testing them on each entry
(docs/performance.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.LISTED as each database renders it, frozen here as migrations are.
LISTED_SQLITE = "(type IS NULL OR type = 'd') AND archived IS NOT 1"
LISTED_POSTGRESQL = "(type IS NULL OR type = 'd') AND archived IS NOT true"


def upgrade() -> None:
    op.create_index(
        "ix_departments_listed",
        "departments",
        ["name", "id", "name_folded", "type", "archived"],
        sqlite_where=sa.text(LISTED_SQLITE),
        postgresql_where=sa.text(LISTED_POSTGRESQL),
    )


def downgrade() -> None:
    op.drop_index("ix_departments_listed", table_name="departments")
