"""The real server: `gunicorn -c gunicorn.conf.py app:app` from the project root, over real HTTP.

Each test starts gunicorn (two sync workers) on a database of its own, on a free port below
32768 (the ephemeral range above it is busy with client sockets),
and always stops it again.
"""

from __future__ import annotations

import re
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
            # Eight clients at once: while one sync worker is busy the other accepts, so both
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
