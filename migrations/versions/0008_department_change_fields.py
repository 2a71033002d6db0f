"""How each logged change changed its department (models.DepartmentChange.fields).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Rows logged before this column existed keep NULL: "unknown", the safe reading.
    op.add_column("department_changes", sa.Column("fields", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("department_changes") as batch:
        batch.drop_column("fields")
