"""Database engine and the session of a request.

SQLite needs care to be a safe multi-process store (see shared/notes/ecosystem.md §3.3):
pysqlite's legacy transaction handling silently loses concurrent read-modify-write updates,
so we take transaction control ourselves and open write transactions with BEGIN IMMEDIATE,
which queues writers on the file lock (under busy_timeout) instead of failing or losing data.
On PostgreSQL the same code locks rows that are read then changed (`with_for_update`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, current_app, g, request
from sqlalchemy import Engine, bindparam, create_engine, delete, event, insert, inspect, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from errors import ApiError
from models import DataVersion, Department, DepartmentAgent, DepartmentChange

log = logging.getLogger(__name__)

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


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


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
        engine = create_engine(url)
        _ping_idle_connections(engine)
        return engine

    # A `file:` URI (`sqlite:///file:/path/db?mode=ro&uri=true`, a read-only service) names a
    # database that must exist already; a plain path gets its directory created.
    if url.database and url.database != ":memory:" and not url.query.get("uri"):
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
        _switch_to_wal(cursor, sqlite_busy_timeout_ms)
        cursor.close()
        # SQLite's lower() folds ASCII only; Python's folds every script, as PostgreSQL's does,
        # so a case-insensitive `text` search finds "Élodie" on both (decisions.md).
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


# A pooled connection idle for longer than this is pinged (one round trip) before use, and
# replaced if it fails; busy ones are not pinged (pool_pre_ping would, on every request). A
# database restart is noticed by the version read each request makes on a connection of its own,
# and then every pooled connection is replaced (VersionReader._fetch).
PING_IDLE_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > PING_IDLE_SECONDS:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as error:
                raise DisconnectionError("an idle pooled connection failed its ping") from error  # the pool takes another


def _switch_to_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """`PRAGMA journal_mode = WAL`, retried: on a new database file, processes starting together
    (gunicorn workers, upgrade-db) race to switch it, and SQLite answers "database is locked" at
    once rather than waiting out the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def init_app(app: Flask) -> None:
    """Create the engine and the session factory, and close each request's session."""
    engine = make_engine(
        app.config["DATABASE_URL"],
        sqlite_synchronous=app.config["SQLITE_SYNCHRONOUS"],
        sqlite_busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"],
    )
    app.extensions["db.engine"] = engine
    app.extensions["db.sessionmaker"] = versioned_sessionmaker(engine)
    app.extensions["db.version_reader"] = VersionReader(engine)
    app.teardown_appcontext(close_session)


# Which version counter a write to each table moves (models.DataVersion). Caches of callers and
# permissions follow AUTH, department responses follow DATA, settings follow SETTINGS, so
# department writes neither make every worker re-authenticate its callers nor reload the
# settings. Tables not listed (login_failures) move none.
DATA, AUTH, SETTINGS = 1, 2, 3
VERSIONED_TABLES = {
    "departments": DATA,
    "department_agents": DATA,
    "settings": SETTINGS,
    "users": AUTH,
    "user_roles": AUTH,
    "login_tokens": AUTH,
    "permissions": AUTH,
    "roles": AUTH,
}


# The change log (models.DepartmentChange): "*" stands for every department, written when a
# statement does not say which departments it changes (execution option `department_ids`).
ANY_DEPARTMENT = "*"
CHANGES_KEPT = 10_000  # versions of the log kept; pruned every PRUNE_EVERY versions
PRUNE_EVERY = 100
# How a change changed its department (DepartmentChange.fields): created, deleted, or the set
# of changed columns, AGENT_LINKS standing for its agent links. UNKNOWN: anything may have
# changed (a bulk statement that does not name its columns: execution option `department_fields`).
CREATED, DELETED, UNKNOWN, AGENT_LINKS = "+", "-", "?", "agents"


def _changes_of(session: Session, instance: object) -> dict[str, set[str]]:
    """The departments a flushed row belongs to (before and after the change), each with how
    the row changed it."""
    state = inspect(instance)
    if isinstance(instance, Department):
        attribute = "id"
        if instance in session.new:
            fields = {CREATED}
        elif instance in session.deleted:
            fields = {DELETED}
        else:
            fields = {changed.key for changed in state.attrs if changed.history.has_changes()}
    elif isinstance(instance, DepartmentAgent):
        attribute, fields = "department_id", {AGENT_LINKS}
    else:
        return {}
    history = state.attrs[attribute].history
    ids = {value for value in (*history.added, *history.unchanged, *history.deleted) if value is not None}
    return {department_id: fields for department_id in ids}


def _logged_fields(fields: set[str]) -> str | None:
    """One department's changes in one transaction, as DepartmentChange.fields spells them."""
    for marker in (DELETED, CREATED):
        if marker in fields:
            return marker
    return None if UNKNOWN in fields else ",".join(sorted(fields))


# Built once: every committed write runs them.
BUMP_VERSIONS = (
    update(DataVersion)
    .where(DataVersion.id.in_(bindparam("counters", expanding=True)))
    .values(version=DataVersion.version + 1)
    .returning(DataVersion.id, DataVersion.version)
)
LOG_CHANGES = insert(DepartmentChange)
# PostgreSQL does both in one statement, one round trip fewer for every write (README,
# Performance): the log rows take the data version the same statement bumped, and come as two
# parallel arrays, so the SQL text stays the same whatever the number of departments.
BUMP_AND_LOG = text(
    f"""
    WITH bumped AS (
        UPDATE data_version SET version = version + 1 WHERE id = ANY(CAST(:counters AS INTEGER[])) RETURNING id, version
    ), logged AS (
        INSERT INTO department_changes (version, department_id, fields)
        SELECT bumped.version, change.department_id, change.fields
        FROM bumped, unnest(CAST(:department_ids AS VARCHAR[]), CAST(:fields AS VARCHAR[]))
            AS change(department_id, fields)
        WHERE bumped.id = {DATA}
    )
    SELECT id, version FROM bumped
    """
)


def versioned_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that increment the version counters of what each transaction wrote, and log
    which departments it changed, and how."""
    factory = sessionmaker(engine, expire_on_commit=False)

    def note(session: Session, table: str, changes: Mapping[str, set[str]]) -> None:
        if session.info.get("read_only"):  # autocommit: a write could not be versioned atomically
            raise RuntimeError(f"a read-only request wrote to {table}")
        counter = VERSIONED_TABLES.get(table)
        if counter is not None:
            session.info.setdefault("written", set()).add(counter)
        if counter == DATA:
            noted = session.info.setdefault("departments", {})
            for department_id, fields in (changes or {ANY_DEPARTMENT: {UNKNOWN}}).items():
                noted.setdefault(department_id, set()).update(fields)

    @event.listens_for(factory, "after_flush")
    def _flushed(session: Session, _context: object) -> None:
        for instance in (*session.new, *session.dirty, *session.deleted):
            note(session, instance.__table__.name, _changes_of(session, instance))

    @event.listens_for(factory, "do_orm_execute")
    def _executed(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            table = state.statement.table.name  # type: ignore[attr-defined]
            options = state.execution_options
            if table == "department_agents":
                fields = {AGENT_LINKS}
            else:  # a statement on departments names the columns it sets, or anything may change
                fields = set(options.get("department_fields", {UNKNOWN}))
            note(state.session, table, {department_id: fields for department_id in options.get("department_ids", ())})

    @event.listens_for(factory, "before_commit")
    def _bump_versions(session: Session) -> None:
        session.flush()  # commit flushes after this hook; flush first so its writes count
        written = session.info.pop("written", None)
        departments = session.info.pop("departments", None) or {ANY_DEPARTMENT: {UNKNOWN}}
        if not written:
            return
        # Core statements on the connection: part of this transaction, invisible to the ORM hooks.
        connection = session.connection()
        changes = sorted(departments.items())
        if connection.dialect.name == "postgresql":
            bumped = connection.execute(
                BUMP_AND_LOG,
                {
                    "counters": sorted(written),
                    "department_ids": [department_id for department_id, _ in changes],
                    "fields": [_logged_fields(fields) for _, fields in changes],
                },
            )
            version = dict(bumped.all()).get(DATA)
        else:
            version = dict(connection.execute(BUMP_VERSIONS, {"counters": sorted(written)}).all()).get(DATA)
            if version is not None:
                connection.execute(
                    LOG_CHANGES,
                    [
                        {"version": version, "department_id": department_id, "fields": _logged_fields(fields)}
                        for department_id, fields in changes
                    ],
                )
        if version is not None and version % PRUNE_EVERY == 0:
            connection.execute(delete(DepartmentChange).where(DepartmentChange.version <= version - CHANGES_KEPT))

    @event.listens_for(factory, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop("written", None)
        session.info.pop("departments", None)

    return factory


VERSION_QUERY = "SELECT id, version FROM data_version"
VERSION_STATEMENT = b"data_versions"  # its name, prepared on each PostgreSQL connection


class VersionReader:
    """Reads the committed version counters on a connection of its own, in autocommit mode.

    This is the one query of a request served from the caches, so it skips the ORM and the
    pool: one plain DBAPI connection per thread, replaced when it fails (database restart).
    Read before any cached data, it can only be older than that data, never newer.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.local = threading.local()
        self.opened: list[Any] = []  # every thread's connection, so close() reaches them all

    def read(self) -> dict[int, int]:
        return {int(counter): int(version) for counter, version in self._fetch(VERSION_QUERY, versions=True)}

    def changes(self, query: str, since: int, upto: int) -> list[Any] | None:
        """The change log's rows after data version `since`, read by `query` (SQL whose first
        column is the version, with a `since` parameter), all in one statement (one snapshot).
        None when the log no longer holds every version up to `upto` (pruned): then anything
        may have changed."""
        if upto - since > CHANGES_KEPT:
            return None  # further behind than the log reaches
        rows = self._fetch(query, {"since": int(since)})
        if not set(range(since + 1, upto + 1)) <= {int(row[0]) for row in rows}:
            return None
        return rows

    def _fetch(self, query: str, params: dict[str, Any] | None = None, *, versions: bool = False) -> list[Any]:
        """`query`'s rows. `versions`: the version read, whose values may come as text (bytes)."""
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            try:
                if connection is None:
                    connection = self.local.connection = self._connect()
                if versions and hasattr(connection, "pgconn"):
                    return _libpq_rows(connection.pgconn)
                cursor = connection.cursor()
                if hasattr(connection, "pgconn"):
                    cursor.execute(query, params, prepare=True)  # planned once per connection
                else:
                    cursor.execute(query, params or ())
                rows = cursor.fetchall()
                cursor.close()
                return rows
            except Exception as error:
                self.local.connection = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                # The database went away (a restart?): the pooled connections went with it.
                self.engine.dispose()
                if attempt == 2:
                    log.error("database unavailable: %s", error)
                    raise ApiError.unavailable() from error
        raise AssertionError("unreachable")

    def _connect(self) -> Any:
        pooled = self.engine.raw_connection()
        pooled.detach()  # ours for the thread's life, not the pool's
        connection = pooled.dbapi_connection
        self.opened.append(connection)
        if not is_sqlite(self.engine):  # SQLite's isolation_level None already autocommits
            connection.autocommit = True
            _check(connection.pgconn.prepare(VERSION_STATEMENT, VERSION_QUERY.encode()), psycopg.pq.ExecStatus.COMMAND_OK)
        return connection

    def close(self) -> None:
        for connection in self.opened:
            with contextlib.suppress(Exception):
                connection.close()
        self.opened.clear()
        self.local = threading.local()


def _libpq_rows(pgconn: Any) -> list[tuple[bytes, ...]]:
    """The version read through psycopg's libpq binding itself, without the cursor around it:
    half the CPU of a cursor for the one query every request runs, and prepared, so the server
    does not parse and plan it each time (README, Performance). Values in text form."""
    result = _check(pgconn.exec_prepared(VERSION_STATEMENT, []), psycopg.pq.ExecStatus.TUPLES_OK)
    return [tuple(result.get_value(row, column) for column in range(result.nfields)) for row in range(result.ntuples)]


def _check(result: Any, expected: Any) -> Any:
    if result.status != expected:
        raise psycopg.OperationalError((result.error_message or b"query failed").decode(errors="replace"))
    return result


def data_version(counter: int) -> int:
    """A committed version counter, all read once per request (before any data they may key)."""
    versions = g.get("data_versions")
    if versions is None:
        versions = g.data_versions = current_app.extensions["db.version_reader"].read()
    return versions[counter]


def logged_changes(query: str, since: int, upto: int) -> list[Any] | None:
    """See VersionReader.changes."""
    return current_app.extensions["db.version_reader"].changes(query, since, upto)


def dispose(app: Flask) -> None:
    """Close every connection of the application (tests and tools that build many apps)."""
    app.extensions["db.version_reader"].close()
    app.extensions["db.engine"].dispose()


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
        if request and (request.method not in SAFE_METHODS or _view_writes()):
            sess.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        elif request and not is_sqlite(current_app.extensions["db.engine"]):
            # PostgreSQL reads in autocommit: under READ COMMITTED each statement has its own
            # snapshot anyway, so a read transaction would only add its BEGIN and ROLLBACK round
            # trips. (SQLite keeps its read transaction: one snapshot for a list's total and page.)
            sess.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            sess.info["read_only"] = True
        g.db_session = sess
    return g.db_session


def writes(view: Any) -> Any:
    """Mark a view that writes whatever its method (`GET logout`, as Rocket.Chat allows): its
    session is a write transaction, not a PostgreSQL autocommit read."""
    view.writes = True
    return view


def _view_writes() -> bool:
    return getattr(current_app.view_functions.get(request.endpoint or ""), "writes", False)


def close_session(_exc: BaseException | None = None) -> None:
    """Closing rolls back whatever the request did not commit."""
    sess = g.pop("db_session", None)
    if sess is not None:
        sess.close()


def default_database_url(root: Path) -> str:
    return "sqlite:///" + str(root / "data" / "departments.db")


def database_url_from_env(root: Path) -> str:
    return os.environ.get("DATABASE_URL") or default_database_url(root)
