"""Faults: the database goes away, turns read-only or fills up; gunicorn is told to stop.

Every fault must give a clean JSON 503 (never a 500 or HTML), leave nothing half-written, and
the service must recover by itself when the fault ends. Faults are made for real where this
machine allows it: PostgreSQL is cut off through a TCP proxy of the test's own (the shared server
keeps running); a read-only or full disk is a small tmpfs (mounting needs root, so those tests
are skipped elsewhere) and also, portably, a read-only `file:` URI and `PRAGMA max_page_count`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import ADMIN_PASSWORD, API, CHEAP_HASHING, POSTGRES_URL, backends, department_fields, require_postgres
from flask import Flask
from servers import Server, free_port, login

import account_service
import db
from app import create_app
from cli import upgrade_database

UNAVAILABLE = {"success": False, "error": "Service unavailable: database error"}


# --- databases of the tests' own -------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "sqlite" not in backends(request.config):
        pytest.skip("SQLite not selected (--db)")
    path = tmp_path_factory.mktemp("faults") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="module")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema of this module's own in the test database, migrated, dropped at the end."""
    if "postgresql" not in backends(request.config):
        pytest.skip("PostgreSQL not selected (--db)")
    require_postgres()
    schema = f"faults_{os.getpid()}"
    server = sa.create_engine(POSTGRES_URL)
    with server.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    upgrade_database(url)
    yield url
    with server.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    server.dispose()


def make_app(url: str, **config: object) -> Flask:
    app = create_app({"TESTING": True, "DATABASE_URL": url, **CHEAP_HASHING, **config})
    with app.app_context():
        with app.extensions["db.sessionmaker"]() as session:
            account_service.bootstrap_admin(session, "admin", ADMIN_PASSWORD, "admin@example.com")
    return app


def admin_headers(client) -> dict[str, str]:
    response = client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    return {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}


def create(client, headers, name: str, **fields):
    return client.post(f"{API}/livechat/department", json={"department": department_fields(name=name, **fields)}, headers=headers)


def assert_503(response) -> None:
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.headers["Content-Type"] == "application/json"
    assert response.json == UNAVAILABLE


def department_names(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT name FROM departments")).scalars())
    finally:
        engine.dispose()


def assert_sqlite_consistent(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


# --- PostgreSQL goes away and comes back --------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new
    ones (like a database host going down), `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.running = threading.Event()

    def restore(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self.running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target, timeout=5)
                client.settimeout(None)
                upstream.settimeout(None)
                with self.lock:
                    self.sockets |= {client, upstream}
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.running.clear()
        time.sleep(0.3)  # the listener closes within its 0.1 s accept timeout
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()


def test_postgresql_outage_is_a_503_and_the_service_recovers_by_itself(postgres_url):
    proxy = TcpProxy(("127.0.0.1", sa.make_url(POSTGRES_URL).port or 5432)).restore()
    through_proxy = sa.make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    app = make_app(through_proxy)
    client = app.test_client()
    try:
        admin = admin_headers(client)
        assert create(client, admin, "before the outage").status_code == 200
        assert client.get(f"{API}/me", headers=admin).status_code == 200

        proxy.cut()
        started = time.monotonic()
        assert_503(client.get(f"{API}/me", headers=admin))
        assert_503(client.get(f"{API}/livechat/department", headers=admin))
        assert_503(create(client, admin, "during the outage"))
        assert_503(client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD}))
        assert time.monotonic() - started < 10  # answered promptly, not after a hang

        proxy.restore()
        # the very next requests work: broken connections are replaced, no restart needed
        assert client.get(f"{API}/me", headers=admin).status_code == 200
        assert create(client, admin, "after the outage").status_code == 200
        listed = client.get(f"{API}/livechat/department", headers=admin).json
        assert {d["name"] for d in listed["departments"]} == {"before the outage", "after the outage"}
    finally:
        proxy.cut()
        db.dispose(app)
    assert department_names(postgres_url) == {"before the outage", "after the outage"}


def _kill_connections_between_two_creates(url: str, which: str) -> None:
    """Create a department, kill some of the worker's connections (`which`: "pooled", the one
    the next request would get, or "all", the version reader's too), create another: both must
    land, the second as if nothing happened."""
    app = make_app(url)
    client = app.test_client()
    direct = sa.create_engine(url)
    try:
        admin = admin_headers(client)
        assert create(client, admin, "before the kill").status_code == 200
        with app.app_context():
            pooled = db.engine().raw_connection()  # the pooled connection the next request would get
            pids = [pooled.dbapi_connection.info.backend_pid]
            pooled.close()
        if which == "all":
            pids.append(app.extensions["db.version_reader"].connection.info.backend_pid)
        with direct.connect() as conn:
            for pid in pids:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
            alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
            for _ in range(50):
                if not conn.execute(alive, {"pids": pids}).scalar():
                    break
                time.sleep(0.05)
        assert create(client, admin, "after the kill").status_code == 200
    finally:
        db.dispose(app)
        direct.dispose()
    assert department_names(url) >= {"before the kill", "after the kill"}


def test_postgresql_an_idle_pooled_connection_that_died_is_replaced_before_use(postgres_url, monkeypatch):
    """Pooled connections are pinged only after sitting idle (db.PING_IDLE_SECONDS): one killed
    meanwhile (an administrator, an idle timeout) is replaced, and the request never sees it."""
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)
    _kill_connections_between_two_creates(postgres_url, "pooled")


def test_postgresql_restarted_between_two_requests_is_not_seen_by_the_next_one(postgres_url):
    """Every connection of the worker dies between two requests (a quick restart), too soon for
    the idle ping: the version read notices, reconnects and replaces the pooled connections."""
    _kill_connections_between_two_creates(postgres_url, "all")


def test_postgresql_lost_in_the_middle_of_a_write_keeps_nothing_of_it(postgres_url):
    """DELETE department A removes A's agent links and A, then clears B's fallback to A. B is
    locked by another connection, so the request stops half-way; the database is cut off then.
    The answer is 503 and A, its links and B's reference are all still there."""
    proxy = TcpProxy(("127.0.0.1", sa.make_url(POSTGRES_URL).port or 5432)).restore()
    app = make_app(sa.make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False))
    client = app.test_client()
    direct = sa.create_engine(postgres_url)
    try:
        admin = admin_headers(client)
        user = {"username": "midway-agent", "email": "midway@example.com", "name": "Agent", "password": "pw-agent"}
        assert client.post(f"{API}/users.create", json=user, headers=admin).status_code == 200
        assert client.post(f"{API}/livechat/users/agent", json={"username": "midway-agent"}, headers=admin).status_code == 200
        agent_id = client.get(f"{API}/users.info?username=midway-agent", headers=admin).json["user"]["_id"]
        body = {"department": department_fields(name="A"), "agents": [{"agentId": agent_id}]}
        a = client.post(f"{API}/livechat/department", json=body, headers=admin).json["department"]["_id"]
        b = create(client, admin, "B", fallbackForwardDepartment=a).json["department"]["_id"]

        result: dict[str, object] = {}
        with direct.connect() as holder:
            holder.execute(sa.text("SELECT id FROM departments WHERE id = :b FOR UPDATE"), {"b": b})

            def delete_a() -> None:
                response = app.test_client().delete(f"{API}/livechat/department/{a}", headers=admin)
                result["status"], result["body"] = response.status_code, response.json

            worker = threading.Thread(target=delete_a)
            worker.start()
            time.sleep(1.0)  # A's links and A are deleted, the update of B waits for its lock
            assert worker.is_alive(), result
            with direct.connect() as observer:  # PostgreSQL shows the request waiting for the lock
                waiting = observer.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE departments%'")
                ).scalar_one()
            assert waiting == 1
            proxy.cut()
            worker.join(timeout=30)
            holder.rollback()
        assert result.get("status") == 503 and result.get("body") == UNAVAILABLE, result

        proxy.restore()
        department = client.get(f"{API}/livechat/department/{a}", headers=admin).json
        assert department["department"]["name"] == "A" and department["department"]["numAgents"] == 1
        assert [link["agentId"] for link in department["agents"]] == [agent_id]
        assert client.get(f"{API}/livechat/department/{b}", headers=admin).json["department"]["fallbackForwardDepartment"] == a
    finally:
        proxy.cut()
        db.dispose(app)
        direct.dispose()


# --- SQLite read-only ---------------------------------------------------------------------------


def test_a_read_only_sqlite_database_serves_reads_and_answers_writes_with_503(sqlite_template, tmp_path):
    path = tmp_path / "departments.db"
    shutil.copyfile(sqlite_template, path)
    writable = make_app(f"sqlite:///{path}")
    admin = admin_headers(writable.test_client())
    assert create(writable.test_client(), admin, "written before").status_code == 200
    db.dispose(writable)
    before = path.read_bytes()

    # SQLite's own read-only mode: root ignores file permissions, this it cannot ignore
    app = make_app_without_admin(f"sqlite:///file:{path}?mode=ro&uri=true")
    client = app.test_client()
    try:
        assert client.get(f"{API}/me", headers=admin).status_code == 200
        assert [d["name"] for d in client.get(f"{API}/livechat/department", headers=admin).json["departments"]] == [
            "written before"
        ]
        assert_503(create(client, admin, "refused"))
        assert_503(client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD}))
        assert_503(client.post(f"{API}/logout", headers=admin))
        assert client.get(f"{API}/me", headers=admin).status_code == 200  # the token is still there
    finally:
        db.dispose(app)
    assert department_names(f"sqlite:///{path}") == {"written before"}
    assert path.read_bytes() == before
    assert_sqlite_consistent(path)


def make_app_without_admin(url: str, **config: object) -> Flask:
    """An app that writes nothing at start (bootstrap_admin would write on an empty database)."""
    return create_app({"TESTING": True, "DATABASE_URL": url, **CHEAP_HASHING, **config})


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of the test's own (root only), unmounted at the end."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True)


def test_a_read_only_filesystem_gives_503_and_the_service_recovers_by_itself(sqlite_template, tmpfs):
    path = tmpfs / "departments.db"
    shutil.copyfile(sqlite_template, path)
    writable = make_app(f"sqlite:///{path}")
    admin = admin_headers(writable.test_client())
    assert create(writable.test_client(), admin, "before").status_code == 200
    db.dispose(writable)  # files closed: the kernel refuses to make a filesystem with writers read-only

    remount(tmpfs, "ro")
    with pytest.raises(OSError):
        (tmpfs / "probe").write_text("x")  # really read-only, for root too
    app = make_app_without_admin(f"sqlite:///{path}")
    client = app.test_client()
    try:
        assert_503(create(client, admin, "refused"))
        assert_503(client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD}))
        # a WAL database cannot even be read without its -shm file, which cannot be created here
        assert_503(client.get(f"{API}/livechat/department", headers=admin))

        remount(tmpfs, "rw")
        assert client.get(f"{API}/me", headers=admin).status_code == 200
        assert create(client, admin, "after").status_code == 200
    finally:
        db.dispose(app)
    assert department_names(f"sqlite:///{path}") == {"before", "after"}
    assert_sqlite_consistent(path)


# --- SQLite disk full -----------------------------------------------------------------------------


def fill_until_refused(client, headers, prefix: str, limit: int = 2000) -> tuple[list[str], object]:
    """Create departments with large descriptions until one is refused; return the accepted names
    and the refusal."""
    accepted = []
    for i in range(limit):
        name = f"{prefix}-{i}"
        response = create(client, headers, name, description="x" * 9000)
        if response.status_code != 200:
            return accepted, response
        accepted.append(name)
    raise AssertionError(f"{limit} departments fitted: the database never filled up")


def test_a_full_disk_gives_503_writes_nothing_and_recovers(sqlite_template, tmpfs):
    path = tmpfs / "departments.db"
    shutil.copyfile(sqlite_template, path)
    app = make_app(f"sqlite:///{path}")
    client = app.test_client()
    try:
        admin = admin_headers(client)
        accepted, refused = fill_until_refused(client, admin, "fill")
        assert_503(refused)
        assert len(accepted) > 10
        # reads still work on a full disk
        total = client.get(f"{API}/livechat/department?count=1", headers=admin).json["total"]
        assert total == len(accepted)

        remount(tmpfs, "size=16m")  # space is freed
        assert create(client, admin, "after").status_code == 200
    finally:
        db.dispose(app)
    assert department_names(f"sqlite:///{path}") == set(accepted) | {"after"}
    assert_sqlite_consistent(path)


def test_a_database_at_its_size_limit_gives_503_and_writes_nothing(sqlite_template, tmp_path):
    """The portable stand-in for a full disk: SQLite's own page limit, same error (SQLITE_FULL)."""
    path = tmp_path / "departments.db"
    shutil.copyfile(sqlite_template, path)
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    app = make_app(f"sqlite:///{path}")
    limit = {"pages": pages + 60}
    sa.event.listen(
        app.extensions["db.engine"], "connect", lambda conn, _record: conn.execute(f"PRAGMA max_page_count = {limit['pages']}")
    )
    client = app.test_client()
    try:
        admin = admin_headers(client)
        accepted, refused = fill_until_refused(client, admin, "fill")
        assert_503(refused)
        assert len(accepted) > 5

        limit["pages"] = pages + 10_000  # a larger limit on fresh connections: the "disk" has room again
        app.extensions["db.engine"].dispose()
        assert create(client, admin, "after").status_code == 200
    finally:
        db.dispose(app)
    assert department_names(f"sqlite:///{path}") == set(accepted) | {"after"}
    assert_sqlite_consistent(path)


# --- Graceful shutdown ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_sigterm_lets_a_request_in_flight_finish(sqlite_template, tmp_path):
    """A write waits for SQLite's lock (held by another connection); gunicorn gets SIGTERM
    meanwhile; the lock is released and the write still answers 200 and is kept."""
    path = tmp_path / "departments.db"
    shutil.copyfile(sqlite_template, path)
    password = "e2e-graceful-pass"
    server = Server(f"sqlite:///{path}", tmp_path / "gunicorn.log", password)
    server.env["SQLITE_BUSY_TIMEOUT_MS"] = "20000"
    server.start()
    try:
        headers = login(server.base, password)
        holder = sqlite3.connect(path, isolation_level=None, timeout=10)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write elsewhere would hold it
        result: dict[str, object] = {}

        def slow_write() -> None:
            try:
                body = {"department": department_fields(name="in flight")}
                response = requests.post(f"{server.base}/api/v1/livechat/department", json=body, headers=headers, timeout=60)
                result["status"], result["body"] = response.status_code, response.json()
            except Exception as error:  # noqa: BLE001 - reported below
                result["error"] = repr(error)

        writer = threading.Thread(target=slow_write)
        writer.start()
        time.sleep(1.5)  # the request is in a worker, waiting for the lock
        assert writer.is_alive()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert server.process.poll() is None, "gunicorn quit with a request in flight"
        holder.execute("COMMIT")
        holder.close()
        writer.join(timeout=30)
        assert result.get("status") == 200, result
        assert server.process.wait(timeout=30) == 0
    finally:
        server.stop()
    assert "in flight" in department_names(f"sqlite:///{path}")
    assert_sqlite_consistent(path)
