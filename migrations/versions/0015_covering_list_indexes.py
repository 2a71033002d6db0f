"""The list indexes cover the `enabled` filter and `text` searches of lists with archived ones.

- ix_departments_listed gains `enabled`, and the index of the lists that show archived
  departments too (ix_departments_name_id_archived_type, now ix_departments_with_archived) gains
  `name_folded` and `enabled`: a page, its total and a `text` search with `enabled=true` or
  `showArchived=true` then read their index alone, no table row per entry.
- ix_departments_enabled goes. Nearly every department is enabled, so it narrowed nothing, yet
  SQLite (which keeps no statistics) chose it for `enabled=true` lists, then read every enabled
  row and sorted them: two to three times the time of a scan of the covering index
  (docs/performance.md).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.LISTED as each database renders it, frozen here as migrations are (as in 0014).
LISTED_SQLITE = "(type IS NULL OR type = 'd') AND archived IS NOT 1"
LISTED_POSTGRESQL = "(type IS NULL OR type = 'd') AND archived IS NOT true"


def _listed(columns: list[str]) -> None:
    op.create_index(
        "ix_departments_listed",
        "departments",
        columns,
        sqlite_where=sa.text(LISTED_SQLITE),
        postgresql_where=sa.text(LISTED_POSTGRESQL),
    )


def upgrade() -> None:
    op.drop_index("ix_departments_listed", table_name="departments")
    _listed(["name", "id", "name_folded", "type", "archived", "enabled"])
    op.drop_index("ix_departments_name_id_archived_type", table_name="departments")
    op.create_index(
        "ix_departments_with_archived", "departments", ["name", "id", "archived", "type", "name_folded", "enabled"]
    )
    op.drop_index("ix_departments_enabled", table_name="departments")


def downgrade() -> None:
    op.create_index("ix_departments_enabled", "departments", ["enabled"])
    op.drop_index("ix_departments_with_archived", table_name="departments")
    op.create_index("ix_departments_name_id_archived_type", "departments", ["name", "id", "archived", "type"])
    op.drop_index("ix_departments_listed", table_name="departments")
    _listed(["name", "id", "name_folded", "type", "archived"])
