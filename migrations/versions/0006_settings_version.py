"""A third version counter: settings, so department writes leave the cached settings alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    versions = sa.table("data_version", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger))
    op.bulk_insert(versions, [{"id": 3, "version": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM data_version WHERE id = 3")
