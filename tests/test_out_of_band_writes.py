"""Writes that bypass the service — sqlite3 or psql by hand, another program — are seen by the very
next read in every worker: the database's own triggers move the version counter every cache
follows (migration 0009, cache.py), whoever writes.

Each test writes with a plain DBAPI connection (sqlite3 / psycopg) and no project code.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from conftest import API, create_department, raw_connection, write_by_hand
from servers import Server, login, server_url

LIVECHAT = f"{API}/livechat"


def _now(backend: str) -> str:
    # How each database stores a timestamp written by hand (SQLAlchemy's SQLite format).
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if backend == "sqlite" else now.isoformat()


def _write_by_hand(database_url: str, backend: str, department_id: str, agent_id: str) -> None:
    """Rename a department, drop one of its agent links and insert a new department, as a person
    at the sqlite3/psql prompt would: nothing of the service's (name_folded left alone)."""
    mark = "?" if backend == "sqlite" else "%s"
    connection = raw_connection(database_url)
    try:
        cursor = connection.cursor()
        cursor.execute(
            f"UPDATE departments SET name = {mark}, description = {mark} WHERE id = {mark}",
            ("Ärztliche Hilfe", "fixed by hand", department_id),
        )
        cursor.execute(f"DELETE FROM department_agents WHERE department_id = {mark} AND agent_id = {mark}", (department_id, agent_id))
        cursor.execute(
            "INSERT INTO departments (id, name, email, enabled, show_on_registration, extra, updated_at)"
            f" VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
            ("handmade000000000000000", "Zeta by hand", "zeta@example.com", True, True, "{}", _now(backend)),
        )
        connection.commit()
    finally:
        connection.close()


def test_a_hand_edit_is_seen_by_the_next_read_of_every_kind_in_the_flask_app(app, client, auth, backend, database_url):
    agent = auth.create_user("agent.hand", ["livechat-agent"])
    other = auth.create_user("agent.kept", ["livechat-agent"])
    department = create_department(
        client, auth.admin, name="Support", agents=[{"agentId": agent["_id"]}, {"agentId": other["_id"]}]
    )
    urls = _reads(department["_id"])
    before = {name: client.get(url, headers=auth.admin).json for name, url in urls.items()}  # cached now
    assert before["text"]["total"] == 0 and before["one"]["department"]["name"] == "Support"

    _write_by_hand(database_url, backend, department["_id"], agent["_id"])

    _check_new_data(lambda url: client.get(url, headers=auth.admin).json, urls, other["username"])


def _reads(department_id: str) -> dict[str, str]:
    return {
        "one": f"{LIVECHAT}/department/{department_id}",
        "list": f"{LIVECHAT}/department",
        "text": f"{LIVECHAT}/department?text=%C3%84RZTLICHE",  # ÄRZTLICHE: folded like the name
        "total": f"{LIVECHAT}/department?count=1",
        "agents": f"{LIVECHAT}/department/{department_id}/agents",
        "by_ids": f"{LIVECHAT}/department.listByIds?ids[]={department_id}",
    }


def _check_new_data(get, urls: dict[str, str], kept_agent: str) -> None:  # noqa: ANN001
    one = get(urls["one"])
    assert one["department"]["name"] == "Ärztliche Hilfe"
    assert one["department"]["description"] == "fixed by hand"
    assert [a["username"] for a in one["agents"]] == [kept_agent]
    # byte-wise order (docs/compatibility.md §2.1): "Z" sorts before "Ä"
    assert [d["name"] for d in get(urls["list"])["departments"]] == ["Zeta by hand", "Ärztliche Hilfe"]
    found = get(urls["text"])
    assert (found["total"], [d["name"] for d in found["departments"]]) == (1, ["Ärztliche Hilfe"])
    assert get(urls["total"])["total"] == 2
    assert [a["username"] for a in get(urls["agents"])["agents"]] == [kept_agent]
    assert [d["name"] for d in get(urls["by_ids"])["departments"]] == ["Ärztliche Hilfe"]


@pytest.mark.e2e
def test_a_hand_edit_is_seen_by_every_worker_of_a_real_gunicorn(empty_database_url, backend, tmp_path):
    password = "out-of-band-pass"
    with Server(server_url(empty_database_url), tmp_path / "gunicorn.log", password) as server:
        admin = login(server.base, password)

        def call(method: str, path: str, **kwargs):  # noqa: ANN202
            response = requests.request(method, f"{server.base}{path}", headers=admin, timeout=10, **kwargs)
            assert response.status_code == 200, response.text
            return response.json()

        agents = [
            call("POST", f"{API}/users.create", json={"username": name, "email": f"{name}@example.com", "name": name,
                                                        "password": "pass-word-1", "roles": ["livechat-agent"]})["user"]
            for name in ("agent.hand", "agent.kept")
        ]
        body = {"department": {"name": "Support", "email": "s@example.com", "enabled": True, "showOnRegistration": True},
                "agents": [{"agentId": agent["_id"]} for agent in agents]}
        department_id = call("POST", f"{LIVECHAT}/department", json=body)["department"]["_id"]
        urls = _reads(department_id)

        def answering_pids(since: int) -> dict[str, set[str]]:
            """Which workers answered each path (query strings aside) in the log after `since`."""
            pids: dict[str, set[str]] = {}
            for pid, path in re.findall(rf"access pid=<(\d+)> GET ({LIVECHAT}\S*) 200", server.output()[since:]):
                pids.setdefault(path, set()).add(pid)
            return pids

        def from_eight_clients(check) -> None:  # noqa: ANN001
            # Eight clients at once: while one sync worker is busy the other accepts, so both answer.
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: check(), range(16)))

        def read_all() -> None:
            for url in urls.values():
                call("GET", url)

        for _ in range(10):  # both workers cache every read
            from_eight_clients(read_all)
            if all(len(pids) == 2 for pids in answering_pids(0).values()):
                break
        assert all(len(pids) == 2 for pids in answering_pids(0).values()), "one worker answered every request"

        _write_by_hand(empty_database_url, backend, department_id, agents[0]["_id"])
        since = len(server.output())
        for _ in range(10):
            from_eight_clients(lambda: _check_new_data(lambda url: call("GET", url), urls, "agent.kept"))
            if all(len(pids) == 2 for pids in answering_pids(since).values()):
                break
        answered = answering_pids(since)
        assert len(answered) == 4 and all(len(pids) == 2 for pids in answered.values()), answered


# The service writes dates as `2016-12-13 17:22:19.109000` on SQLite, which the reads cut into their
# wire form; a date written by hand in any other form is parsed and formatted (DumpedDate).
HAND_WRITTEN_DATES = {
    "sqlite": [
        ("2026-12-07 05:56:44.123456", "2026-12-07T05:56:44.123Z"),
        ("2026-12-07 05:56:44", "2026-12-07T05:56:44.000Z"),
        ("2026-12-07T05:56:44.5", "2026-12-07T05:56:44.500Z"),
        ("2026-12-07 05:56:44.123456+02:00", "2026-12-07T03:56:44.123Z"),
    ],
    "postgresql": [
        ("2026-12-07 05:56:44.123456+00", "2026-12-07T05:56:44.123Z"),
        ("2026-12-07 05:56:44.987654+02", "2026-12-07T03:56:44.987Z"),
    ],
}


def test_a_date_written_by_hand_in_any_form_is_answered_in_rocket_chats(client, auth, backend, database_url):
    department = create_department(client, auth.admin, name="Dated by hand")
    for written, answered in HAND_WRITTEN_DATES[backend]:
        write_by_hand(database_url, "UPDATE departments SET updated_at = ? WHERE id = ?", (written, department["_id"]))
        one = client.get(f"{LIVECHAT}/department/{department['_id']}", headers=auth.admin).json
        listed = client.get(f"{LIVECHAT}/department?text=Dated", headers=auth.admin).json
        assert one["department"]["_updatedAt"] == answered, written
        assert listed["departments"][0]["_updatedAt"] == answered, written
