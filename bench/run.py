#!/usr/bin/env python3
"""Benchmark harness of the departments service (see bench/README.md).

    .venv/bin/python bench/run.py [--mode ratios|growth|writes|profile|etag|all] [--rounds 3] [--duration 5]
                                  [--database-url postgresql://user@host/db]

Modes:
  ratios   The real service (`gunicorn -c gunicorn.conf.py app:app`) against a reference ceiling
           (bench/ceiling_app.py: a bare Flask app serving the service's own captured bodies, no
           database, no auth) under the same gunicorn settings, alternating round by round, for
           the `list`, `get` and `mixed` workloads. The last line printed is
           `ratio_list=… ratio_get=… ratio_mixed=…` (medians of the per-round ratios).
  growth   For 1k/10k/100k departments: p50/p99 of the default list, a text search, a deep
           offset and GET one, and the resident memory of each gunicorn worker.
  writes   4 workers x 16 connections creating and updating departments, then a check that no
           update was lost and that every create answered 2xx (and no other) is in the database.
  profile  Where the time goes in one list and one get request, in-process (app.test_client()),
           with cProfile and, when installed, pyinstrument.
  etag     GET one revalidated with If-None-Match (304) against the cached 200, and creates with
           an Idempotency-Key against creates without (docs/etags-and-idempotency.md).
  all      ratios, growth and writes (the ratio line is printed again last).

Databases: a fresh SQLite file per data set in a temporary directory by default; with
--database-url a fresh PostgreSQL schema of our own per data set (`<prefix>_<pid>_<tag>`, prefix
from the URL's `options=-csearch_path=<prefix>` or "bench"), dropped at the end. Data is seeded
directly with SQLAlchemy after the migrations (HTTP would be far too slow for 100k departments).
Every wrk run is bounded by -d and a subprocess timeout; servers are always stopped in `finally`.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import http.client
import io
import json
import os
import pstats
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import account_service  # noqa: E402
import cli  # noqa: E402
import db as appdb  # noqa: E402
import models  # noqa: E402

WRK_INSTALL_HINT = (
    "wrk is not installed. On Debian/Ubuntu: `apt-get update && apt-get install -y wrk` "
    "(elsewhere build it from https://github.com/wg/wrk), or point --wrk at the binary."
)
ADMIN_USER = "admin"
ADMIN_PASS = "bench-admin-password"
API = "/api/v1/livechat"
LIST_TARGET = f"{API}/department?count=50"

# Seeded names are "<Adjective> <Noun> <number>": a `text` search for a noun matches ~10% of them.
ADJECTIVES = ["Alpha", "Blue", "Central", "Delta", "Eastern", "Global", "Northern", "Premium", "Southern", "Western"]
NOUNS = ["Billing", "Claims", "Escalations", "Onboarding", "Partners", "Refunds", "Renewals", "Sales", "Support", "Training"]
TEXT_TERM = "support"


class BenchError(RuntimeError):
    """A failure of the bench itself or of the service under test (exit status 1)."""


def log(message: str = "") -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------
# Databases and seeding
# ---------------------------------------------------------------------------


class BenchDatabase:
    """A fresh database for one data set: a SQLite file in the work directory, or a PostgreSQL
    schema of our own. `drop()` removes exactly what `__init__` created, nothing else."""

    def __init__(self, base_url: str | None, workdir: Path, tag: str) -> None:
        self.schema: str | None = None
        if base_url is None:
            self.path = workdir / f"{tag}.db"
            self.url = f"sqlite:///{self.path}"
            self.kind = "sqlite"
            return
        url = appdb.normalise_url(base_url)
        if url.get_backend_name() != "postgresql":
            raise BenchError(f"--database-url must be a PostgreSQL URL, not {url.get_backend_name()}")
        match = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", url.query.get("options", "") or "")
        prefix = (match.group(1) if match else "bench").lower()
        self.schema = f"{prefix}_{os.getpid()}_{tag}".lower()
        self.base = url.difference_update_query(["options"])
        query = {"options": f"-csearch_path={self.schema}"}
        if url.query.get("application_name"):  # each database's connections told apart (ServiceCpu)
            query["application_name"] = f"{url.query['application_name']}_{tag}"[:63]
        self.url = self.base.update_query_dict(query).render_as_string(hide_password=False)
        self.kind = "postgresql"
        engine = sa.create_engine(self.base)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        finally:
            engine.dispose()

    def drop(self) -> None:
        if self.schema is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return
        engine = sa.create_engine(self.base)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        finally:
            engine.dispose()


@dataclass
class SeedInfo:
    n: int
    ids: list[str]  # every department, insertion order
    visible_sorted: list[str]  # not archived, in the list's default order (name, _id)
    num_agents: dict[str, int]
    agent_ids: list[str]
    get_id: str  # enabled, not archived, exactly 3 agents: the `get` workload's department
    seconds: float = 0.0


def _hex_id(rng: random.Random, stamp: int) -> str:
    return f"{stamp:08x}{rng.getrandbits(64):016x}"


def seed_database(url: str, n: int, *, n_agents: int = 100, rng_seed: int = 42) -> SeedInfo:
    """Migrate, create the admin (account_service.bootstrap_admin), then bulk-insert `n_agents` agent users
    and `n` departments with 0-5 agent links each (num_agents and name_folded set as the service
    sets them). Deterministic for a given seed."""
    started = time.monotonic()
    cli.upgrade_database(url)
    engine = appdb.make_engine(url)
    rng = random.Random(rng_seed)
    now = models.utcnow()
    stamp = int(now.timestamp()) - n  # ObjectId-like ids, time prefix increasing with the row
    try:
        with Session(engine) as session:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            account_service.bootstrap_admin(session, ADMIN_USER, ADMIN_PASS, "admin@localhost")

        users, roles, agent_ids, usernames = [], [], [], {}
        for i in range(n_agents):
            uid = "".join(rng.choice(models.METEOR_ID_ALPHABET) for _ in range(17))
            username = f"agent{i:04d}"
            agent_ids.append(uid)
            usernames[uid] = username
            users.append(
                {
                    "id": uid, "username": username, "name": f"Agent {i}", "email": f"{username}@bench.example",
                    "email_verified": False, "password_hash": None, "active": True, "status": "online",
                    "status_livechat": "available", "created_at": now, "updated_at": now,
                }
            )
            roles.append({"user_id": uid, "role_id": "livechat-agent"})

        ids: list[str] = []
        names: dict[str, str] = {}
        archived_ids: set[str] = set()
        num_agents: dict[str, int] = {}
        enabled_ids: set[str] = set()
        department_table = models.Department.__table__
        link_table = models.DepartmentAgent.__table__
        with engine.begin() as conn:
            conn.execute(models.User.__table__.insert(), users)
            conn.execute(models.UserRole.__table__.insert(), roles)
            chunk = 5000
            for start in range(0, n, chunk):
                departments, links = [], []
                for i in range(start, min(n, start + chunk)):
                    dep_id = _hex_id(rng, stamp + i)
                    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i:06d}"
                    archived = rng.random() < 0.02
                    enabled = (not archived) and rng.random() < 0.9
                    agents = rng.sample(agent_ids, rng.randint(0, 5))
                    ids.append(dep_id)
                    names[dep_id] = name
                    num_agents[dep_id] = len(agents)
                    if archived:
                        archived_ids.add(dep_id)
                    if enabled:
                        enabled_ids.add(dep_id)
                    departments.append(
                        {
                            "id": dep_id, "name": name, "name_folded": name.casefold(),
                            "email": f"dep{i:06d}@bench.example", "enabled": enabled,
                            "show_on_registration": rng.random() < 0.8,
                            "show_on_offline_form": rng.choice([True, False, None]),
                            "description": f"Handles {name.lower()} requests" if rng.random() < 0.5 else None,
                            "request_tag_before_closing_chat": None, "chat_closing_tags": None,
                            "fallback_forward_department": None, "departments_allowed_to_forward": None,
                            "allow_receive_forward_offline": None, "offline_message_channel_name": None,
                            "abandoned_rooms_close_custom_message": None, "waiting_queue_message": None,
                            "num_agents": len(agents), "archived": True if archived else None, "type": None,
                            "extra": {"priority": rng.randint(1, 5)} if rng.random() < 0.05 else {},
                            "updated_at": now - timedelta(seconds=n - i),
                        }
                    )
                    for agent in agents:
                        links.append(
                            {
                                "id": _hex_id(rng, stamp + i), "department_id": dep_id, "agent_id": agent,
                                "username": usernames[agent], "department_enabled": enabled,
                                "count": 0, "order": 0, "updated_at": now,
                            }
                        )
                conn.execute(department_table.insert(), departments)
                if links:
                    conn.execute(link_table.insert(), links)
        if appdb.is_sqlite(engine):
            raw = engine.raw_connection()  # autocommit (the service's connect hook): no open transaction
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        else:
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))  # autovacuum would do it within a minute anyway
    finally:
        engine.dispose()

    visible = sorted((names[i], i) for i in ids if i not in archived_ids)
    visible_sorted = [i for _, i in visible]
    middle = visible_sorted[len(visible_sorted) // 2 :] + visible_sorted[: len(visible_sorted) // 2]
    get_id = next(i for i in middle if num_agents[i] == 3 and i in enabled_ids)
    return SeedInfo(n, ids, visible_sorted, num_agents, agent_ids, get_id, time.monotonic() - started)


# ---------------------------------------------------------------------------
# HTTP, servers, wrk
# ---------------------------------------------------------------------------


def http_request(
    port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes | None = None,
    timeout: float = 60,
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def free_port() -> int:
    """A free TCP port below 32768 (the ephemeral range above it is busy on this host)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port found in 20000-32000")


class Server:
    """A gunicorn master started in its own session; stop() signals that process group only."""

    def __init__(self, name: str, config: Path, app_spec: str, *, workers: int, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.workers = workers
        self.argv = [sys.executable, "-m", "gunicorn", "-c", str(config), app_spec]
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": str(workers)}
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, ready_path: str = "/api/info", timeout: float = 120) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                status, _, _ = http_request(self.port, "GET", ready_path, timeout=5)
                if status == 200 and len(self.worker_pids()) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the children of the master."""
        if self.proc is None:
            return []
        children_file = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return sorted(int(p) for p in children_file.read_text().split())
        except OSError:
            pass
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(entry.name))
        return sorted(pids)

    def rss_mib(self) -> dict[int, float]:
        """VmRSS of each worker, in MiB."""
        result = {}
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        result[pid] = int(line.split()[1]) / 1024
            except OSError:
                continue
        return result

    def stop(self) -> None:
        """SIGTERM to our own process group (gunicorn finishes in-flight requests), SIGKILL after 40 s."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def start_service(workdir: Path, database_url: str, workers: int, tag: str, env: dict[str, str] | None = None) -> Server:
    server = Server(
        f"service-{tag}", ROOT / "gunicorn.conf.py", "app:app", workers=workers, workdir=workdir,
        env={"DATABASE_URL": database_url, "ADMIN_PASS": ADMIN_PASS, "ADMIN_USERNAME": ADMIN_USER, **(env or {})},
    )
    server.start()
    return server


def login(port: int) -> dict[str, str]:
    body = json.dumps({"user": ADMIN_USER, "password": ADMIN_PASS}).encode()
    status, _, raw = http_request(port, "POST", "/api/v1/login", {"Content-Type": "application/json"}, body)
    if status != 200:
        raise BenchError(f"login failed: {status} {raw[:300]!r}")
    data = json.loads(raw)["data"]
    return {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}


@dataclass
class WrkResult:
    raw: dict[str, Any]
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int

    def line(self) -> str:
        extra = ""
        if self.non2xx or self.socket_errors:
            extra = f"  NON-2XX={self.non2xx} SOCKET-ERRORS={self.socket_errors} statuses={self.raw['statuses']}"
        return f"{self.rps:9.1f} req/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms{extra}"


class Wrk:
    def __init__(self, binary: str, threads: int, connections: int, timeout_s: int) -> None:
        self.binary = binary
        self.threads = threads
        self.connections = connections
        self.timeout_s = timeout_s

    def run(
        self, port: int, target: str, script: str, duration: float, *, auth: dict[str, str] | None = None,
        env: dict[str, str] | None = None, threads: int | None = None, connections: int | None = None,
    ) -> WrkResult:
        threads = threads or self.threads
        connections = connections or self.connections
        full_env = {
            **os.environ,
            "LUA_PATH": f"{BENCH}/?.lua;;",
            "BENCH_USER_ID": (auth or {}).get("X-User-Id", ""),
            "BENCH_TOKEN": (auth or {}).get("X-Auth-Token", ""),
            **(env or {}),
        }
        cmd = [
            self.binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={self.timeout_s}s", "-s", str(BENCH / script), f"http://127.0.0.1:{port}{target}",
        ]
        try:
            proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=duration + self.timeout_s + 30)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk did not finish in time: {' '.join(cmd)}") from exc
        lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
        if proc.returncode != 0 or not lines:
            raise BenchError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        raw = json.loads(lines[-1][len("BENCH_RESULT ") :])
        seconds = raw["duration_us"] / 1e6
        errors = raw["errors"]
        latency = raw["latency_us"]
        return WrkResult(
            raw=raw,
            rps=raw["requests"] / seconds if seconds else 0.0,
            p50_ms=latency["p50"] / 1000,
            p99_ms=latency["p99"] / 1000,
            requests=raw["requests"],
            non2xx=raw["non2xx"],
            socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        )


def find_wrk(explicit: str | None) -> str:
    path = explicit or shutil.which("wrk")
    if not path or not os.access(path, os.X_OK):
        raise SystemExit(WRK_INSTALL_HINT)
    return path


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ---------------------------------------------------------------------------
# Mode: ratios (service vs ceiling)
# ---------------------------------------------------------------------------


@dataclass
class Mix:
    reads: list[str]  # distinct read targets
    writes: list[dict[str, str]]  # {"m", "p", "k", "a"?}
    sequence: list[dict[str, str]]  # the 1000-request cycle the Lua script walks


def build_mix(info: SeedInfo, rng: random.Random, size: int = 1000, write_share: float = 0.10) -> Mix:
    """90% reads over random pages, filters and ids; 10% writes (create, update, agents upsert).

    Updates and agent upserts touch only a pool of departments at the end of the name order (not
    on the first pages, not the `get` department), and creates sort after every seeded name, so
    the pages the other workloads read keep their bodies."""
    visible = info.visible_sorted
    n = len(visible)
    reads: set[str] = set()
    words = [w.lower() for w in NOUNS + ADJECTIVES]
    sorts = ['{"name":-1}', '{"numAgents":-1}', '{"_updatedAt":-1}', '{"email":1}']
    while len(reads) < 120:  # pages
        reads.add(f"{API}/department?" + urlencode({"offset": rng.randrange(0, max(1, n - 10)), "count": rng.choice([10, 25, 50])}))
    while len(reads) < 200:  # filters
        params: dict[str, Any] = {"text": rng.choice(words)[: rng.randint(3, 8)]}
        if rng.random() < 0.4:
            params["enabled"] = "true"
        if rng.random() < 0.3:
            params["sort"] = rng.choice(sorts)
        if rng.random() < 0.2:
            params["showArchived"] = "true"
        params["offset"] = rng.choice([0, 0, 0, 25, 50])
        params["count"] = rng.choice([10, 25, 50])
        reads.add(f"{API}/department?" + urlencode(params, quote_via=quote))
    while len(reads) < 360:  # ids (archived ones too)
        reads.add(f"{API}/department/{rng.choice(info.ids)}")
    while len(reads) < 400:  # a department's agents
        reads.add(f"{API}/department/{rng.choice(info.ids)}/agents")
    read_list = sorted(reads)

    pool = [i for i in visible[-60:] if i != info.get_id]
    writes = []
    n_writes = round(size * write_share)
    for k in range(n_writes):
        kind = ("create", "update", "agents")[k % 3]
        if kind == "create":
            writes.append({"m": "POST", "p": f"{API}/department", "k": "create"})
        elif kind == "update":
            writes.append({"m": "PUT", "p": f"{API}/department/{rng.choice(pool)}", "k": "update"})
        else:
            writes.append(
                {"m": "POST", "p": f"{API}/department/{rng.choice(pool)}/agents", "k": "agents", "a": rng.choice(info.agent_ids)}
            )
    n_reads = size - n_writes
    read_seq = (read_list * (n_reads // len(read_list) + 1))[:n_reads]
    sequence = [{"m": "GET", "p": p, "k": "read"} for p in read_seq] + writes
    rng.shuffle(sequence)
    return Mix(read_list, writes, sequence)


def write_mix_lua(mix: Mix, path: Path) -> None:
    lines = ["MIX = {"]
    for r in mix.sequence:
        fields_ = ", ".join(f"{k} = {lua_string(v)}" for k, v in r.items())
        lines.append(f"  {{ {fields_} }},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


WRITE_SAMPLES = {
    "create": lambda: json.dumps(
        {"department": {"name": "zz bench capture", "email": "capture@bench.example", "enabled": True, "showOnRegistration": True}}
    ),
    "update": lambda: json.dumps({"department": {"description": "bench capture"}}),
    "agents": lambda a: json.dumps({"upsert": [{"agentId": a, "count": 0, "order": 0}], "remove": []}),
}


def capture_bodies(port: int, auth: dict[str, str], reads: list[str], mix: Mix) -> dict[str, list[Any]]:
    """The service's real answers: one real write of each kind first (its body answers every write
    of that kind in the ceiling), then every read target (after the writes, so the bodies are current)."""
    table: dict[str, list[Any]] = {}
    write_json = {**auth, "Content-Type": "application/json"}
    by_kind: dict[str, tuple[int, str, bytes]] = {}
    for w in mix.writes:
        if w["k"] in by_kind:
            continue
        body = WRITE_SAMPLES[w["k"]](w["a"]) if w["k"] == "agents" else WRITE_SAMPLES[w["k"]]()
        status, ctype, raw = http_request(port, w["m"], w["p"], write_json, body.encode())
        if not 200 <= status < 300:
            raise BenchError(f"capture: {w['m']} {w['p']} answered {status}: {raw[:300]!r}")
        by_kind[w["k"]] = (status, ctype, raw)
    for w in mix.writes:
        status, ctype, raw = by_kind[w["k"]]
        table[f"{w['m']} {w['p']}"] = [status, ctype, base64.b64encode(raw).decode()]
    for target in ["/api/info", *reads]:
        status, ctype, raw = http_request(port, "GET", target, auth)
        if not 200 <= status < 300:
            raise BenchError(f"capture: GET {target} answered {status}: {raw[:300]!r}")
        table[f"GET {target}"] = [status, ctype, base64.b64encode(raw).decode()]
    return table


def verify_identical(service_port: int, ceiling_port: int, auth: dict[str, str], targets: list[str]) -> None:
    for target in targets:
        a = http_request(service_port, "GET", target, auth)
        b = http_request(ceiling_port, "GET", target)
        if a != b:
            raise BenchError(f"ceiling body differs from the service's for GET {target}: {a[:2]} {len(a[2])} B vs {b[:2]} {len(b[2])} B")


def mode_ratios(args: argparse.Namespace, wrk: Wrk, workdir: Path) -> dict[str, Any]:
    log(f"== ratios: {args.departments} departments on {'PostgreSQL' if args.database_url else 'SQLite'}, "
        f"{args.workers} workers, wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds ==")
    database = BenchDatabase(args.database_url, workdir, "ratios")
    service = ceiling = None
    failures: list[str] = []
    try:
        info = seed_database(database.url, args.departments)
        log(f"seeded {args.departments} departments ({sum(info.num_agents.values())} agent links) in {info.seconds:.1f}s; "
            f"get target {info.get_id} ({info.num_agents[info.get_id]} agents)")
        service = start_service(workdir, database.url, args.workers, "ratios")
        auth = login(service.port)
        get_target = f"{API}/department/{info.get_id}"
        mix = build_mix(info, random.Random(7))
        reads = [LIST_TARGET, get_target, *mix.reads]
        table = capture_bodies(service.port, auth, reads, mix)
        bodies_path = workdir / "ceiling_bodies.json"
        bodies_path.write_text(json.dumps(table))
        mix_path = workdir / "mixed_requests.lua"
        write_mix_lua(mix, mix_path)
        sizes = {t: len(base64.b64decode(table[f"GET {t}"][2])) for t in (LIST_TARGET, get_target)}
        log(f"captured {len(table)} bodies (list {sizes[LIST_TARGET]} B, get {sizes[get_target]} B)")

        ceiling = Server(
            "ceiling", BENCH / "gunicorn_ceiling.conf.py", "bench.ceiling_app:app", workers=args.workers,
            workdir=workdir, env={"CEILING_BODIES": str(bodies_path)},
        )
        ceiling.start()
        verify_identical(service.port, ceiling.port, auth, reads)
        log(f"ceiling serves byte-identical bodies for all {len(reads)} read URLs")

        workloads = {
            "list": (LIST_TARGET, "single.lua", {}),
            "get": (get_target, "single.lua", {}),
            "mixed": ("/", "mixed.lua", {"BENCH_MIXED_DATA": str(mix_path)}),
        }
        workloads = {name: workload for name, workload in workloads.items() if name in args.workloads}
        servers = {"service": service, "ceiling": ceiling}
        if args.warmup:
            for _name, (target, script, env) in workloads.items():
                for server in servers.values():
                    wrk.run(server.port, target, script, args.warmup, auth=auth, env=env)
        results: dict[str, list[dict[str, Any]]] = {w: [] for w in workloads}
        for rnd in range(args.rounds):
            order = ["service", "ceiling"] if rnd % 2 == 0 else ["ceiling", "service"]
            for name, (target, script, env) in workloads.items():
                got = {s: wrk.run(servers[s].port, target, script, args.duration, auth=auth, env=env) for s in order}
                ratio = got["service"].rps / got["ceiling"].rps if got["ceiling"].rps else 0.0
                results[name].append({"service": got["service"], "ceiling": got["ceiling"], "ratio": ratio})
                log(f"round {rnd + 1} {name:5s}  service {got['service'].line()}")
                log(f"              ceiling {got['ceiling'].line()}   ratio {ratio:.3f}")
                for s, r in got.items():
                    if r.non2xx or r.socket_errors:
                        failures.append(f"{name} round {rnd + 1} {s}: {r.non2xx} non-2xx {r.raw['statuses']}, {r.socket_errors} socket errors")
        log("")
        log(f"{'workload':8s} {'service req/s':>14s} {'p99 ms':>8s} {'ceiling req/s':>14s} {'p99 ms':>8s} {'ratio':>7s}   (medians of {args.rounds} rounds)")
        summary = {}
        for name, rows in results.items():
            med = {
                "service_rps": statistics.median(r["service"].rps for r in rows),
                "service_p99_ms": statistics.median(r["service"].p99_ms for r in rows),
                "ceiling_rps": statistics.median(r["ceiling"].rps for r in rows),
                "ceiling_p99_ms": statistics.median(r["ceiling"].p99_ms for r in rows),
                "ratio": statistics.median(r["ratio"] for r in rows),
                "ratios": [round(r["ratio"], 4) for r in rows],
                "service_non2xx": sum(r["service"].non2xx for r in rows),
            }
            summary[name] = med
            log(f"{name:8s} {med['service_rps']:14.1f} {med['service_p99_ms']:8.2f} {med['ceiling_rps']:14.1f} "
                f"{med['ceiling_p99_ms']:8.2f} {med['ratio']:7.3f}   per round {med['ratios']}")
        for f in failures:
            log(f"FAIL: {f}")
        ratio_line = " ".join(f"ratio_{w}={summary[w]['ratio']:.3f}" for w in ("list", "get", "mixed") if w in summary)
        rounds_raw = {w: [{k: (v.raw if isinstance(v, WrkResult) else v) for k, v in r.items()} for r in rows] for w, rows in results.items()}
        return {"summary": summary, "rounds": rounds_raw, "failures": failures, "ratio_line": ratio_line}
    finally:
        for server in (ceiling, service):
            if server is not None:
                server.stop()
        if not args.keep:
            database.drop()


# ---------------------------------------------------------------------------
# Mode: etag (docs/etags-and-idempotency.md)
# ---------------------------------------------------------------------------


def current_etag(port: int, target: str, auth: dict[str, str]) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", target, headers=auth)
        response = conn.getresponse()
        response.read()
        etag = response.getheader("ETag")
        if response.status != 200 or not etag:
            raise BenchError(f"GET {target}: {response.status}, ETag {etag!r}")
        return etag
    finally:
        conn.close()


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds consumed so far by each of `pids` that still exists."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return seconds


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_process(pids).values())


class ServiceCpu:
    """CPU the service spends between start() and seconds(): its workers and, on PostgreSQL
    with `application_name` in the URL, the server processes of its connections, including those
    the pool opens meanwhile (their whole CPU time is then within the measurement)."""

    def __init__(self, service: Server, database_url: str) -> None:
        self.service, self.database_url = service, database_url
        self.before: dict[int, float] = {}

    def pids(self) -> list[int]:
        return self.service.worker_pids() + backend_pids(self.database_url)

    def start(self) -> None:
        self.before = cpu_by_process(self.pids())

    def seconds(self) -> float:
        now = cpu_by_process(self.pids())
        return sum(spent - self.before.get(pid, 0.0) for pid, spent in now.items())


def backend_pids(database_url: str) -> list[int]:
    """PostgreSQL: the server processes of the service's connections (`application_name` in the
    URL names them); SQLite: none (the work is done in the workers)."""
    url = appdb.normalise_url(database_url)
    name = url.query.get("application_name")
    if url.get_backend_name() != "postgresql" or not name:
        return []
    engine = sa.create_engine(url.difference_update_query(["application_name"]))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
            return [int(pid) for pid in conn.execute(query, {"name": name}).scalars()]
    finally:
        engine.dispose()


def mode_etag(args: argparse.Namespace, wrk: Wrk, workdir: Path) -> dict[str, Any]:
    """Two pairs of workloads on one service, each pair run back to back in alternating order per
    round: GET one answered 200 from the response cache against the same GET revalidated with
    If-None-Match (304), and creates without against creates with an Idempotency-Key of their own.
    Besides requests/s, the CPU time each request cost the workers (and, on PostgreSQL with
    `application_name` in the URL, the server processes of their connections): on a shared
    machine it moves far less than throughput does."""
    log(f"== etag: {args.departments} departments on {'PostgreSQL' if args.database_url else 'SQLite'}, "
        f"{args.workers} workers, wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds ==")
    database = BenchDatabase(args.database_url, workdir, "etag")
    service = None
    failures: list[str] = []
    try:
        info = seed_database(database.url, args.departments)
        service = start_service(workdir, database.url, args.workers, "etag")
        auth = login(service.port)
        get_target = f"{API}/department/{info.get_id}"
        etag = current_etag(service.port, get_target, auth)
        create_target = f"{API}/department"
        pairs = {
            "get": (("get_200", get_target, {}), ("get_304", get_target, {"BENCH_IF_NONE_MATCH": etag})),
            "create": (("create", create_target, {"BENCH_ETAG_KIND": "create"}),
                       ("create_key", create_target, {"BENCH_ETAG_KIND": "create", "BENCH_IDEMPOTENCY": "1"})),
        }
        runs = 0

        def run(target: str, env: dict[str, str], duration: float) -> WrkResult:
            nonlocal runs
            runs += 1  # a fresh name (and key) prefix per wrk run
            meter = ServiceCpu(service, database.url)
            meter.start()
            result = wrk.run(service.port, target, "etag.lua", duration, auth=auth, env={**env, "BENCH_RUN": str(runs)})
            result.raw["cpu_ms_per_request"] = meter.seconds() * 1000 / max(1, result.requests)
            return result

        if args.warmup:
            for pair in pairs.values():
                for _, target, env in pair:
                    run(target, env, args.warmup)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in pairs}
        for rnd in range(args.rounds):
            for name, pair in pairs.items():
                ordered = pair if rnd % 2 == 0 else tuple(reversed(pair))
                got = {label: run(target, env, args.duration) for label, target, env in ordered}
                base, variant = (label for label, _, _ in pair)
                ratio = got[variant].rps / got[base].rps if got[base].rps else 0.0
                results[name].append({**got, "ratio": ratio})
                for label, result in got.items():
                    log(f"round {rnd + 1} {label:10s} {result.line()}  cpu {result.raw['cpu_ms_per_request']:.3f} ms/req")
                    if result.non2xx or result.socket_errors:
                        failures.append(f"{label} round {rnd + 1}: {result.non2xx} unexpected {result.raw['statuses']}, "
                                        f"{result.socket_errors} socket errors")
                log(f"        {variant}/{base} = {ratio:.3f}")
        summary = {}
        for name, rows in results.items():
            base, variant = (label for label, _, _ in pairs[name])
            summary[name] = {
                f"{base}_rps": statistics.median(r[base].rps for r in rows),
                f"{variant}_rps": statistics.median(r[variant].rps for r in rows),
                f"{base}_p99_ms": statistics.median(r[base].p99_ms for r in rows),
                f"{variant}_p99_ms": statistics.median(r[variant].p99_ms for r in rows),
                f"{base}_cpu_ms": statistics.median(r[base].raw["cpu_ms_per_request"] for r in rows),
                f"{variant}_cpu_ms": statistics.median(r[variant].raw["cpu_ms_per_request"] for r in rows),
                "ratio": statistics.median(r["ratio"] for r in rows),
                "ratios": [round(r["ratio"], 4) for r in rows],
            }
        log("")
        for name, numbers in summary.items():
            log(f"{name:7s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()))
        for f in failures:
            log(f"FAIL: {f}")
        ratio_line = (f"ratio_304_vs_200={summary['get']['ratio']:.3f} "
                      f"ratio_create_key_vs_create={summary['create']['ratio']:.3f}")
        log(ratio_line)
        rounds_raw = {n: [{k: (v.raw if isinstance(v, WrkResult) else v) for k, v in r.items()} for r in rows] for n, rows in results.items()}
        return {"summary": summary, "rounds": rounds_raw, "failures": failures, "ratio_line": ratio_line}
    finally:
        if service is not None:
            service.stop()
        if not args.keep:
            database.drop()


# ---------------------------------------------------------------------------
# Mode: growth
# ---------------------------------------------------------------------------


GROWTH_QUERIES = ("list", "text", "offset", "get")
VARIED_URLS = 5000


def growth_targets(info: SeedInfo) -> tuple[dict[str, str], dict[str, list[str]], int]:
    """Each growth query as one URL, and as VARIED_URLS distinct URLs asking for the same work.

    The distinct forms add `excludeDepartmentId=<an id that does not exist>` (filters nothing) to
    the lists, and a `_=<k>` parameter (ignored by GET one) over the departments with 3 agents."""
    deep = max(0, len(info.visible_sorted) - 100)
    same = {
        "list": f"{API}/department",
        "text": f"{API}/department?text={TEXT_TERM}",
        "offset": f"{API}/department?offset={deep}&count=50",
        "get": f"{API}/department/{info.get_id}",
    }
    three = [i for i in info.ids if info.num_agents[i] == 3]
    varied = {
        "list": [f"{same['list']}?excludeDepartmentId=nobench{k}" for k in range(VARIED_URLS)],
        "text": [f"{same['text']}&excludeDepartmentId=nobench{k}" for k in range(VARIED_URLS)],
        "offset": [f"{same['offset']}&excludeDepartmentId=nobench{k}" for k in range(VARIED_URLS)],
        "get": [f"{API}/department/{three[k % len(three)]}?_={k}" for k in range(VARIED_URLS)],
    }
    return same, varied, deep


def mode_growth(args: argparse.Namespace, wrk: Wrk, workdir: Path) -> dict[str, Any]:
    log(f"== growth: sizes {args.sizes} on {'PostgreSQL' if args.database_url else 'SQLite'}, {args.workers} workers, "
        f"wrk -t1 -c{args.growth_connections} -d{args.duration}s per query and variant ==")
    out: dict[str, Any] = {}
    failures: list[str] = []
    table_rows = []
    for n in args.sizes:
        database = BenchDatabase(args.database_url, workdir, f"growth{n}")
        service = None
        try:
            info = seed_database(database.url, n)
            service = start_service(workdir, database.url, args.workers, f"growth{n}")
            rss_idle = service.rss_mib()
            auth = login(service.port)
            same, varied, deep = growth_targets(info)
            checks = {}
            for q in GROWTH_QUERIES:
                for target in (same[q], varied[q][0], varied[q][-1]):
                    status, _, raw = http_request(service.port, "GET", target, auth)
                    if status != 200:
                        raise BenchError(f"growth {n} {q}: GET {target} answered {status}: {raw[:300]!r}")
                body = json.loads(http_request(service.port, "GET", same[q], auth)[2])
                checks[q] = {"bytes": len(json.dumps(body)), "total": body.get("total"), "count": body.get("count")}
            log(f"N={n}: seeded in {info.seconds:.1f}s; text '{TEXT_TERM}' matches {checks['text']['total']}, "
                f"offset={deep} returns {checks['offset']['count']} departments; worker RSS at start "
                + ", ".join(f"{v:.1f}" for v in rss_idle.values()) + " MiB")
            results: dict[str, dict[str, WrkResult]] = {}
            for q in GROWTH_QUERIES:
                targets_file = workdir / f"targets-{n}-{q}.txt"
                targets_file.write_text("\n".join(varied[q]) + "\n")
                variants = {
                    "same": (same[q], "single.lua", {}),
                    "distinct": ("/", "rotate.lua", {"BENCH_TARGETS": str(targets_file)}),
                }
                results[q] = {}
                for variant, (target, script, env) in variants.items():
                    run = lambda d, service=service, target=target, script=script, auth=auth, env=env: wrk.run(  # noqa: E731
                        service.port, target, script, d, auth=auth, env=env, threads=1, connections=args.growth_connections
                    )
                    if args.warmup:
                        run(args.warmup)
                    r = run(args.duration)
                    results[q][variant] = r
                    log(f"  N={n:<7d} {q:6s} {variant:8s} {r.line()}")
                    if r.non2xx or r.socket_errors:
                        failures.append(f"growth N={n} {q} {variant}: {r.non2xx} non-2xx {r.raw['statuses']}, {r.socket_errors} socket errors")
            rss = service.rss_mib()
            log(f"  N={n:<7d} worker RSS after load: " + ", ".join(f"pid {p}: {v:.1f} MiB" for p, v in rss.items()))
            out[str(n)] = {
                "seed_seconds": round(info.seconds, 1),
                "queries": {
                    q: {
                        "target": same[q], "varied_example": varied[q][0], **checks[q],
                        **{f"{v}_{k}": getattr(r, k) for v, r in results[q].items() for k in ("p50_ms", "p99_ms", "rps")},
                        "raw": {v: r.raw for v, r in results[q].items()},
                    }
                    for q in GROWTH_QUERIES
                },
                "rss_mib_start": list(rss_idle.values()),
                "rss_mib_after": list(rss.values()),
            }
            table_rows.append((n, results, rss))
        finally:
            if service is not None:
                service.stop()
            if not args.keep:
                database.drop()
    log("")
    log("p50/p99 in ms; 'same' = one URL repeated, 'distinct' = a different URL each request (same work)")
    log(f"{'N':>7s} {'query':6s} {'same p50/p99':>17s} {'req/s':>8s} {'distinct p50/p99':>19s} {'req/s':>8s}")
    for n, results, rss in table_rows:
        for q in GROWTH_QUERIES:
            a, b = results[q]["same"], results[q]["distinct"]
            log(f"{n:7d} {q:6s} {a.p50_ms:8.2f}/{a.p99_ms:<8.2f} {a.rps:8.1f} {b.p50_ms:10.2f}/{b.p99_ms:<8.2f} {b.rps:8.1f}")
        log(f"{n:7d} RSS per worker after load: " + ", ".join(f"{v:.1f} MiB" for v in rss.values()))
    for f in failures:
        log(f"FAIL: {f}")
    return {"sizes": out, "failures": failures}


# ---------------------------------------------------------------------------
# Mode: concurrent writes
# ---------------------------------------------------------------------------


def verify_writes(
    threads: list[dict[str, Any]], hot: list[str], names: list[str], extras: dict[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """Compare what each wrk thread was told (bench/writes.lua) with what the database holds.

    threads: writes.lua's per-thread report; hot: the hot department ids (HOT[j+1] in Lua);
    names: every department name starting "bw-t"; extras: hot id -> its custom fields."""
    by_thread: dict[int, set[str]] = defaultdict(set)
    for name in names:
        match = re.fullmatch(r"bw-t(\d+)-(\d+)", name)
        if match:
            by_thread[int(match.group(1))].add(name)
    lost = phantom = missing_creates = extra_creates = failed_but_present = 0
    creates_ok = updates_ok = uncertain = 0
    problems = []
    for t in threads:
        tid = t["tid"]
        counters = t.get("counters") or []
        uncertain_last = t.get("uncertain_last") or []
        present = by_thread.get(tid, set())
        maybe = set(t.get("uncertain_names") or [])
        if t.get("in_flight_kind") == "create":
            maybe.add(t["in_flight_name"])
        uncertain += len(maybe)
        failed = set(t.get("create_failed") or []) & present
        failed_but_present += len(failed)
        for name in sorted(failed):
            problems.append(f"thread {tid}: create {name!r} answered non-2xx but is in the database")
        expected = t["created"] + len(present & maybe)
        creates_ok += t["created"]
        updates_ok += t.get("updates_ok") or 0
        if len(present) < expected:
            missing_creates += expected - len(present)
            problems.append(f"thread {tid}: {len(present)} departments in the database, {expected} answered 2xx")
        elif len(present) > expected:
            extra_creates += len(present) - expected
            problems.append(f"thread {tid}: {len(present)} departments in the database, only {expected} answered 2xx")
        for j, hot_id in enumerate(hot):
            stored = (extras.get(hot_id) or {}).get(f"bw_t{tid}", 0)
            want = counters[j] if j < len(counters) else 0
            allowed = {want}
            if j < len(uncertain_last) and uncertain_last[j]:
                allowed.add(uncertain_last[j])
            if t.get("in_flight_kind") == "update" and t.get("in_flight_j") == j + 1:
                allowed.add(t["in_flight_value"])
                uncertain += 1
            if stored not in allowed:
                if stored < want:
                    lost += 1
                else:
                    phantom += 1
                problems.append(f"thread {tid} department {hot_id}: stored bw_t{tid}={stored}, 2xx answered up to {want}")
    return {
        "lost_updates": lost, "phantom_updates": phantom, "missing_creates": missing_creates,
        "extra_creates": extra_creates, "failed_creates_present": failed_but_present,
        "uncertain_requests": uncertain, "creates_2xx": creates_ok, "updates_2xx": updates_ok, "problems": problems,
    }


def mode_writes(args: argparse.Namespace, wrk: Wrk, workdir: Path) -> dict[str, Any]:
    conns = args.writes_connections
    log(f"== writes: {args.writes_workers} workers x {conns} connections (wrk -t{conns} -c{conns}, one connection per "
        f"thread), {args.writes_duration}s, {args.hot} hot departments, on {'PostgreSQL' if args.database_url else 'SQLite'} ==")
    database = BenchDatabase(args.database_url, workdir, "writes")
    service = None
    failures: list[str] = []
    try:
        info = seed_database(database.url, args.writes_departments)
        hot = info.visible_sorted[: args.hot]
        service = start_service(workdir, database.url, args.writes_workers, "writes")
        auth = login(service.port)
        r = wrk.run(
            service.port, "/", "writes.lua", args.writes_duration, auth=auth, threads=conns, connections=conns,
            env={"BENCH_HOT_IDS": ",".join(hot)},
        )
        service.stop()  # graceful: the requests in flight when wrk stopped complete first
        service = None

        engine = appdb.make_engine(database.url)
        try:
            with engine.connect() as conn:
                names = [row[0] for row in conn.execute(sa.text("SELECT name FROM departments WHERE name LIKE 'bw-t%'"))]
                extras = dict(conn.execute(sa.select(models.Department.id, models.Department.extra).where(models.Department.id.in_(hot))).all())
        finally:
            engine.dispose()
        check = verify_writes(r.raw["threads"], hot, names, extras)
        lost, phantom = check["lost_updates"], check["phantom_updates"]
        missing_creates, extra_creates = check["missing_creates"], check["extra_creates"]
        failed_but_present, uncertain, problems = check["failed_creates_present"], check["uncertain_requests"], check["problems"]
        creates_ok, updates_ok = check["creates_2xx"], check["updates_2xx"]
        seconds = r.raw["duration_us"] / 1e6
        ok_total = r.requests - r.non2xx
        result = {
            "requests": r.requests, "seconds": seconds, "ok_per_s": ok_total / seconds if seconds else 0,
            "creates_2xx": creates_ok, "updates_2xx": updates_ok, "non2xx": r.non2xx, "statuses": r.raw["statuses"],
            "socket_errors": r.socket_errors, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "lost_updates": lost, "phantom_updates": phantom, "missing_creates": missing_creates,
            "extra_creates": extra_creates, "failed_creates_present": failed_but_present,
            "uncertain_requests": uncertain, "problems": problems[:20], "raw": r.raw,
        }
        log(f"{r.requests} requests in {seconds:.1f}s: {result['ok_per_s']:.1f} 2xx/s ({creates_ok} creates, {updates_ok} updates), "
            f"non-2xx {r.non2xx} {r.raw['statuses']}, socket errors {r.socket_errors}, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms")
        log(f"check: lost_updates={lost} phantom_updates={phantom} missing_creates={missing_creates} "
            f"extra_creates={extra_creates} failed_creates_present={failed_but_present} "
            f"(uncertain in-flight requests accepted either way: {uncertain})")
        for p in problems[:20]:
            log(f"  {p}")
        if r.non2xx or r.socket_errors:
            failures.append(f"writes: {r.non2xx} non-2xx {r.raw['statuses']}, {r.socket_errors} socket errors")
        if lost or phantom or missing_creates or extra_creates or failed_but_present:
            failures.append("writes: the database disagrees with what the clients were told (see above)")
        for f in failures:
            log(f"FAIL: {f}")
        result["failures"] = failures
        return result
    finally:
        if service is not None:
            service.stop()
        if not args.keep:
            database.drop()


# ---------------------------------------------------------------------------
# Mode: events (issue 15): writes with and without webhooks, delivery latency, the feed
# ---------------------------------------------------------------------------


NGINX = Path("/usr/sbin/nginx")
RECEIVER_CONFIG = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
events {{
    worker_connections 256;
}}
http {{
    log_format hooks '$http_webhook_id $msec';
    access_log {tmp}/access.log hooks;
    client_body_temp_path {tmp}/client_body;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            return 204;
        }}
    }}
}}
"""


class DeliveryReceiver:
    """The webhook receiver: nginx answering 204 on 127.0.0.1, logging each message's id and
    arrival time. A receiver would run on another host; nginx is the one that takes least from
    the two cores the service and wrk share here (the Python http.server first used cost about
    0.2 ms of CPU per event, most of what the service spends on delivering it)."""

    def __init__(self, workdir: Path) -> None:
        if not NGINX.exists():
            raise BenchError("the events mode needs nginx as its webhook receiver: apt-get install nginx")
        self.tmp = workdir / "receiver"
        self.tmp.mkdir(exist_ok=True)
        self.port = free_port()
        user = "user root;\n" if os.geteuid() == 0 else ""  # its worker must reach the 0700 work directory
        (self.tmp / "nginx.conf").write_text(RECEIVER_CONFIG.format(user=user, tmp=self.tmp, port=self.port))
        self.log_path = self.tmp / "access.log"
        self.proc = subprocess.Popen(
            [str(NGINX), "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"), "-e", str(self.tmp / "error.log"),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.offset = 0
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"nginx (the webhook receiver) did not start: {self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def cpu_seconds(self) -> float:
        """CPU time of nginx's master and worker so far."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = [self.proc.pid, *(int(p) for p in children.read_text().split())]
        except OSError:
            pids = [self.proc.pid]
        return cpu_seconds(pids)

    def start_round(self) -> None:
        """Forget what arrived before: message ids repeat across databases."""
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0

    def arrivals(self) -> dict[str, float]:
        """Message id -> first arrival (epoch seconds) since start_round()."""
        if not self.log_path.exists():
            return {}
        with open(self.log_path, "rb") as log_file:
            log_file.seek(self.offset)
            lines = log_file.read().decode(errors="replace").splitlines()
        first: dict[str, float] = {}
        for line in lines:
            message, _, arrived = line.rpartition(" ")
            if message and message != "-":
                first.setdefault(message, float(arrived))
        return first

    def settle(self, quiet: float = 1.5, limit: float = 30) -> None:
        """Wait until nothing new has arrived for `quiet` seconds (at most `limit`)."""
        deadline, last_size, last_change = time.monotonic() + limit, -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def event_times(database_url: str) -> dict[str, float]:
    """Message id -> the time of the event it carries (the payload's `data.time`, the database's
    clock: the same machine), from the service's delivery log."""
    engine = appdb.make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(models.WebhookDelivery.message_id, models.WebhookDelivery.payload)).all()
    finally:
        engine.dispose()
    return {message: _epoch(json.loads(payload)["data"]["time"]) for message, payload in rows}


def _epoch(rc_time: str) -> float:
    return datetime.strptime(rc_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def mode_events(args: argparse.Namespace, wrk: Wrk, workdir: Path) -> dict[str, Any]:
    """The write workload (bench/writes.lua) on two services side by side, each on its own
    database: one without webhooks (WEBHOOKS=off, no endpoint) and one with an active endpoint
    (nginx as the receiver). Each round runs both, in alternating order, the second right after
    the first: the round's ratio is what the machine's drift spoils least. Then 10,000 events are
    read from the feed."""
    conns = args.writes_connections
    log(f"== events: writes without and with an active webhook endpoint, {args.rounds} rounds of "
        f"{args.writes_duration}s each, {args.writes_workers} workers, on {'PostgreSQL' if args.database_url else 'SQLite'} ==")
    receiver = DeliveryReceiver(workdir)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    latencies: list[float] = []
    failures: list[str] = []
    databases: dict[str, BenchDatabase] = {}
    services: dict[str, Server] = {}
    try:
        hot: dict[str, str] = {}
        auths: dict[str, dict[str, str]] = {}
        for variant in ("off", "on"):
            databases[variant] = database = BenchDatabase(args.database_url, workdir, f"events_{variant}")
            info = seed_database(database.url, args.writes_departments)
            hot[variant] = ",".join(info.visible_sorted[: args.hot])
            env = {"WEBHOOKS": variant, "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
            services[variant] = service = start_service(workdir, database.url, args.writes_workers, f"events-{variant}", env=env)
            auths[variant] = auth = login(service.port)
            if variant == "on":
                body = json.dumps({"url": receiver.url, "kinds": list(models.EVENT_KINDS)}).encode()
                status, _, raw = http_request(service.port, "POST", "/api/ext/v1/webhooks", {**auth, "Content-Type": "application/json"}, body)
                if status != 200:
                    raise BenchError(f"webhook registration failed: {status} {raw[:300]!r}")
        for round_no in range(args.rounds):
            for variant in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
                service, database = services[variant], databases[variant]
                receiver.start_round()
                meter = ServiceCpu(service, database.url)
                meter.start()
                receiver_before = receiver.cpu_seconds()
                r = wrk.run(service.port, "/", "writes.lua", args.writes_duration, auth=auths[variant], threads=conns,
                            connections=conns, env={"BENCH_HOT_IDS": hot[variant], "BENCH_RUN": str(round_no)})
                if variant == "on":
                    receiver.settle()  # the deliveries still under way are part of the writes' cost
                seconds = r.raw["duration_us"] / 1e6
                ok = r.requests - r.non2xx
                rate = ok / seconds if seconds else 0.0
                rates[variant].append(rate)
                # CPU per write: the service (its workers and, on PostgreSQL, their server
                # processes) and the receiver.
                cpu[variant].append(meter.seconds() * 1000 / max(1, ok))
                receiver_cpu = (receiver.cpu_seconds() - receiver_before) * 1000 / max(1, ok)
                if r.non2xx or r.socket_errors:
                    failures.append(f"events {variant}: {r.non2xx} non-2xx, {r.socket_errors} socket errors")
                line = (f"round {round_no + 1} webhooks {variant}: {rate:.1f} 2xx/s, service cpu "
                        f"{cpu[variant][-1]:.3f} ms/write, receiver cpu {receiver_cpu:.3f} ms/write")
                if variant == "on":
                    arrived, happened = receiver.arrivals(), event_times(database.url)
                    new = [at - happened[message] for message, at in arrived.items()]
                    latencies += new
                    line += f", {len(new)} events delivered"
                log(line)
        for service in services.values():
            service.stop()
        services.clear()
        feed = measure_feed(args, workdir)
    finally:
        for service in services.values():
            service.stop()
        receiver.close()
        if not args.keep:
            for database in databases.values():
                database.drop()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    ratio = on / off if off else 0.0
    # Each round runs both variants back to back: its own ratio is the one the machine's drift
    # spoils least; CPU per write moves less than throughput on a shared machine.
    round_ratios = [b / a if a else 0.0 for a, b in zip(rates["off"], rates["on"], strict=True)]
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    p50, p99 = _percentile(latencies, 0.50) * 1000, _percentile(latencies, 0.99) * 1000
    log(f"writes/s median: without webhooks {off:.1f}, with an active endpoint {on:.1f}: ratio {ratio:.3f} (target >= 0.90); "
        f"per round {' '.join(f'{x:.3f}' for x in round_ratios)}, median {statistics.median(round_ratios):.3f}")
    log(f"service cpu per write median: without {cpu_off:.3f} ms, with {cpu_on:.3f} ms: ratio {cpu_off / cpu_on if cpu_on else 0:.3f}")
    log(f"event -> first delivery attempt over {len(latencies)} events: p50 {p50:.0f} ms (target <= 1000), p99 {p99:.0f} ms (target <= 5000)")
    log(f"feed: {feed['events']} events read in {feed['seconds'] * 1000:.0f} ms in pages of {feed['page']} (target <= 1000 ms)")
    return {"writes_per_s": rates, "ratio": ratio, "round_ratios": round_ratios, "cpu_ms_per_write": cpu,
            "delivery_p50_ms": p50, "delivery_p99_ms": p99,
            "delivered": len(latencies), "feed": feed, "failures": failures}


def measure_feed(args: argparse.Namespace, workdir: Path, total: int = 10_000, page: int = 1000) -> dict[str, Any]:
    """`total` departments created in transactions of 100 (the change log's triggers make each a
    `created` event), then read back from GET department.changes, `page` at a time, through a
    real server."""
    database = BenchDatabase(args.database_url, workdir, "events_feed")
    service = None
    try:
        seed_database(database.url, 100)
        engine = appdb.make_engine(database.url)
        rng, now = random.Random(15), models.utcnow()
        try:
            for start in range(0, total, 100):
                with engine.begin() as conn:
                    conn.execute(models.Department.__table__.insert(), [
                        {"id": _hex_id(rng, int(time.time())), "name": f"Feed {k}", "name_folded": f"feed {k}",
                         "email": "feed@bench.example", "enabled": True, "show_on_registration": True, "extra": {},
                         "type": "d", "archived": False, "num_agents": 0, "updated_at": now}
                        for k in range(start, start + 100)
                    ])
        finally:
            engine.dispose()
        service = start_service(workdir, database.url, 1, "events-feed", env={"WEBHOOKS": "off"})
        auth = login(service.port)
        read, cursor, started = 0, "0", time.perf_counter()
        while read < total:
            status, _, raw = http_request(service.port, "GET", f"/api/ext/v1/livechat/department.changes?after={cursor}&limit={page}", auth)
            if status != 200:
                raise BenchError(f"feed answered {status}: {raw[:300]!r}")
            body = json.loads(raw)
            if not body["events"]:
                break
            read, cursor = read + len(body["events"]), body["cursor"]
        return {"events": read, "seconds": time.perf_counter() - started, "page": page}
    finally:
        if service is not None:
            service.stop()
        if not args.keep:
            database.drop()


# ---------------------------------------------------------------------------
# Mode: profile (in-process)
# ---------------------------------------------------------------------------


def bucket_of(file_path: str, function: str) -> str:
    """Which layer a function belongs to, for the time breakdown."""
    path = file_path.replace("\\", "/")
    if path in ("~", "") or path.startswith("<"):
        if "sqlite3" in function or "psycopg" in function:
            return "db driver (C)"
        if "_json" in function or "encode_basestring" in function:
            return "json (C)"
        return "builtins (C)"
    if "/site-packages/" in path:
        package = path.split("/site-packages/", 1)[1].split("/", 1)[0]
        if package == "werkzeug" and path.endswith("/test.py"):
            return "werkzeug test client (not in production)"
        if package.startswith("psycopg"):
            return "db driver (psycopg)"
        return package
    if path.startswith(str(BENCH) + "/"):
        return "bench harness"
    if path.startswith(str(ROOT)) and "/.venv/" not in path:
        return f"service: {Path(path).name}"
    if "/json/" in path:
        return "json"
    return "stdlib"


def profile_target(
    app: Any, client: Any, auth: dict[str, str], targets: list[str], requests: int, out_dir: Path, label: str
) -> dict[str, Any]:
    """`label` names the output files: profile-<label>-cprofile.txt and profile-<label>-pyinstrument.txt."""
    """Profile GETs of `targets`, taken in turn (one URL repeated, or distinct URLs never asked before)."""
    engine = app.extensions["db.engine"]
    statements: list[str] = []
    position = 0

    def get() -> None:
        nonlocal position
        target = targets[position % len(targets)]
        position += 1
        response = client.get(target, headers=auth)
        if response.status_code != 200:
            raise BenchError(f"profile: GET {target} answered {response.status_code}: {response.get_data()[:300]!r}")

    def on_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        statements.append(" ".join(statement.split()))

    for _ in range(50):  # warm-up (compiled-statement caches, imports)
        get()
    sa.event.listen(engine, "before_cursor_execute", on_execute)
    get()
    sa.event.remove(engine, "before_cursor_execute", on_execute)

    started = time.perf_counter()
    for _ in range(requests):
        get()
    plain_ms = (time.perf_counter() - started) * 1000 / requests

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        get()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    buckets: dict[str, float] = defaultdict(float)
    rows, ours = [], []
    for (file_path, line, function), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        buckets[bucket_of(file_path, function)] += tottime
        short = file_path.split("/site-packages/", 1)[-1].replace(str(ROOT) + "/", "")
        rows.append((tottime, cumtime, ncalls, f"{short}:{line}({function})"))
        if bucket_of(file_path, function).startswith("service: "):
            ours.append((cumtime, tottime, ncalls, f"{short}:{line}({function})"))
    rows.sort(reverse=True)
    ours.sort(reverse=True)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
    (out_dir / f"profile-{label}-cprofile.txt").write_text(text.getvalue())

    result: dict[str, Any] = {
        "targets": targets[:3], "ms_per_request": plain_ms, "sql_statements": statements,
        "cprofile_buckets_pct": {k: 100 * v / total for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "cprofile_top_own_time": [
            {"own_ms_per_req": 1000 * tt / requests, "cum_ms_per_req": 1000 * ct / requests, "calls_per_req": nc / requests, "function": fn}
            for tt, ct, nc, fn in rows[:15]
        ],
        "cprofile_service_cumulative": [
            {"cum_ms_per_req": 1000 * ct / requests, "own_ms_per_req": 1000 * tt / requests, "calls_per_req": nc / requests, "function": fn}
            for ct, tt, nc, fn in ours[:15]
        ],
    }
    try:
        from pyinstrument import Profiler
    except ImportError:
        result["pyinstrument"] = "not installed (.venv/bin/pip install pyinstrument)"
        return result
    sampler = Profiler(interval=0.0002)
    sampler.start()
    for _ in range(requests):
        get()
    sampler.stop()
    (out_dir / f"profile-{label}-pyinstrument.txt").write_text(sampler.output_text(unicode=True, color=False, show_all=False))
    sampled: dict[str, float] = defaultdict(float)

    def walk(frame: Any, parent_bucket: str) -> None:
        if frame.is_synthetic:  # "[self]" leaves: already in their parent's total_self_time
            return
        path, function = frame.file_path or "", frame.function or ""
        if path.startswith("<"):
            # A C function, sampled separately: charge it to its caller's layer, except the DBAPI's
            # cursor/connection methods (sqlite3 execute/fetch), which are the database's time.
            is_driver = parent_bucket == "sqlalchemy" and ("Cursor." in function or "Connection." in function)
            name = "db driver (C calls)" if is_driver else parent_bucket
        else:
            name = bucket_of(path, function)
        sampled[name] += frame.total_self_time
        for child in frame.children:
            walk(child, name)

    root = sampler.last_session.root_frame() if sampler.last_session else None
    if root is not None:
        walk(root, "stdlib")
        whole = sum(sampled.values()) or 1
        result["pyinstrument_buckets_pct"] = {k: 100 * v / whole for k, v in sorted(sampled.items(), key=lambda kv: -kv[1])}
    return result


def mode_profile(args: argparse.Namespace, wrk: Wrk | None, workdir: Path) -> dict[str, Any]:
    log(f"== profile: one list and one get request, in-process with app.test_client(), {args.departments} departments "
        f"on {'PostgreSQL' if args.database_url else 'SQLite'} ==")
    database = BenchDatabase(args.database_url, workdir, "profile")
    try:
        info = seed_database(database.url, args.departments)
        from app import create_app

        app = create_app({"DATABASE_URL": database.url, "ADMIN_PASS": ADMIN_PASS, "LOG_LEVEL": "WARNING"})
        client = app.test_client()
        response = client.post("/api/v1/login", json={"user": ADMIN_USER, "password": ADMIN_PASS})
        data = response.get_json()["data"]
        auth = {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}
        out_dir = args.out
        report = {}
        same, varied, _deep = growth_targets(info)
        cases = {
            "list": [LIST_TARGET],
            "list-distinct": [f"{LIST_TARGET}&excludeDepartmentId=nobench{k}" for k in range(VARIED_URLS)],
            "get": [f"{API}/department/{info.get_id}"],
            "get-distinct": varied["get"],
        }
        for label, targets in cases.items():
            r = profile_target(app, client, auth, targets, args.profile_requests, out_dir, f"{label}-{database.kind}")
            report[label] = r
            what = "one URL repeated" if len(targets) == 1 else f"{len(targets)} distinct URLs, e.g."
            log(f"\n-- {label}: GET ({what}) {targets[0]}: {r['ms_per_request']:.2f} ms/request in-process "
                f"(no profiler), {len(r['sql_statements'])} SQL statements:")
            for s in r["sql_statements"]:
                log(f"     {s[:160]}{'…' if len(s) > 160 else ''}")
            if "pyinstrument_buckets_pct" in r:
                log("   time by layer (pyinstrument, sampled): "
                    + ", ".join(f"{k} {v:.1f}%" for k, v in r["pyinstrument_buckets_pct"].items() if v >= 0.5))
            log("   time by layer (cProfile own time; inflates code with many small calls): "
                + ", ".join(f"{k} {v:.1f}%" for k, v in r["cprofile_buckets_pct"].items() if v >= 0.5))
            log("   service functions by cumulative time (cProfile, per request):")
            for row in r["cprofile_service_cumulative"][:10]:
                log(f"     cum {row['cum_ms_per_req']:6.3f} ms  own {row['own_ms_per_req']:6.3f} ms  "
                    f"calls {row['calls_per_req']:5.1f}  {row['function']}")
            log("   top functions by own time (cProfile, per request):")
            for row in r["cprofile_top_own_time"][:10]:
                log(f"     own {row['own_ms_per_req']:6.3f} ms  cum {row['cum_ms_per_req']:6.3f} ms  "
                    f"calls {row['calls_per_req']:7.1f}  {row['function']}")
        app.extensions["db.engine"].dispose()
        log(f"\nfull profiles: {out_dir}/profile-*-{database.kind}-cprofile.txt"
            + (f", profile-*-{database.kind}-pyinstrument.txt" if "pyinstrument_buckets_pct" in report["list"] else ""))
        return report
    finally:
        if not args.keep:
            database.drop()


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("ratios", "growth", "writes", "profile", "etag", "events", "all"), default="ratios")
    p.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file in a temporary directory)")
    p.add_argument("--rounds", type=int, default=3, help="ratios: rounds, each runs service and ceiling once per workload (>= 3)")
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run (ratios, growth)")
    p.add_argument("--warmup", type=float, default=1, help="seconds of warm-up per server and workload (0: none)")
    p.add_argument("--workloads", default="list,get,mixed", help="ratios: which workloads to run (comma-separated)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (ratios)")
    p.add_argument("--connections", type=int, default=8, help="wrk connections (ratios)")
    p.add_argument("--timeout", type=int, default=30, help="wrk per-request timeout, seconds")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (ratios, growth)")
    p.add_argument("--departments", type=int, default=1000, help="departments seeded for ratios and profile")
    p.add_argument("--sizes", default="1000,10000,100000", help="growth: department counts")
    p.add_argument("--growth-connections", type=int, default=2, help="growth: wrk connections (= workers: latency without queueing)")
    p.add_argument("--writes-workers", type=int, default=4)
    p.add_argument("--writes-connections", type=int, default=16)
    p.add_argument("--writes-duration", type=float, default=10)
    p.add_argument("--writes-departments", type=int, default=100, help="writes: departments seeded first")
    p.add_argument("--hot", type=int, default=4, help="writes: departments every connection updates")
    p.add_argument("--profile-requests", type=int, default=300)
    p.add_argument("--wrk", help="path of the wrk binary (default: wrk on PATH)")
    p.add_argument("--out", type=Path, default=BENCH / "out", help="where results JSON and profiles go")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory, databases and server logs")
    p.add_argument("--cold", action="store_true", help="the service with its read caches off (READ_CACHE=off): the cold path")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if unknown := set(args.workloads) - {"list", "get", "mixed"}:
        p.error(f"--workloads: unknown {sorted(unknown)} (list, get, mixed)")
    if args.mode in ("ratios", "all") and args.rounds < 3:
        p.error("--rounds must be at least 3 (the ratios are medians of >= 3 rounds)")
    if args.connections < args.workers + 1:
        log(f"note: {args.connections} connections for {args.workers} workers may not keep every worker busy")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cold:  # passed through to every service the bench starts (and to --mode profile's app)
        os.environ["READ_CACHE"] = "off"
    log(f"read caches: {os.environ.get('READ_CACHE', 'on')}")
    wrk = None if args.mode == "profile" else Wrk(find_wrk(args.wrk), args.threads, args.connections, args.timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    failures: list[str] = []
    try:
        modes = ["ratios", "growth", "writes"] if args.mode == "all" else [args.mode]
        for mode in modes:
            runner = {"ratios": mode_ratios, "growth": mode_growth, "writes": mode_writes, "profile": mode_profile,
                      "etag": mode_etag, "events": mode_events}[mode]
            try:
                results[mode] = runner(args, wrk, workdir)  # type: ignore[arg-type]
            except BenchError as exc:
                failures.append(f"{mode}: {exc}")
                log(f"FAIL: {mode}: {exc}")
                continue
            failures.extend(results[mode].get("failures", []) if isinstance(results[mode], dict) else [])
            log("")
    finally:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backend = "postgresql" if args.database_url else "sqlite"
        out_file = args.out / f"results-{args.mode}-{backend}{'-cold' if args.cold else ''}-{stamp}.json"
        out_file.write_text(json.dumps(results, indent=1, default=str))
        if args.keep:
            log(f"kept {workdir} (databases, server logs, captured bodies)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"results: {out_file}")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr, flush=True)
    if "ratios" in results:
        log(results["ratios"]["ratio_line"])  # the last line, as the issue asks
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
