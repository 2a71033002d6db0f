"""Several processes writing to one database at once, as gunicorn workers do (docs/architecture.md).

Each process (multiprocessing "spawn") builds its own app on the same SQLite file or PostgreSQL
database and sends many writes through its test client while the others do the same: no
500/503, no "database is locked", no lost update, and every process sees every other's writes.
The work each process does is in tests/workers.py.
"""

import multiprocessing

import pytest
import workers
from conftest import ADMIN_PASSWORD, API, create_department

PROCESSES = 4
ROUNDS = 8
AGENTS_PER_PROCESS = 4
# Each process owns one permission and one setting, and ends on a value of its own.
PERMISSIONS = ["view-livechat-departments", "manage-livechat-departments", "add-livechat-department-agents", "view-l-room"]
FINAL_ROLES = [["livechat-agent", "admin"], ["admin", "livechat-manager"], ["livechat-monitor", "admin"], ["admin"]]
SETTINGS = ["Livechat_enabled", "Livechat_enable_business_hours", "Livechat_Routing_Method", "Livechat_business_hour_type"]
VALUES = [(True, False), (False, True), ("A", "B"), ("A", "B")]
FINAL_VALUES = [False, True, "final-2", "final-3"]


def run_processes(target, plans, database_url):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(plans)), context.Queue()
    children = [
        context.Process(target=target, args=(database_url, index, plan, barrier, results))
        for index, plan in enumerate(plans)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=300) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert errors == [], "\n".join(errors)
    return sorted((detail for _status, detail in outcomes), key=lambda report: report["index"])


@pytest.fixture
def plans(client, auth):
    """Everything the processes need, set up through the API before they start."""
    admin = auth.admin
    doomed = auth.login("admin", ADMIN_PASSWORD)  # logged out by process 0 half-way
    plain = auth.user_headers("plain")
    agent_ids = []
    for n in range(PROCESSES * AGENTS_PER_PROCESS):
        user = auth.create_user(f"agent{n:02d}")
        response = client.post(f"{API}/livechat/users/agent", json={"username": user["username"]}, headers=admin)
        assert response.status_code == 200
        agent_ids.append(user["_id"])
    department = create_department(client, admin, name="Crowded")
    return [
        {
            "admin": admin,
            "doomed": doomed,
            "plain": plain,
            "admin_password": ADMIN_PASSWORD,
            "permission": PERMISSIONS[i],
            "final_roles": FINAL_ROLES[i],
            "setting": SETTINGS[i],
            "values": VALUES[i],
            "final_value": FINAL_VALUES[i],
            "all_settings": SETTINGS,
            "rounds": ROUNDS,
            "department": department["_id"],
            "agents": agent_ids[i * AGENTS_PER_PROCESS : (i + 1) * AGENTS_PER_PROCESS],
        }
        for i in range(PROCESSES)
    ]


def test_concurrent_writes_from_several_processes(app, client, auth, database_url, plans):
    reports = run_processes(workers.write_load, plans, database_url)
    admin = auth.admin

    # No 5xx, no "database is locked", no unexpected status anywhere
    assert [report["problems"] for report in reports] == [[]] * PROCESSES
    assert sum(report["requests"] for report in reports) > PROCESSES * ROUNDS * 6

    # Exactly one process created the contended user; the others got a 400, not a 500
    contended = [report["contended"] for report in reports]
    assert sorted(status for status, _body in contended) == [200] + [400] * (PROCESSES - 1)
    for status, body in contended:
        if status == 400:
            assert body["success"] is False
            assert body.get("errorType") == "error-field-unavailable" or body["error"] == "error-duplicate-entry", body

    # No lost update: every process's last write is there
    permissions = {p["_id"]: p["roles"] for p in client.get(f"{API}/permissions.listAll", headers=admin).json["update"]}
    for permission, roles in zip(PERMISSIONS, FINAL_ROLES, strict=True):
        assert permissions[permission] == roles, permission
    assert permissions["view-user-administration"] == ["admin", "user"]
    for setting, value in zip(SETTINGS, FINAL_VALUES, strict=True):
        assert client.get(f"{API}/settings/{setting}", headers=admin).json["value"] == value, setting

    # … and every process saw all of them once the writing was over (no stale cache anywhere)
    for report in reports:
        seen = report["seen"]
        assert {p: seen["permissions"][p] for p in PERMISSIONS} == dict(zip(PERMISSIONS, FINAL_ROLES, strict=True))
        assert seen["settings"] == dict(zip(SETTINGS, FINAL_VALUES, strict=True))
        assert seen["numAgents"] == PROCESSES * (AGENTS_PER_PROCESS - AGENTS_PER_PROCESS // 2)
        assert seen["plain_users_list"] == 200  # a permission granted in process 0
        assert seen["doomed_me"] == 401  # a token logged out in process 0

    # Every user and every login token that was answered 200 exists
    created = [username for report in reports for username in report["users"]]
    assert len(created) == PROCESSES * ROUNDS
    listed = client.get(f"{API}/users.list?count=0", headers=admin).json
    usernames = {user["username"] for user in listed["users"]}
    assert set(created) | {"contended"} <= usernames
    assert listed["total"] == 2 + PROCESSES * AGENTS_PER_PROCESS + PROCESSES * ROUNDS + 1
    tokens = [token for report in reports for token in report["tokens"]]
    assert len(set(tokens)) == PROCESSES * ROUNDS
    for token in tokens:
        headers = {"X-User-Id": admin["X-User-Id"], "X-Auth-Token": token}
        assert client.get(f"{API}/me", headers=headers).status_code == 200

    # The department holds exactly the agents that were added and not removed; numAgents agrees
    department = plans[0]["department"]
    kept = {agent for plan in plans for agent in plan["agents"][AGENTS_PER_PROCESS // 2 :]}
    body = client.get(f"{API}/livechat/department/{department}", headers=admin).json
    assert body["department"]["numAgents"] == len(kept)
    assert {link["agentId"] for link in body["agents"]} == kept
    agents = client.get(f"{API}/livechat/department/{department}/agents?count=0", headers=admin).json
    assert agents["total"] == len(kept)
