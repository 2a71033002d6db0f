"""Absent department lists as SQL NULL instead of the JSON text 'null'.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = ("chat_closing_tags", "departments_allowed_to_forward")


def upgrade() -> None:
    for column in COLUMNS:
        op.execute(f"UPDATE departments SET {column} = NULL WHERE CAST({column} AS TEXT) = 'null'")


def downgrade() -> None:
    pass  # NULL reads back as None either way
