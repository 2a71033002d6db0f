"""Database engine and the session of a request.

SQLite needs care to be a safe multi-process store (see shared/notes/ecosystem.md §3.3):
pysqlite's legacy transaction handling silently loses concurrent read-modify-write updates,
so we take transaction control ourselves and open write transactions with BEGIN IMMEDIATE,
which queues writers on the file lock (under busy_timeout) instead of failing or losing data.
On PostgreSQL the same code locks rows that are read then changed (`with_for_update`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, current_app, g, request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def normalise_url(raw: str) -> URL:
    """Accept the URL spellings hosting platforms hand out (`postgres://`, `postgresql://`)."""
    if raw.startswith("postgres://"):
        raw = "postgresql+psycopg://" + raw[len("postgres://") :]
    elif raw.startswith("postgresql://"):
        raw = "postgresql+psycopg://" + raw[len("postgresql://") :]
    return make_url(raw)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    database_url: str,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_busy_timeout_ms: int = 5000,
    foreign_keys: bool = True,
) -> Engine:
    """Build an engine; for SQLite install the pragmas and the BEGIN hook on every connection."""
    url = normalise_url(database_url)
    if url.get_backend_name() != "sqlite":
        # pre_ping: a connection broken by a database restart is replaced, not handed out.
        return create_engine(url, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Disable pysqlite's own BEGIN handling; the "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_timeout_ms)}")
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA synchronous = {sqlite_synchronous}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def init_app(app: Flask) -> None:
    """Create the engine and the session factory, and close each request's session."""
    engine = make_engine(
        app.config["DATABASE_URL"],
        sqlite_synchronous=app.config["SQLITE_SYNCHRONOUS"],
        sqlite_busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"],
    )
    app.extensions["db.engine"] = engine
    app.extensions["db.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_session)


def engine() -> Engine:
    return current_app.extensions["db.engine"]


def session() -> Session:
    """The session of the current request, created on first use.

    A request whose method can write starts its transaction with BEGIN IMMEDIATE on SQLite,
    so the whole request is one serialised write transaction (no lost update, no
    "database is locked" half-way through).
    """
    if "db_session" not in g:
        sess: Session = current_app.extensions["db.sessionmaker"]()
        if request and request.method not in SAFE_METHODS:
            sess.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        g.db_session = sess
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    """Closing rolls back whatever the request did not commit."""
    sess = g.pop("db_session", None)
    if sess is not None:
        sess.close()


def default_database_url(root: Path) -> str:
    return "sqlite:///" + str(root / "data" / "departments.db")


def database_url_from_env(root: Path) -> str:
    return os.environ.get("DATABASE_URL") or default_database_url(root)
