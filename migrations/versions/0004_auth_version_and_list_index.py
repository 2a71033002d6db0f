"""A second version counter (accounts), and a list index that covers the list filters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    versions = sa.table("data_version", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger))
    op.bulk_insert(versions, [{"id": 2, "version": 0}])
    with op.batch_alter_table("departments") as batch_op:
        batch_op.drop_index("ix_departments_name_id")
        batch_op.create_index("ix_departments_name_id_archived_type", ["name", "id", "archived", "type"])


def downgrade() -> None:
    with op.batch_alter_table("departments") as batch_op:
        batch_op.drop_index("ix_departments_name_id_archived_type")
        batch_op.create_index("ix_departments_name_id", ["name", "id"])
    op.execute("DELETE FROM data_version WHERE id = 2")
