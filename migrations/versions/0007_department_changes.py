"""The change log of departments: which departments each data version changed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "department_changes",
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("version", "department_id", name=op.f("pk_department_changes")),
    )


def downgrade() -> None:
    op.drop_table("department_changes")
