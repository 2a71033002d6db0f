"""Code run in child processes (multiprocessing "spawn"), so it lives in an importable module.

Each child builds its own application from a database URL, like a gunicorn worker does, and
reports back through a queue: never by raising, so the parent always learns what went wrong.
"""

from __future__ import annotations

import traceback
from typing import Any

API = "/api/v1"
CHEAP_HASHING = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8, "ARGON2_PARALLELISM": 1}
BARRIER_TIMEOUT = 120


def upgrade(database_url: str, barrier: Any, results: Any) -> None:
    """Run the migrations, starting together with the other children."""
    try:
        from cli import upgrade_database

        barrier.wait(BARRIER_TIMEOUT)
        upgrade_database(database_url)
        results.put(("ok", None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put(("error", traceback.format_exc()))


class Recorder:
    """Sends requests through a test client and keeps every unexpected answer."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.problems: list[tuple[str, str, int, str]] = []
        self.requests = 0

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self.client.open(path, method=method, **kwargs)
        self.requests += 1
        text = response.get_data(as_text=True)
        if response.status_code not in expect or "locked" in text.lower():
            self.problems.append((method, path, response.status_code, text[:300]))
        return response


def write_load(database_url: str, index: int, plan: dict[str, Any], barrier: Any, results: Any) -> None:
    """One process of tests/test_concurrency.py: many writes at once with the other processes.

    `plan` holds the shared admin/plain headers, the permission and setting this process owns,
    the number of rounds, and optionally a department and the agents this process adds to it.
    """
    report: dict[str, Any] = {"index": index, "tokens": [], "users": [], "seen": {}}
    try:
        import db
        from app import create_app

        app = create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_HASHING})
        rec = Recorder(app.test_client())
        admin, plain = plan["admin"], plan["plain"]
        permission, setting = plan["permission"], plan["setting"]
        rounds = plan["rounds"]

        # Warm this process's read caches with the state before anyone writes.
        rec.call("GET", f"{API}/me", headers=admin)
        rec.call("GET", f"{API}/me", headers=plan["doomed"])
        rec.call("GET", f"{API}/users.list", headers=plain, expect=(403,))
        rec.call("GET", f"{API}/permissions.listAll", headers=admin)

        barrier.wait(BARRIER_TIMEOUT)  # --- everyone writes at once ---
        for r in range(rounds):
            roles = plan["final_roles"] if r == rounds - 1 else (["admin"] if r % 2 else ["admin", "livechat-agent"])
            rec.call("POST", f"{API}/permissions.update", json={"permissions": [{"_id": permission, "roles": roles}]}, headers=admin)
            value = plan["final_value"] if r == rounds - 1 else plan["values"][r % 2]
            rec.call("POST", f"{API}/settings/{setting}", json={"value": value}, headers=admin)
            login = rec.call("POST", f"{API}/login", json={"user": "admin", "password": plan["admin_password"]})
            if login.status_code == 200:
                report["tokens"].append(login.json["data"]["authToken"])
            username = f"w{index}-u{r}"
            body = {"username": username, "email": f"{username}@example.com", "name": username, "password": "pw"}
            if rec.call("POST", f"{API}/users.create", json=body, headers=admin).status_code == 200:
                report["users"].append(username)
            # read-your-writes, through this process's caches
            listed = rec.call("GET", f"{API}/permissions.listAll", headers=admin)
            if listed.status_code == 200:
                mine = next(p["roles"] for p in listed.json["update"] if p["_id"] == permission)
                if mine != roles:
                    rec.problems.append(("GET", "permissions.listAll", 200, f"{permission}: {mine} != {roles}"))
            rec.call("GET", f"{API}/me", headers=admin)

        # Everyone creates the same user: exactly one may win, the others get a 400.
        barrier.wait(BARRIER_TIMEOUT)
        body = {"username": "contended", "email": "contended@example.com", "name": "c", "password": "pw"}
        contended = rec.call("POST", f"{API}/users.create", json=body, headers=admin, expect=(200, 400))
        report["contended"] = (contended.status_code, contended.json)

        # Agents into one department, all processes at once; then each removes its first half.
        department = plan.get("department")
        if department:
            path = f"{API}/livechat/department/{department}/agents"
            agents = plan["agents"]
            for agent in agents:
                rec.call("POST", path, json={"upsert": [{"agentId": agent}], "remove": []}, headers=admin)
            barrier.wait(BARRIER_TIMEOUT)
            for agent in agents[: len(agents) // 2]:
                rec.call("POST", path, json={"upsert": [], "remove": [{"agentId": agent}]}, headers=admin)

        barrier.wait(BARRIER_TIMEOUT)  # --- all writes done: this process must see all of them ---
        listed = rec.call("GET", f"{API}/permissions.listAll", headers=admin)
        report["seen"]["permissions"] = {p["_id"]: p["roles"] for p in listed.json["update"]}
        report["seen"]["settings"] = {
            name: rec.call("GET", f"{API}/settings/{name}", headers=admin).json.get("value")
            for name in plan["all_settings"]
        }
        if department:
            report["seen"]["numAgents"] = rec.call(
                "GET", f"{API}/livechat/department/{department}", headers=admin
            ).json["department"].get("numAgents")

        # A change made in one process reaches the caches of all the others.
        barrier.wait(BARRIER_TIMEOUT)
        if index == 0:
            set_plain = {"permissions": [{"_id": "view-user-administration", "roles": ["admin", "user"]}]}
            rec.call("POST", f"{API}/permissions.update", json=set_plain, headers=admin)
            rec.call("POST", f"{API}/logout", headers=plan["doomed"])
        barrier.wait(BARRIER_TIMEOUT)
        report["seen"]["plain_users_list"] = rec.call("GET", f"{API}/users.list", headers=plain).status_code
        report["seen"]["doomed_me"] = rec.call("GET", f"{API}/me", headers=plan["doomed"], expect=(401,)).status_code

        report["problems"] = rec.problems
        report["requests"] = rec.requests
        db.dispose(app)
        results.put(("ok", report))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put(("error", f"process {index}:\n{traceback.format_exc()}"))
        try:
            barrier.abort()  # release the others instead of letting them wait for us
        except Exception:  # noqa: BLE001
            pass
