"""Database engine, the session of a request, and the version counters every read starts with.

SQLite needs care to be a safe multi-process store (docs/architecture.md): pysqlite's legacy
transaction handling silently loses concurrent read-modify-write updates, so we take transaction
control ourselves and open write transactions with BEGIN IMMEDIATE, which queues writers on the
file lock (under busy_timeout) instead of failing or losing data. On PostgreSQL the same code
locks rows that are read then changed (`with_for_update`).

The version counters and the change log are kept by the database's triggers (migration 0009),
so this module only tells them who writes (begin_write) and reads the counters (VersionReader).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from flask import Flask, current_app, g, request
from sqlalchemy import Connection, Engine, bindparam, create_engine, delete, event, insert, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

import json_codec
from errors import ApiError
from models import WriteContext

T = TypeVar("T")

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


def _casefold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


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
        engine = create_engine(url, json_deserializer=json_codec.loads)
        _ping_idle_connections(engine)
        return engine

    # A `file:` URI (`sqlite:///file:/path/db?mode=ro&uri=true`, a read-only service) names a
    # database that must exist already; a plain path gets its directory created.
    if url.database and url.database != ":memory:" and not url.query.get("uri"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_deserializer=json_codec.loads)

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
        # so a case-insensitive `text` search finds "Élodie" on both (docs/compatibility.md §D.15).
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
        dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        # On the driver's connection: every request begins one, and SQLAlchemy's statement path
        # (contexts, events, a cursor) costs more than the BEGIN itself. Its errors (a lock
        # waited for past busy_timeout) are wrapped as that path would have.
        statement = BEGIN_STATEMENTS[mode]
        try:
            connection.connection.driver_connection.execute(statement)
        except sqlite3.Error as error:
            raise OperationalError(statement, None, error) from error

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
                # the pool takes another connection
                raise DisconnectionError("an idle pooled connection failed its ping") from error


BEGIN_STATEMENTS = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")}


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
    app.extensions["db.sessionmaker"] = plain_sessionmaker(engine)
    app.extensions["db.version_reader"] = VersionReader(engine)
    app.teardown_appcontext(close_session)


# The version counters (models.DataVersion), moved by the database's own triggers: caches of
# department answers follow DATA, of callers AUTH, of settings SETTINGS.
DATA, AUTH, SETTINGS = 1, 2, 3

WRITE_CONTEXT_SETTING = "departments.actor"  # PostgreSQL: read by the change log's triggers


class HoldableSession(Session):
    """A session whose commit() only flushes while it is `held` (db.commit_held): its transaction
    then commits once, when the holder ends. (A second session joined to the transaction did the
    same and cost ~0.15 ms a request.)"""

    held = False

    def commit(self) -> None:
        if self.held:
            self.flush()
        else:
            super().commit()


def plain_sessionmaker(engine: Engine) -> sessionmaker[HoldableSession]:
    """Sessions that tell the change log's triggers who wrote (begin_write), and that refuse to
    write in a PostgreSQL read request (autocommit: each statement would commit on its own)."""
    factory = sessionmaker(engine, class_=HoldableSession, expire_on_commit=False)

    def refuse_in_read_only(session: Session) -> None:
        if session.info.get("read_only"):
            raise RuntimeError("a read-only request wrote to the database")

    @event.listens_for(factory, "before_flush")
    def _flushing(session: Session, _context: object, _instances: object) -> None:
        refuse_in_read_only(session)

    @event.listens_for(factory, "do_orm_execute")
    def _executed(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            refuse_in_read_only(state.session)

    @event.listens_for(factory, "after_transaction_end")
    def _forget_connection(session: Session, transaction: Any) -> None:
        if transaction.parent is None:  # the outermost transaction: its connection is released
            session.info.pop("connection", None)

    @event.listens_for(factory, "before_commit")
    def _clear_write_context(session: Session) -> None:
        # SQLite: the row must not outlive the transaction, or a later hand edit would be
        # logged with this writer's name (PostgreSQL's setting ends with the transaction).
        if session.info.pop("write_context", False):
            session.flush()  # commit flushes after this hook: the triggers must still see the row
            CLEAR_WRITE_CONTEXT.execute(session.connection(), {})

    return factory


def connection_of(session: Session) -> Connection:
    """The connection of `session`'s transaction, looked up once per transaction: the reads run
    Core statements on it, and Session.connection() costs more than a small query."""
    connection = session.info.get("connection")
    if connection is None:
        connection = session.info["connection"] = session.connection()
    return connection


class DriverStatement:
    """A fixed Core statement sent straight to the driver, on the connection of a transaction.

    For the small statements a request runs every time (who writes, the caller's token, a list's
    total, an Idempotency-Key's claim and answer), SQLAlchemy's work per execution (an execution
    context, events, parameter and result objects) cost two to four times the statement itself
    (docs/performance.md, "Small statements on the driver"). SQLAlchemy still compiles the
    statement, once per dialect, and its types convert the parameters and the result values as
    they would on its own path; rows come back as plain tuples. Driver errors are raised as the
    SQLAlchemy exceptions its own path raises.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self.plans: dict[str, tuple[Any, dict[str, Any], list[Any] | None]] = {}

    def _plan(self, dialect: Any) -> tuple[Any, dict[str, Any], list[Any] | None]:
        compiled = self.statement.compile(dialect=dialect)
        if compiled.post_compile_params:
            # SQLAlchemy renders these (an `IN` list, say) anew for each execution; a plan cannot.
            raise ValueError(f"db.DriverStatement: an IN list or other parameter rendered per execution in {compiled}")
        binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(self.statement, "exported_columns", ())
        ]
        bound = {name: process for name, process in binds.items() if process}
        return compiled, bound, results if any(results) else None

    def execute(self, connection: Connection, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self.execute_on(connection.connection.driver_connection, connection.dialect, parameters)

    def execute_on(self, driver_connection: Any, dialect: Any, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """`execute` on a driver's own connection (VersionReader's)."""
        plan = self.plans.get(dialect.name)
        if plan is None:
            plan = self.plans[dialect.name] = self._plan(dialect)
        compiled, binds, results = plan
        values = compiled.construct_params(parameters)
        for name, process in binds.items():
            values[name] = process(values[name])
        if compiled.positiontup is not None:  # SQLite's `?` parameters
            values = tuple(values[name] for name in compiled.positiontup)
        cursor = driver_connection.cursor()
        try:
            cursor.execute(compiled.string, values)
            rows = cursor.fetchall() if cursor.description else []
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(compiled.string, values, error, dialect.loaded_dbapi.Error) from error
        finally:
            cursor.close()
        if results is None:
            return rows
        return [
            tuple(value if process is None else process(value) for process, value in zip(results, row, strict=True))
            for row in rows
        ]


SET_WRITE_CONTEXT = DriverStatement(
    insert(WriteContext).prefix_with("OR REPLACE").values(id=1, actor=bindparam("actor"), tx=bindparam("tx"))
)
CLEAR_WRITE_CONTEXT = DriverStatement(delete(WriteContext))
SET_ACTOR_SETTING = DriverStatement(text(f"SELECT set_config('{WRITE_CONTEXT_SETTING}', :actor, true)"))


def begin_write(session: Session) -> None:
    """Start `session`'s write transaction; on SQLite with BEGIN IMMEDIATE: the write lock first,
    so the whole request is one serialised transaction (no lost update, no "database is locked"
    half-way through)."""
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def record_actor(session: Session, actor: Mapping[str, Any]) -> None:
    """Tell the change log's triggers who writes in `session`'s transaction (models.DepartmentChange
    `actor`; without it they log a hand edit)."""
    connection = session.connection()
    encoded = encoded_actor(actor)
    if is_sqlite(connection.engine):
        SET_WRITE_CONTEXT.execute(connection, {"actor": encoded, "tx": uuid.uuid4().hex})
        session.info["write_context"] = True
    else:
        SET_ACTOR_SETTING.execute(connection, {"actor": encoded})


def encoded_actor(actor: Mapping[str, Any]) -> str:
    return json.dumps(dict(actor), separators=(",", ":"))


VERSION_QUERY = "SELECT id, version FROM data_version"
VERSION_STATEMENT = b"data_versions"  # its name, prepared on each PostgreSQL connection


class Versions(dict[int, int]):
    """The counters as one read found them; `order` ranks the reads of a process (the first is 1)."""

    order = 0


class VersionReader:
    """Reads the committed version counters on a connection of its own, in autocommit mode.

    This is the one query of a request served from the caches, so it skips the ORM and the
    pool: one plain DBAPI connection per process, shared by its threads under a lock (the read
    takes microseconds), replaced when it fails (database restart). Read before any cached
    data, it can only be older than that data, never newer. The caches also ask the change log
    here what a new version changed (`run`): a request served from them then opens no session.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.connection: Any = None
        self.reads = 0

    def read(self) -> Versions:
        def read_counters(connection: Any) -> Versions:
            if hasattr(connection, "pgconn"):
                rows = _libpq_rows(connection.pgconn)
            else:
                rows = connection.execute(VERSION_QUERY).fetchall()
            versions = Versions((int(counter), int(version)) for counter, version in rows)
            self.reads += 1
            versions.order = self.reads
            return versions

        return self._on_connection(read_counters)

    def run(self, statement: DriverStatement, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """`statement` on this connection, in a snapshot of its own (autocommit)."""
        return self._on_connection(lambda connection: statement.execute_on(connection, self.engine.dialect, parameters))

    def _on_connection(self, use: Callable[[Any], T]) -> T:
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.connection is None:
                        self.connection = self._connect()
                    return use(self.connection)
                except Exception as error:
                    self._close()
                    # The database went away (a restart?): the pooled connections went with it.
                    self.engine.dispose()
                    if attempt == 2:
                        log.error("database unavailable: %s", error)
                        raise ApiError.unavailable() from error
            raise AssertionError("unreachable")

    def _connect(self) -> Any:
        pooled = self.engine.raw_connection()
        pooled.detach()  # ours for the process's life, not the pool's
        connection = pooled.dbapi_connection
        if not is_sqlite(self.engine):  # SQLite's isolation_level None already autocommits
            connection.autocommit = True
            prepared = connection.pgconn.prepare(VERSION_STATEMENT, VERSION_QUERY.encode())
            _check(prepared, psycopg.pq.ExecStatus.COMMAND_OK)
        return connection

    def _close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()
            self.connection = None

    def close(self) -> None:
        with self.lock:
            self._close()


def _libpq_rows(pgconn: Any) -> list[tuple[bytes, ...]]:
    """The version read through psycopg's libpq binding itself, without the cursor around it:
    half the CPU of a cursor for the one query every request runs, and prepared, so the server
    does not parse and plan it each time (docs/performance.md, "The version read"). Values in text form."""
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


def read_committed(statement: DriverStatement, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """`statement` run outside the request's transaction, on the connection that reads the
    counters: for what the caches ask the change log, which should not make a request that is
    served from them open a session."""
    return current_app.extensions["db.version_reader"].run(statement, parameters)


def versions_unchanged() -> bool:
    """Whether the counters still read what this request read first: nothing was committed since,
    so whatever the request read in between was of that version."""
    data_version(DATA)
    return current_app.extensions["db.version_reader"].read() == g.data_versions


def versions_read_order() -> int:
    """When this request read the counters, among the reads of this process (a later read never
    finds an older version, unless the database went back: a restore)."""
    data_version(DATA)
    return g.data_versions.order


def dispose(app: Flask) -> None:
    """Close every connection of the application (tests and tools that build many apps)."""
    app.extensions["db.version_reader"].close()
    app.extensions["db.engine"].dispose()


def engine() -> Engine:
    return current_app.extensions["db.engine"]


def session() -> Session:
    """The session of the current request, created on first use. A request whose method can
    write starts its write transaction at once (begin_write)."""
    if "db_session" not in g:
        sess: Session = current_app.extensions["db.sessionmaker"]()
        if request and (request.method not in SAFE_METHODS or _view_writes()):
            begin_write(sess)
        elif request and not is_sqlite(current_app.extensions["db.engine"]):
            # PostgreSQL reads in autocommit: under READ COMMITTED each statement has its own
            # snapshot anyway, so a read transaction would only add its BEGIN and ROLLBACK round
            # trips. (SQLite keeps its read transaction: one snapshot for a list's total and page.)
            sess.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            sess.info["read_only"] = True
        g.db_session = sess
    return g.db_session


@contextlib.contextmanager
def commit_held() -> Iterator[Connection]:
    """The request's write transaction, committed once at the end of the block: inside it the
    session's commits only flush (HoldableSession), so the caller can add its own statements on
    the yielded connection and have them commit with the rest (idempotency.py stores a request's
    answer in the transaction that made it). An exception commits nothing."""
    request_session = session()
    connection = request_session.connection()
    request_session.held = True
    try:
        yield connection
    finally:
        request_session.held = False
    request_session.commit()


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
