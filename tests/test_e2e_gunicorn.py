"""The real server: `gunicorn -c gunicorn.conf.py app:app` from the project root, over real HTTP.

Each test starts gunicorn (two gthread workers, the default configuration) on a database of its own,
on a free port below 32768 (the ephemeral range above it is busy with client sockets),
and always stops it again.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from servers import Server, login, server_url

pytestmark = pytest.mark.e2e

GENERATED = re.compile(r"created admin user 'admin' with generated password: (\S+)")


def admins(empty_database_url: str) -> list[str]:
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT user_id FROM user_roles WHERE role_id = 'admin'")).scalars().all()
    finally:
        engine.dispose()


def test_serves_over_http_and_a_restart_changes_nothing(empty_database_url, tmp_path):
    password = "e2e-admin-pass-1"
    log = tmp_path / "gunicorn.log"
    with Server(server_url(empty_database_url), log, password) as server:
        headers = login(server.base, password)
        me = requests.get(f"{server.base}/api/v1/me", headers=headers, timeout=10)
        assert me.status_code == 200
        assert me.headers["Content-Type"] == "application/json"
        assert me.json()["_id"] == headers["X-User-Id"]
        assert me.json()["username"] == "admin" and me.json()["roles"] == ["admin"]
        body = {"username": "bob", "email": "bob@example.com", "name": "Bob", "password": "pw-bob"}
        assert requests.post(f"{server.base}/api/v1/users.create", json=body, headers=headers, timeout=10).status_code == 200
        # errors are JSON over the wire too
        missing = requests.get(f"{server.base}/api/v1/nope", timeout=10)
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
        assert missing.json() == {"success": False, "error": "Resource not found"}
    first_admins = admins(empty_database_url)
    assert first_admins == [headers["X-User-Id"]]
    assert "generated password" not in server.output()
    assert password not in server.output()

    with Server(server_url(empty_database_url), log, password) as server:
        again = login(server.base, password)
        assert again["X-User-Id"] == headers["X-User-Id"]
        # the token of the first run still works; bob is still there
        assert requests.get(f"{server.base}/api/v1/me", headers=headers, timeout=10).status_code == 200
        users = requests.get(f"{server.base}/api/v1/users.list", headers=again, timeout=10).json()
        assert sorted(u["username"] for u in users["users"]) == ["admin", "bob"]
        assert [u["_id"] for u in users["users"] if "admin" in u["roles"]] == first_admins
    assert admins(empty_database_url) == first_admins
    assert server.output().count("Booting worker") == 4  # both runs really started their workers


def test_changes_reach_every_worker(empty_database_url, tmp_path):
    """Two workers, each with its own read caches: a logout or permission change made through
    one is seen by the next request in the other."""
    password = "e2e-admin-pass-2"
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", password) as server:
        admin = login(server.base, password)
        doomed = login(server.base, password)

        def answering_pids(status: int) -> set[str]:
            lines = re.findall(rf"access pid=<(\d+)> GET /api/v1/me {status}", server.output())
            return set(lines)

        def from_eight_clients(check) -> None:  # noqa: ANN001
            # Eight clients at once, each on new connections: both workers accept some, so both
            # answer (one client alone may be served by the same worker every time).
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: check(), range(16)))

        def allowed() -> None:
            assert requests.get(f"{server.base}/api/v1/me", headers=doomed, timeout=10).status_code == 200
            assert requests.get(f"{server.base}/api/v1/users.list", headers=admin, timeout=10).status_code == 200

        def refused() -> None:
            assert requests.get(f"{server.base}/api/v1/me", headers=doomed, timeout=10).status_code == 401
            assert requests.get(f"{server.base}/api/v1/users.list", headers=admin, timeout=10).status_code == 403

        for _ in range(10):  # warm both workers' caches
            from_eight_clients(allowed)
            if len(answering_pids(200)) == 2:
                break
        assert len(answering_pids(200)) == 2, "one worker answered every request"

        assert requests.post(f"{server.base}/api/v1/logout", headers=doomed, timeout=10).status_code == 200
        change = {"permissions": [{"_id": "view-user-administration", "roles": []}]}
        assert requests.post(f"{server.base}/api/v1/permissions.update", json=change, headers=admin, timeout=10).status_code == 200
        for _ in range(10):
            from_eight_clients(refused)
            if answering_pids(401) == answering_pids(200):
                break
        assert answering_pids(401) == answering_pids(200)  # both workers saw the change


def test_generated_admin_password_is_logged_once_and_works(empty_database_url, tmp_path):
    log = tmp_path / "gunicorn.log"
    with Server(server_url(empty_database_url), log, None) as server:
        found = GENERATED.findall(server.output())
        assert len(found) == 1, server.output()[-3000:]
        generated = found[0]
        headers = login(server.base, generated)
        wrong = requests.post(f"{server.base}/api/v1/login", json={"user": "admin", "password": "admin"}, timeout=10)
        assert wrong.status_code == 401
    first_log = server.output()

    with Server(server_url(empty_database_url), log, None) as server:
        assert login(server.base, generated)["X-User-Id"] == headers["X-User-Id"]
    second_log = server.output()[len(first_log):]
    assert "Booting worker" in second_log
    assert "generated password" not in second_log  # printed on the start that created the admin only
    assert GENERATED.findall(server.output()) == [generated]
    assert admins(empty_database_url) == [headers["X-User-Id"]]


SLOW_CLIENTS = 20


def test_slow_clients_do_not_stall_other_requests(tmp_path):
    """Issue 14 item 9: with the default configuration, 20 connections that send their headers and
    then trickle the body must not delay a normal request by more than a second. Bounded: every
    socket has a timeout, the trickling stops after the checks, and the whole test takes ~10 s."""
    password = "e2e-slow-pass-1"
    with Server(f"sqlite:///{tmp_path / 'slow.db'}", tmp_path / "gunicorn.log", password) as server:
        host, port = server.base.removeprefix("http://").split(":")
        slow = []
        head = "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(head.encode())
            slow.append(sock)
        stop = threading.Event()

        def trickle() -> None:  # one more byte of each body every 0.2 s, for at most 20 s
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b" ")
                stop.wait(0.2)

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(1)  # the slow requests have reached the workers
            delays = []
            for path in ("/healthz", "/api/info", "/healthz", "/api/info", "/healthz"):
                started = time.monotonic()
                response = requests.get(f"{server.base}{path}", timeout=5)
                delays.append(time.monotonic() - started)
                assert response.status_code == 200
            assert max(delays) < 1.0, delays
            token = login(server.base, password)  # a write request too (a login opens a token)
            assert requests.get(f"{server.base}/api/v1/me", headers=token, timeout=5).status_code == 200
        finally:
            stop.set()
            trickler.join(timeout=5)
            for sock in slow:
                sock.close()
