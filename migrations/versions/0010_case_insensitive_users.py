"""Usernames and emails unique regardless of case; the `view-full-other-user-info` permission.

Rocket.Chat refuses "Admin" beside "admin". The unique indexes are the database's own rule:
`lower(…)` on PostgreSQL, `COLLATE NOCASE` on SQLite (ASCII case; the service's own check folds
every script, account_service.py). They are not in models.py, which cannot say an expression
index for both databases (models.CASE_INSENSITIVE_INDEXES keeps autogenerate off them).

Existing users that already differ only by case make this migration stop with a list of them,
before anything changes: rename or delete all but one of each, then start again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {"username": "uq_users_username_ci", "email": "uq_users_email_ci"}
# Rocket.Chat's default grant: who sees other users' emails and roles in users.info.
PERMISSION = ("view-full-other-user-info", ["admin"])


def _folded(column: str, sqlite: bool) -> str:
    return f"{column} COLLATE NOCASE" if sqlite else f"lower({column})"


def clashes(connection: sa.Connection) -> list[str]:
    """One line per group of users whose username (or email) differ only by case."""
    sqlite = connection.dialect.name == "sqlite"
    lines = []
    for column in COLUMNS:
        folded = _folded(column, sqlite)
        rows = connection.execute(
            sa.text(
                f"SELECT id, {column} FROM users WHERE {folded} IN "
                f"(SELECT {folded} FROM users WHERE {column} IS NOT NULL GROUP BY {folded} HAVING COUNT(*) > 1) "
                f"ORDER BY {folded}, id"
            )
        ).all()
        groups: dict[str, list[str]] = {}
        for user_id, value in rows:
            groups.setdefault(value.lower(), []).append(f"{value!r} (id {user_id})")
        lines += [f"  {column} {key!r}: {', '.join(users)}" for key, users in groups.items()]
    return lines


def upgrade() -> None:
    connection = op.get_bind()
    found = clashes(connection)
    if found:
        raise RuntimeError(
            "migration 0010 makes usernames and emails unique regardless of case, but these users differ only "
            "by case:\n" + "\n".join(found) + "\nRename or delete all but one of each (users.delete, or an UPDATE of "
            "users.username / users.email), then start the service again. Nothing was changed."
        )
    sqlite = connection.dialect.name == "sqlite"
    for column, name in COLUMNS.items():
        op.execute(f"CREATE UNIQUE INDEX {name} ON users ({_folded(column, sqlite)})")
    permissions = sa.table(
        "permissions",
        sa.column("id", sa.String),
        sa.column("roles", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    exists = connection.execute(sa.select(permissions.c.id).where(permissions.c.id == PERMISSION[0])).first()
    if exists is None:
        op.bulk_insert(permissions, [{"id": PERMISSION[0], "roles": PERMISSION[1], "updated_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM permissions WHERE id = :id").bindparams(id=PERMISSION[0]))
    for name in COLUMNS.values():
        op.execute(f"DROP INDEX {name}")
