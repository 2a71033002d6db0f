"""Fixtures: every test runs against a real SQLite file and a real PostgreSQL database.

The schema comes from the migrations, applied once per backend per session; each test then
starts from that freshly migrated state (a copied SQLite file; truncated-and-reseeded
PostgreSQL tables). `--db=sqlite` or `--db=postgresql` selects one backend.
PostgreSQL missing: the tests for it fail when CI is set, and are skipped (said loudly) elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import account_service
import db
import models
from app import create_app
from cli import upgrade_database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "admin-password"
CHEAP_HASHING = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8, "ARGON2_PARALLELISM": 1}

# Tables holding data a test may change, children first. `roles` never changes.
DATA_TABLES = ("idempotency_keys", "webhook_attempts", "webhook_deliveries", "webhook_endpoints", "event_state", "department_changes", "write_context", "login_failures", "login_tokens", "department_agents", "user_roles", "users", "departments", "permissions", "settings")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db", default="both", choices=("both", "sqlite", "postgresql"), help="database backend(s) to test"
    )


def backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--db")
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends(metafunc.config), scope="session")


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def require_postgres() -> None:
    """Skip the test when PostgreSQL cannot be reached; under CI=true, fail it instead."""
    if not postgres_available():
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI requires it)")
        pytest.skip(message + "; run with --db=sqlite to silence")


def pytest_report_header(config: pytest.Config) -> str:
    if "postgresql" in backends(config) and not postgres_available():
        return f"PostgreSQL at {POSTGRES_URL} is NOT reachable: its tests will be skipped (or fail under CI)"
    return f"databases: {', '.join(backends(config))}"


class Template:
    """A migrated database per backend, and how to give a test a fresh copy of it."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.path = workdir / "template.db"
            upgrade_database(f"sqlite:///{self.path}")
            with sqlite3.connect(self.path) as conn:  # fold the WAL into the file we copy
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        require_postgres()
        # A schema of our own: test runs on one machine (developers, CI, helpers) do not collide.
        self.schema = f"test_{os.getpid()}"
        self.url = f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"
        self.engine = sa.create_engine(POSTGRES_URL)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE; CREATE SCHEMA {self.schema}"))
        self.engine.dispose()
        self.engine = sa.create_engine(self.url)
        upgrade_database(self.url)
        with self.engine.connect() as conn:
            self.seeds = {
                table: [dict(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()]
                for table in ("permissions", "settings", "event_state")
            }

    def drop(self) -> None:
        self.engine.dispose()
        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
        engine.dispose()

    def fresh_url(self, tmp_path: Path) -> str:
        if self.backend == "sqlite":
            target = tmp_path / "departments.db"
            shutil.copyfile(self.path, target)
            return f"sqlite:///{target}"
        metadata = models.Base.metadata
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE"))
            for table, rows in self.seeds.items():
                conn.execute(metadata.tables[table].insert(), rows)
        return self.url


@pytest.fixture(scope="session")
def template(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    template = Template(backend, tmp_path_factory.mktemp(f"template-{backend}"))
    yield template
    if backend == "postgresql":
        template.drop()


@pytest.fixture
def database_url(template: Template, tmp_path: Path) -> str:
    return template.fresh_url(tmp_path)


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, for migrations and real servers: a new SQLite file, or a
    PostgreSQL schema of this process's own, set as the connection's search_path (dropped
    afterwards; the shared tables are never touched). A schema, not a database: DROP DATABASE
    forces a checkpoint, which takes seconds on a busy server."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    require_postgres()
    name = f"test_empty_{os.getpid()}"
    server = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))
        url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
        with server.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    finally:
        server.dispose()


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "ADMIN_PASS": ADMIN_PASSWORD, **CHEAP_HASHING})
    with app.app_context():
        session = app.extensions["db.sessionmaker"]()
        with session:
            account_service.bootstrap_admin(session, "admin", ADMIN_PASSWORD, "admin@example.com")
    yield app
    db.dispose(app)


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """`make_app(**config)`: apps with settings of the test's choosing (several share the
    test's database, like gunicorn workers); the admin exists, every app is disposed at the end."""
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = create_app(
            {"TESTING": True, "DATABASE_URL": database_url, "ADMIN_PASS": ADMIN_PASSWORD, **CHEAP_HASHING, **config}
        )
        with app.app_context():
            with app.extensions["db.sessionmaker"]() as session:
                account_service.bootstrap_admin(session, "admin", ADMIN_PASSWORD, "admin@example.com")
        made.append(app)
        return app

    yield make
    for app in made:
        db.dispose(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@dataclass
class Auth:
    """Logs users in and hands out Rocket.Chat auth headers."""

    client: FlaskClient
    admin_headers: dict[str, str] | None = None

    def login(self, username: str, password: str) -> dict[str, str]:
        response = self.client.post("/api/v1/login", json={"user": username, "password": password})
        assert response.status_code == 200, response.json
        data = response.json["data"]
        return {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}

    @property
    def admin(self) -> dict[str, str]:
        if self.admin_headers is None:
            self.admin_headers = self.login("admin", ADMIN_PASSWORD)
        return self.admin_headers

    def create_user(self, username: str, roles: list[str] | None = None, password: str = "pass-word-1") -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "email": f"{username}@example.com", "name": username, "password": password}
        if roles is not None:
            body["roles"] = roles
        response = self.client.post("/api/v1/users.create", json=body, headers=self.admin)
        assert response.status_code == 200, response.json
        return response.json["user"]

    def user_headers(self, username: str, roles: list[str] | None = None) -> dict[str, str]:
        """A new user with `roles`, logged in."""
        self.create_user(username, roles)
        return self.login(username, "pass-word-1")


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


def set_permission(client: FlaskClient, headers: dict[str, str], permission: str, roles: list[str]) -> None:
    response = client.post(
        "/api/v1/permissions.update", json={"permissions": [{"_id": permission, "roles": roles}]}, headers=headers
    )
    assert response.status_code == 200, response.json


def set_setting(client: FlaskClient, headers: dict[str, str], setting: str, value: Any) -> None:
    response = client.post(f"/api/v1/settings/{setting}", json={"value": value}, headers=headers)
    assert response.status_code == 200, response.json


# --- Shared by the department test modules (tests/test_departments_*.py, test_permission_matrix.py) ---

API = "/api/v1"
FORBIDDEN_BODY = {
    "success": False,
    "error": "User does not have the permissions required for this action [error-unauthorized]",
}
UNAUTHORIZED_BODY = {
    "success": False,
    "error": "You must be logged in to do this.",
    "status": "error",
    "message": "You must be logged in to do this.",
}


def department_fields(**overrides: Any) -> dict[str, Any]:
    """A valid `department` object: the five fields Rocket.Chat's e2e tests send, with overrides."""
    fields = {"name": "Test", "enabled": True, "showOnOfflineForm": True, "showOnRegistration": True, "email": "bla@bla"}
    fields.update(overrides)
    return fields


def create_department(
    client: FlaskClient, headers: dict[str, str], agents: list[dict[str, Any]] | None = None, **overrides: Any
) -> dict[str, Any]:
    """POST livechat/department (asserting 200); returns the response's `department`."""
    body: dict[str, Any] = {"department": department_fields(**overrides)}
    if agents is not None:
        body["agents"] = agents
    response = client.post(f"{API}/livechat/department", json=body, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["department"]


def raw_connection(database_url: str) -> Any:
    """A plain DBAPI connection to the test's database (sqlite3 or psycopg), without any of the
    service's code: what a person at the sqlite3/psql prompt, or another program, writes with."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return sqlite3.connect(url.database)
    import psycopg

    return psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))


def write_by_hand(database_url: str, statement: str, values: tuple = ()) -> None:
    """Run one statement (`?` placeholders) and commit it through `raw_connection`: a hand edit."""
    connection = raw_connection(database_url)
    try:
        connection.cursor().execute(statement.replace("?", "%s") if database_url.startswith("postgresql") else statement, values)
        connection.commit()
    finally:
        connection.close()


class Clock:
    """`account_service.now`, moved by hand (token lifetimes, login throttling windows)."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(account_service, "now", clock)
    return clock
