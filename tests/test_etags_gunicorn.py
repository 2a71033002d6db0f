"""ETags and Idempotency-Key through a real 2-worker gunicorn, on both databases
(docs/etags-and-idempotency.md): lost updates prevented, 304s, replays across workers and a
restart, concurrent repeats, bad keys, and the If-Match requirement."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa
from conftest import department_fields
from servers import Server, login, server_url

pytestmark = pytest.mark.e2e

PASSWORD = "etag-admin-pass-1"
TIMEOUT = 30


def departments_named(database_url: str, name: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM departments WHERE name = :n"), {"n": name}).scalar()
    finally:
        engine.dispose()


def create(base: str, headers: dict[str, str], name: str, **extra_headers: str) -> requests.Response:
    body = {"department": department_fields(name=name)}
    return requests.post(f"{base}/api/v1/livechat/department", json=body, headers={**headers, **extra_headers}, timeout=TIMEOUT)


def test_two_clients_with_the_same_etag_one_wins(empty_database_url, tmp_path):
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", PASSWORD) as server:
        admin = login(server.base, PASSWORD)
        department = create(server.base, admin, "Race").json()["department"]
        url = f"{server.base}/api/v1/livechat/department/{department['_id']}"
        for round_ in range(5):
            etag = requests.get(url, headers=admin, timeout=TIMEOUT).headers["ETag"]
            barrier = threading.Barrier(2)

            def put(name: str, etag: str = etag, barrier: threading.Barrier = barrier) -> requests.Response:
                barrier.wait()
                body = {"department": {"name": name}}
                return requests.put(url, json=body, headers={**admin, "If-Match": etag}, timeout=TIMEOUT)

            with ThreadPoolExecutor(2) as pool:
                responses = list(pool.map(put, [f"A{round_}", f"B{round_}"]))
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200, 412], [r.text for r in responses]
            winner = next(r for r in responses if r.status_code == 200).json()["department"]["name"]
            loser = next(r for r in responses if r.status_code == 412)
            assert loser.json()["error"] == "error-precondition-failed"
            current = requests.get(url, headers=admin, timeout=TIMEOUT)
            assert current.json()["department"]["name"] == winner  # the loser's name was not written
            assert loser.headers["ETag"] == current.headers["ETag"]


def test_304_round_trip_and_an_agent_change_elsewhere(empty_database_url, tmp_path):
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", PASSWORD) as server:
        admin = login(server.base, PASSWORD)
        api = f"{server.base}/api/v1"
        body = {"username": "etag.agent", "email": "etag.agent@example.com", "name": "A", "password": "pw-agent-1"}
        agent = requests.post(f"{api}/users.create", json=body, headers=admin, timeout=TIMEOUT).json()["user"]
        assert requests.post(f"{api}/livechat/users/agent", json={"username": "etag.agent"}, headers=admin, timeout=TIMEOUT).ok
        department = create(server.base, admin, "Polled").json()["department"]
        assert requests.post(
            f"{api}/livechat/department/{department['_id']}/agents",
            json={"upsert": [{"agentId": agent["_id"]}], "remove": []}, headers=admin, timeout=TIMEOUT,
        ).ok
        urls = [f"{api}/livechat/department/{department['_id']}", f"{api}/livechat/department/{department['_id']}/agents",
                f"{api}/livechat/department"]
        etags = {}
        for url in urls:
            first = requests.get(url, headers=admin, timeout=TIMEOUT)
            etags[url] = first.headers["ETag"]
            for _ in range(4):  # both workers, cached or not
                again = requests.get(url, headers={**admin, "If-None-Match": etags[url]}, timeout=TIMEOUT)
                assert again.status_code == 304 and again.content == b""
                assert again.headers["ETag"] == etags[url]

        removed = requests.delete(f"{api}/livechat/users/agent/{agent['_id']}", headers=admin, timeout=TIMEOUT)
        assert removed.status_code == 200
        for url in urls:
            for _ in range(2):
                after = requests.get(url, headers={**admin, "If-None-Match": etags[url]}, timeout=TIMEOUT)
                assert after.status_code == 200, url
                assert after.headers["ETag"] != etags[url]


def test_idempotent_replay_across_workers_and_a_restart(empty_database_url, tmp_path):
    log = tmp_path / "gunicorn.log"
    key = {"Idempotency-Key": "replay-across-workers"}
    with Server(server_url(empty_database_url), log, PASSWORD) as server:
        admin = login(server.base, PASSWORD)
        first = create(server.base, admin, "Once", **key)
        assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
        pids: set[str] = set()
        for _ in range(100):  # until both workers have answered (the kernel picks which one accepts)
            again = create(server.base, admin, "Once", **key)
            assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
            assert again.json() == first.json()
            pids = set(re.findall(r"access pid=<(\d+)> POST /api/v1/livechat/department 200", server.output()))
            if len(pids) == 2:
                break
        assert len(pids) == 2, "both workers answered"
    with Server(server_url(empty_database_url), log, PASSWORD) as server:
        after_restart = create(server.base, admin, "Once", **key)
        assert after_restart.status_code == 200 and after_restart.headers["Idempotent-Replayed"] == "true"
        assert after_restart.json() == first.json()
        assert create(server.base, admin, "Other", **key).status_code == 422
    assert departments_named(empty_database_url, "Once") == 1


def test_concurrent_requests_with_one_key_create_one_department(empty_database_url, tmp_path):
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", PASSWORD) as server:
        admin = login(server.base, PASSWORD)
        barrier = threading.Barrier(8)

        def attempt(_: int) -> requests.Response:
            barrier.wait()
            return create(server.base, admin, "Concurrent", **{"Idempotency-Key": "one-department"})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(attempt, range(8)))
        assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
        fresh = [r for r in responses if r.status_code == 200 and "Idempotent-Replayed" not in r.headers]
        assert len(fresh) == 1
        replays = [r for r in responses if r.status_code == 200 and r.headers.get("Idempotent-Replayed") == "true"]
        assert all(r.json() == fresh[0].json() for r in replays)
        in_use = [r for r in responses if r.status_code == 409]
        assert all(r.json()["error"] == "error-idempotency-key-in-use" for r in in_use)
    assert departments_named(empty_database_url, "Concurrent") == 1


def test_bad_keys_and_the_if_match_requirement(empty_database_url, tmp_path):
    server = Server(server_url(empty_database_url), tmp_path / "gunicorn.log", PASSWORD)
    server.env["REQUIRE_IF_MATCH"] = "on"
    with server:
        admin = login(server.base, PASSWORD)
        for value in ("", "x" * 256, "clé"):
            response = create(server.base, admin, "Bad", **{"Idempotency-Key": value})
            assert response.status_code == 400, value
            assert response.json()["error"] == "error-invalid-idempotency-key"
        department = create(server.base, admin, "Guarded").json()["department"]
        url = f"{server.base}/api/v1/livechat/department/{department['_id']}"
        refused = requests.put(url, json={"department": {"name": "No tag"}}, headers=admin, timeout=TIMEOUT)
        assert refused.status_code == 428
        assert refused.json()["error"] == "error-precondition-required"
        etag = requests.get(url, headers=admin, timeout=TIMEOUT).headers["ETag"]
        accepted = requests.put(url, json={"department": {"name": "Tagged"}}, headers={**admin, "If-Match": etag}, timeout=TIMEOUT)
        assert accepted.status_code == 200
    assert departments_named(empty_database_url, "Bad") == 0
