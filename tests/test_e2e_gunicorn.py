"""The real server: `gunicorn -c gunicorn.conf.py app:app` from the project root, over real HTTP.

Each test starts gunicorn (two sync workers) on a database of its own, on a free port below
32768 (the ephemeral range above it is busy with client sockets, see notes/ecosystem.md §6.1),
and always stops it again.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
GENERATED = re.compile(r"created admin user 'admin' with generated password: (\S+)")
START_TIMEOUT = 60


def free_port() -> int:
    for _ in range(500):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


class Server:
    """One gunicorn run: started on a free port, waited for, stopped (terminate, then kill)."""

    def __init__(self, database_url: str, log: Path, admin_pass: str | None) -> None:
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADMIN_PASS", "PORT", "HOST")}
        self.env.update(
            DATABASE_URL=database_url,
            HOST="127.0.0.1",
            WEB_CONCURRENCY="2",
            ARGON2_TIME_COST="1",
            ARGON2_MEMORY_KIB="8",
            ARGON2_PARALLELISM="1",
            LOG_LEVEL="INFO",
            # the worker's pid in each access-log line: tests can tell which worker answered
            GUNICORN_CMD_ARGS="--access-logformat 'access pid=%(p)s %(m)s %(U)s %(s)s'",
        )
        if admin_pass is not None:
            self.env["ADMIN_PASS"] = admin_pass
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> Server:
        for _attempt in range(3):
            port = free_port()
            self.env["PORT"] = str(port)
            self.base = f"http://127.0.0.1:{port}"
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                )
            if self._wait_until_answering():
                return self
            self.stop()
            if "Address already in use" not in self.output():
                break  # a real failure, not a port taken in the meantime
        pytest.fail(f"gunicorn did not start:\n{self.output()[-3000:]}")

    def _wait_until_answering(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.base}/api/info", timeout=2).status_code == 200:
                    return True
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def server_url(empty_database_url: str) -> str:
    # Hand the server the spelling hosting platforms use (db.normalise_url adds the driver).
    return empty_database_url.replace("postgresql+psycopg://", "postgresql://")


def login(base: str, password: str) -> dict[str, str]:
    response = requests.post(f"{base}/api/v1/login", json={"user": "admin", "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()["data"]
    return {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}


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

        # warm both workers' caches (new connections each time: the kernel spreads them)
        for _ in range(100):
            assert requests.get(f"{server.base}/api/v1/me", headers=doomed, timeout=10).status_code == 200
            assert requests.get(f"{server.base}/api/v1/users.list", headers=admin, timeout=10).status_code == 200
            if len(answering_pids(200)) == 2:
                break
        assert len(answering_pids(200)) == 2, "one worker answered every request"

        assert requests.post(f"{server.base}/api/v1/logout", headers=doomed, timeout=10).status_code == 200
        change = {"permissions": [{"_id": "view-user-administration", "roles": []}]}
        assert requests.post(f"{server.base}/api/v1/permissions.update", json=change, headers=admin, timeout=10).status_code == 200
        for _ in range(100):
            assert requests.get(f"{server.base}/api/v1/me", headers=doomed, timeout=10).status_code == 401
            assert requests.get(f"{server.base}/api/v1/users.list", headers=admin, timeout=10).status_code == 403
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
