"""A real gunicorn for end-to-end tests: `gunicorn -c gunicorn.conf.py app:app` from the project
root, on a free port below 32768 (the ephemeral range above it is busy with client sockets),
always stopped again."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
START_TIMEOUT = 60


def stop_process(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Terminate (a graceful stop), then kill if it has not exited within `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


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
        stop_process(self.process, grace=20)
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


