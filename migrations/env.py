"""Alembic environment: imports only `models` and `db`, never the app.

SQLite migrations run with foreign keys OFF (a batch table rebuild would otherwise cascade
its DROP into the agent links) inside one BEGIN IMMEDIATE transaction, and refuse to commit
if `PRAGMA foreign_key_check` finds a dangling reference. PostgreSQL migrations hold an
advisory lock so two processes starting at once apply them one after the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import db  # noqa: E402
import models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIGRATION_LOCK_KEY = 7_341_002  # arbitrary, constant: our advisory lock id


@contextlib.contextmanager
def migration_file_lock(url: str) -> Iterator[None]:
    """SQLite: one migrating process at a time, by an exclusive lock on `<database>.migrate-lock`.
    BEGIN IMMEDIATE alone let a process that started together with another read the migration
    state before the other's commit and apply a migration twice (seen 1 run in ~7 under load)."""
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or db.database_url_from_env(ROOT)
    with migration_file_lock(url):
        _run_migrations(url)


def _run_migrations(url: str) -> None:
    # Several processes may start at once (gunicorn masters, tests): the later ones wait their turn.
    engine = db.make_engine(url, foreign_keys=False, sqlite_busy_timeout_ms=60_000)
    sqlite = db.is_sqlite(engine)
    try:  # a migration that stops (0010 on clashing users) must not leave the connection open
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
            context.configure(
                connection=connection,
                target_metadata=models.Base.metadata,
                render_as_batch=sqlite,
                include_name=models.include_in_autogenerate,
                compare_type=True,
                transaction_per_migration=False,
            )
            with context.begin_transaction():
                if not sqlite:
                    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                context.run_migrations()
                if sqlite:
                    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if dangling:
                        raise RuntimeError(f"migration left dangling references: {dangling[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
run_migrations_online()
