"""Crash safety: SIGKILL a real gunicorn (master and workers) in the middle of concurrent writes,
a few times, then prove that every write that was answered 200 is still there and that the
database is consistent.

Client threads create departments (with agents) and upsert agents into them over real HTTP on
127.0.0.1. At random moments the whole server is killed with SIGKILL, in one of three orders
(everything at once, the workers first, or the master first so orphaned workers die later),
and started again on the same port. The figures (acknowledged writes, found writes, writes
committed whose answer was lost) are printed; run with `-s` or `-rP` to see them.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from conftest import department_fields
from servers import GUNICORN, ROOT, free_port, login, server_url

import db

pytestmark = pytest.mark.e2e

CYCLES = 4  # kills per run
LOAD_SECONDS = (0.8, 2.5)  # writes between a start and the next kill (about 25 s per database in all)
CLIENTS = 6
AGENTS = 4
PASSWORD = "e2e-crash-pass"
START_TIMEOUT = 60


class KillableServer:
    """gunicorn in a process group of its own, so master and workers can be SIGKILLed together."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADMIN_PASS", "PORT", "HOST")}
        self.env.update(
            DATABASE_URL=database_url, ADMIN_PASS=PASSWORD, HOST="127.0.0.1", PORT=str(self.port), WEB_CONCURRENCY="3",
            ARGON2_TIME_COST="1", ARGON2_MEMORY_KIB="8", ARGON2_PARALLELISM="1", LOG_LEVEL="WARNING",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.base}/api/info", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.kill_all()
        pytest.fail(f"gunicorn did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def workers(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def crash(self, how: str, rng: random.Random) -> None:
        """SIGKILL, no chance to clean up: `all` at once, `workers` first, or `master` first."""
        assert self.process is not None
        if how == "workers":
            for pid in self.workers():
                os.kill(pid, signal.SIGKILL)
            time.sleep(rng.uniform(0.05, 0.4))  # the master may be forking replacements
        elif how == "master":
            self.process.kill()
            time.sleep(rng.uniform(0.05, 0.4))  # orphaned workers go on serving meanwhile
        self.kill_all()

    def kill_all(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group of the master we started
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every worker gone: nothing answers on the port
            try:
                requests.get(f"{self.base}/api/info", timeout=0.5)
            except requests.ConnectionError:
                return
            time.sleep(0.05)
        raise AssertionError("the server still answers after SIGKILL")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self.process = None


class Load:
    """Client threads writing as fast as the server answers; only 200s are acknowledged."""

    def __init__(self, base: str, headers: dict[str, str], agents: list[str], seed: int) -> None:
        self.base, self.headers, self.agents, self.seed = base, headers, agents, seed
        self.departments: dict[str, tuple[str, set[str]]] = {}  # acknowledged: id -> (name, agents)
        self.links: set[tuple[str, str]] = set()  # acknowledged (department, agent)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.unexpected: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.stop.clear()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _client(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        mine: list[str] = []
        sequence = 0
        while not self.stop.is_set():
            try:
                if not mine or rng.random() < 0.5:
                    sequence += 1
                    name = f"crash-{self.seed}-{index}-{sequence}"
                    agents = rng.sample(self.agents, rng.randint(0, 2))
                    body = {"department": department_fields(name=name), "agents": [{"agentId": a} for a in agents]}
                    response = requests.post(f"{self.base}/api/v1/livechat/department", json=body, headers=self.headers, timeout=10)
                    if response.status_code == 200:
                        department = response.json()["department"]["_id"]
                        with self.lock:
                            self.departments[department] = (name, set(agents))
                            self.links |= {(department, agent) for agent in agents}
                        mine.append(department)
                    kind = "create"
                else:
                    department, agent = rng.choice(mine), rng.choice(self.agents)
                    body = {"upsert": [{"agentId": agent}], "remove": []}
                    path = f"{self.base}/api/v1/livechat/department/{department}/agents"
                    response = requests.post(path, json=body, headers=self.headers, timeout=10)
                    if response.status_code == 200:
                        with self.lock:
                            self.links.add((department, agent))
                    kind = "upsert"
            except requests.RequestException:
                with self.lock:
                    self.outcomes["no answer (server down or killed mid-request)"] += 1
                time.sleep(0.02)
                continue
            with self.lock:
                self.outcomes[f"{kind} {response.status_code}"] += 1
                if response.status_code != 200:
                    self.unexpected.append((response.status_code, response.text[:200]))


def setup_agents(base: str, headers: dict[str, str]) -> list[str]:
    ids = []
    for i in range(AGENTS):
        body = {"username": f"agent{i}", "email": f"agent{i}@example.com", "name": f"Agent {i}", "password": "pw-agent"}
        created = requests.post(f"{base}/api/v1/users.create", json=body, headers=headers, timeout=10)
        assert created.status_code == 200, created.text
        role = requests.post(f"{base}/api/v1/livechat/users/agent", json={"username": body["username"]}, headers=headers, timeout=10)
        assert role.status_code == 200, role.text
        ids.append(created.json()["user"]["_id"])
    return ids


def read_back(database_url: str) -> dict[str, Any]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            departments = {row.id: (row.name, row.num_agents) for row in conn.execute(sa.text("SELECT id, name, num_agents FROM departments"))}
            links = [(row.department_id, row.agent_id) for row in conn.execute(sa.text("SELECT department_id, agent_id FROM department_agents"))]
            users = set(conn.execute(sa.text("SELECT id FROM users")).scalars())
    finally:
        engine.dispose()
    return {"departments": departments, "links": links, "users": users}


def test_sigkill_during_concurrent_writes_loses_nothing_acknowledged(empty_database_url, backend, tmp_path):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    url = server_url(empty_database_url)
    server = KillableServer(url, tmp_path / "gunicorn.log")
    started = time.monotonic()
    server.start()
    try:
        headers = login(server.base, PASSWORD)
        load = Load(server.base, headers, setup_agents(server.base, headers), seed)
        crashes = []
        load.start()
        for _cycle in range(CYCLES):
            time.sleep(rng.uniform(*LOAD_SECONDS))
            how = rng.choice(["all", "workers", "master"])
            server.crash(how, rng)
            crashes.append(how)
            time.sleep(rng.uniform(0.0, 0.5))  # clients find nobody listening
            server.start()
        time.sleep(rng.uniform(*LOAD_SECONDS))
        load.finish()

        # Through the restarted server: everything acknowledged is listed, agents included.
        listed = requests.get(f"{server.base}/api/v1/livechat/department?count=0", headers=headers, timeout=30).json()
        listed_ids = {d["_id"] for d in listed["departments"]}
        sample = rng.sample(sorted(load.departments), min(20, len(load.departments)))
        for department in sample:
            body = requests.get(f"{server.base}/api/v1/livechat/department/{department}", headers=headers, timeout=10).json()
            assert body["department"]["name"] == load.departments[department][0]
            expected = {agent for d, agent in load.links if d == department}
            assert {a["agentId"] for a in body["agents"]} >= expected
    finally:
        server.stop()
    elapsed = time.monotonic() - started

    found = read_back(empty_database_url)
    departments, links = found["departments"], found["links"]
    missing_departments = {d for d in load.departments if d not in departments}
    renamed = {d for d, (name, _agents) in load.departments.items() if d in departments and departments[d][0] != name}
    missing_links = load.links - set(links)
    print(
        f"\ncrash safety [{backend}] seed={seed} kills={crashes} in {elapsed:.1f}s: "
        f"departments acknowledged {len(load.departments)}, found {len(load.departments) - len(missing_departments)} "
        f"(+{len(departments) - len(load.departments) + len(missing_departments)} committed without an answer); "
        f"agent links acknowledged {len(load.links)}, found {len(load.links) - len(missing_links)} "
        f"(+{len(set(links) - load.links)} unacknowledged); outcomes {dict(load.outcomes)}"
    )
    assert len(load.departments) > 50 and len(crashes) == CYCLES, "too little load to prove anything"
    assert not missing_departments and not renamed and not missing_links
    assert listed_ids == set(departments)
    assert all(status == 503 for status, _ in load.unexpected), load.unexpected[:5]  # never a 500 or a 4xx

    # Consistency: numAgents is the number of links, every link points at rows that exist, no duplicates.
    per_department = collections.Counter(d for d, _agent in links)
    wrong_counts = {d: (num, per_department[d]) for d, (_name, num) in departments.items() if (num or 0) != per_department[d]}
    assert wrong_counts == {}
    assert [link for link in links if link[0] not in departments or link[1] not in found["users"]] == []
    assert len(links) == len(set(links))
    if backend == "sqlite":
        path = sa.make_url(empty_database_url).database
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
