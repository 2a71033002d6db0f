"""Department events (issue 15): derived from the database's change log, they tell a
department's history and feed a mirror that stays equal to the department list, whoever wrote."""

from __future__ import annotations

import random
from typing import Any

import pytest
from conftest import API, FORBIDDEN_BODY, create_department, set_permission, set_setting, write_by_hand

import cli
import department_service
import events

EXT = "/api/ext/v1/livechat"


def _history(client, headers, department_id: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"{EXT}/department/{department_id}/history{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def _feed(client, headers, after: str | None = None, limit: int = 1000) -> tuple[list[dict[str, Any]], str]:
    query = f"?limit={limit}" + (f"&after={after}" if after is not None else "")
    response = client.get(f"{EXT}/department.changes{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["events"], response.json["cursor"]


def test_history_tells_who_changed_what_newest_first_and_outlives_the_department(client, auth, database_url):
    set_setting(client, auth.admin, "Omnichannel_enable_department_removal", True)
    agent = auth.create_user("agent.one", ["livechat-agent"])
    department = create_department(client, auth.admin, name="Billing")
    department_id = department["_id"]
    response = client.put(
        f"{API}/livechat/department/{department_id}",
        json={"department": {"name": "Billing EU", "enabled": True, "showOnRegistration": True, "email": "bla@bla"},
              "agents": [{"agentId": agent["_id"], "count": 1, "order": 2}]},
        headers={**auth.admin, "X-Request-ID": "req-put"},
    )
    assert response.status_code == 200, response.json
    assert client.post(f"{API}/livechat/department/{department_id}/archive", headers=auth.admin).status_code == 200
    write_by_hand(database_url, "UPDATE departments SET description = ? WHERE id = ?", ("by hand", department_id))
    assert client.delete(f"{API}/livechat/department/{department_id}", headers=auth.admin).status_code == 200

    body = _history(client, auth.admin, department_id)
    kinds = [event["kind"] for event in body["events"]]
    assert kinds == ["deleted", "updated", "archived", "updated", "created"]
    assert body["total"] == 5 and body["count"] == 5 and body["offset"] == 0
    deleted, by_hand, archived, renamed, created = body["events"]
    assert created["after"]["name"] == "Billing" and created["before"] == {}
    assert created["actor"]["type"] == "user" and created["actor"]["username"] == "admin"
    assert renamed["before"]["name"] == "Billing" and renamed["after"]["name"] == "Billing EU"
    assert "email" not in renamed["after"]  # only the fields that changed
    assert renamed["agents"]["added"] == [{"agentId": agent["_id"], "username": "agent.one", "count": 1, "order": 2}]
    assert renamed["actor"] == {"type": "user", "userId": auth.admin["X-User-Id"], "username": "admin", "requestId": "req-put"}
    assert archived["before"]["archived"] is False or "archived" not in archived["before"] or archived["before"]["archived"] is None
    assert archived["after"]["archived"] is True
    assert by_hand == {**by_hand, "kind": "updated", "before": {"description": None}, "after": {"description": "by hand"}}
    assert by_hand["actor"] == {"type": "database"}
    assert deleted["before"]["name"] == "Billing EU" and deleted["after"] == {}
    assert deleted["agents"]["removed"][0]["agentId"] == agent["_id"]
    times = [event["time"] for event in body["events"]]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)

    page = _history(client, auth.admin, department_id, "?offset=1&count=2")
    assert [event["kind"] for event in page["events"]] == ["updated", "archived"] and page["total"] == 5


def test_the_command_line_is_named_as_the_actor(app, client, auth):
    with app.app_context(), cli.database_session(write=True) as session:
        department, _links = department_service.save_department(
            session, None, {"name": "From the shell", "email": "a@b.c", "enabled": True, "showOnRegistration": True}, None, limit=0
        )
    (event,) = _history(client, auth.admin, department.id)["events"]
    assert (event["kind"], event["actor"], event["after"]["name"]) == ("created", {"type": "cli"}, "From the shell")


def test_history_and_feed_need_their_permission_which_permissions_update_can_give(client, auth):
    department = create_department(client, auth.admin)
    manager = auth.user_headers("manager.one", ["livechat-manager"])
    agent = auth.user_headers("agent.two", ["livechat-agent"])
    assert client.get(f"{EXT}/department/{department['_id']}/history", headers=manager).status_code == 200
    for url in (f"{EXT}/department/{department['_id']}/history", f"{EXT}/department.changes"):
        response = client.get(url, headers=agent)
        assert (response.status_code, response.json) == (403, FORBIDDEN_BODY)
        assert client.get(url).status_code == 401
    set_permission(client, auth.admin, "view-livechat-department-history", ["admin", "livechat-agent"])
    assert client.get(f"{EXT}/department.changes", headers=agent).status_code == 200
    assert client.get(f"{EXT}/department.changes", headers=manager).status_code == 403


@pytest.mark.parametrize(
    "query",
    ["?after=abc", "?after=-1", "?after=1.2.3", "?limit=0", "?limit=1001", "?limit=x", "?after=1&after=2", "?unknown=1",
     "?after=" + "9" * 40],
)
def test_bad_feed_parameters_are_400(client, auth, query):
    response = client.get(f"{EXT}/department.changes{query}", headers=auth.admin)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and response.json["error"]


def test_the_feed_pages_by_cursor_without_losing_or_repeating_an_event(client, auth):
    ids = [create_department(client, auth.admin, name=f"Dept {k}")["_id"] for k in range(7)]
    everything, head = _feed(client, auth.admin)
    assert [event["departmentId"] for event in everything] == ids
    paged, cursor = [], None
    for _ in range(20):
        events, cursor = _feed(client, auth.admin, cursor, limit=3)
        if not events:
            break
        assert len(events) <= 3
        paged += events
    assert paged == everything and cursor == head
    cursors = [event["cursor"] for event in everything]
    assert [tuple(map(int, c.split("."))) for c in cursors] == sorted(tuple(map(int, c.split("."))) for c in cursors)


def test_one_transaction_changing_many_departments_is_one_event_each_with_its_own_cursor(client, auth, runner):
    agent = auth.create_user("agent.many", ["livechat-agent"])
    ids = [create_department(client, auth.admin, name=f"Dept {k}")["_id"] for k in range(3)]
    _, head = _feed(client, auth.admin)
    # Removing the agent role drops the agent's links in every department: one transaction.
    for department_id in ids:
        body = {"upsert": [{"agentId": agent["_id"], "count": 0, "order": 0}], "remove": []}
        assert client.post(f"{API}/livechat/department/{department_id}/agents", json=body, headers=auth.admin).status_code == 200
    _, head = _feed(client, auth.admin)
    response = client.delete(f"{API}/livechat/users/agent/{agent['_id']}", headers=auth.admin)
    assert response.status_code == 200, response.json
    events, _ = _feed(client, auth.admin, head)
    assert sorted(event["departmentId"] for event in events) == sorted(ids)
    assert {event["kind"] for event in events} == {"agents-changed"}
    assert len({event["cursor"] for event in events}) == 3 and len({event["cursor"].split(".")[0] for event in events}) == 1
    # Resuming inside the transaction gives the rest of it.
    rest, _ = _feed(client, auth.admin, events[0]["cursor"])
    assert rest == events[1:]


def test_events_larger_than_a_read_of_the_log_come_whole_and_page_alike(client, auth):
    """A page of the feed first reads `limit` + 64 rows of the log (events.feed), then more: 16
    transactions of 81 rows each (80 agent links at once) overflow every read, whatever the limit,
    and still come as whole events; paging one event at a time gives what one read gives."""
    agents = [auth.create_user(f"agent.big{k}", ["livechat-agent"]) for k in range(80)]
    ids = [create_department(client, auth.admin, name=f"Big {k}")["_id"] for k in range(16)]
    _, head = _feed(client, auth.admin)
    body = {"upsert": [{"agentId": agent["_id"], "count": 0, "order": 0} for agent in agents], "remove": []}
    for department_id in ids:
        response = client.post(f"{API}/livechat/department/{department_id}/agents", json=body, headers=auth.admin)
        assert response.status_code == 200, response.json
    everything, end = _feed(client, auth.admin, head)
    assert [(event["departmentId"], event["kind"], len(event["agents"]["added"])) for event in everything] == [
        (department_id, "agents-changed", 80) for department_id in ids
    ]
    paged, cursor = [], head
    for _ in range(20):
        events, cursor = _feed(client, auth.admin, cursor, limit=1)
        if not events:
            break
        paged += events
    assert paged == everything and cursor == end


def test_a_page_of_the_feed_reads_the_log_in_index_order_without_sorting(app):
    # Sorting the rows after the cursor made every page read all of them (PostgreSQL with stale
    # statistics, right after many writes); the (version, seq) index gives the order (migration 0013).
    engine = app.extensions["db.engine"]
    with engine.connect() as connection:
        query = events.log_rows_after(5, False, 1064).compile(connection, compile_kwargs={"literal_binds": True})
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_sort = off")  # a sort only where no index gives the order
            plan = connection.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
            assert not any("Sort" in line for line in plan), plan
            assert any("ix_department_changes_version_seq" in line for line in plan), plan
        else:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()]
            assert not any("TEMP B-TREE" in line for line in plan), plan


def test_a_cursor_older_than_the_retention_is_refused_with_a_cursor_to_start_again_from(app, client, auth, runner):
    create_department(client, auth.admin, name="Old")
    events, _ = _feed(client, auth.admin)
    old_cursor = events[0]["cursor"]
    result = runner.invoke(args=["prune-events", "--days", "0"])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    create_department(client, auth.admin, name="New")
    for after in (old_cursor, None):
        response = client.get(f"{EXT}/department.changes" + (f"?after={old_cursor}" if after else ""), headers=auth.admin)
        assert response.status_code == 410, response.json
        assert "list the departments again" in response.json["error"] and response.json["cursor"]
    restart = client.get(f"{EXT}/department.changes", headers=auth.admin)
    events, _ = _feed(client, auth.admin, restart.json["cursor"])
    assert events == []


def test_prune_keeps_what_is_younger_than_the_retention(app, client, auth, runner):
    department = create_department(client, auth.admin, name="Kept")
    result = runner.invoke(args=["prune-events"])  # default: 365 days
    assert result.exit_code == 0 and result.output.startswith("0 ")
    assert _history(client, auth.admin, department["_id"])["total"] == 1


# --- the mirror -------------------------------------------------------------------------------


def _apply(mirror: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
    department_id = event["departmentId"]
    if event["kind"] == "deleted":
        mirror.pop(department_id, None)
        return
    entry = mirror.setdefault(department_id, {"fields": {}, "agents": {}})
    for key, value in event["after"].items():
        if value is None:
            entry["fields"].pop(key, None)
        else:
            entry["fields"][key] = value
    for key in event["before"]:
        if key not in event["after"]:
            entry["fields"].pop(key, None)
    for link in event["agents"]["added"]:
        entry["agents"][link["agentId"]] = (link["count"], link["order"])
    for link in event["agents"]["removed"]:
        entry["agents"].pop(link["agentId"], None)
    for link in event["agents"]["changed"]:
        entry["agents"][link["agentId"]] = (link["after"]["count"], link["after"]["order"])


def _listed(client, headers) -> dict[str, dict[str, Any]]:
    listed = {}
    response = client.get(f"{API}/livechat/department?count=0&showArchived=true", headers=headers)
    for department in response.json["departments"]:
        fields = {k: v for k, v in department.items() if k not in ("_id", "_updatedAt") and v is not None}
        agents = client.get(f"{API}/livechat/department/{department['_id']}/agents?count=0", headers=headers).json["agents"]
        listed[department["_id"]] = {"fields": fields, "agents": {a["agentId"]: (a["count"], a["order"]) for a in agents}}
    return listed


def test_the_feed_applied_to_an_empty_mirror_after_random_writes_equals_the_list(client, auth, database_url):
    set_setting(client, auth.admin, "Omnichannel_enable_department_removal", True)
    rng = random.Random(15)
    agents = [auth.create_user(f"agent.{k}", ["livechat-agent"]) for k in range(5)]
    ids: list[str] = []
    mirror: dict[str, dict[str, Any]] = {}
    cursor = None
    for step in range(160):
        action = rng.choice(["create", "create", "update", "agents", "agents", "archive", "unarchive", "delete", "role", "hand", "follow"])
        if action == "create" or not ids:
            extra = {"customColor": rng.choice(["red", "blue"])} if rng.random() < 0.3 else {}
            ids.append(create_department(client, auth.admin, name=f"D{step}", **extra)["_id"])
        elif action == "update":
            department_id = rng.choice(ids)
            fields = {"name": f"U{step}", "enabled": rng.random() < 0.5, "showOnRegistration": True, "email": f"u{step}@x.y",
                      "description": rng.choice([None, f"desc {step}"])}
            fields = {k: v for k, v in fields.items() if v is not None}
            client.put(f"{API}/livechat/department/{department_id}", json={"department": fields}, headers=auth.admin)
        elif action == "agents":
            upsert = [{"agentId": a["_id"], "count": rng.randint(0, 3), "order": rng.randint(0, 3)} for a in rng.sample(agents, 2)]
            remove = [{"agentId": rng.choice(agents)["_id"]}] if rng.random() < 0.4 else []
            client.post(f"{API}/livechat/department/{rng.choice(ids)}/agents", json={"upsert": upsert, "remove": remove}, headers=auth.admin)
        elif action in ("archive", "unarchive"):
            client.post(f"{API}/livechat/department/{rng.choice(ids)}/{action}", headers=auth.admin)
        elif action == "delete":
            department_id = ids.pop(rng.randrange(len(ids)))
            assert client.delete(f"{API}/livechat/department/{department_id}", headers=auth.admin).status_code == 200
        elif action == "role":
            agent = rng.choice(agents)
            client.delete(f"{API}/livechat/users/agent/{agent['_id']}", headers=auth.admin)
            client.post(f"{API}/livechat/users/agent", json={"username": agent["username"]}, headers=auth.admin)
        elif action == "hand":
            write_by_hand(database_url, "UPDATE departments SET description = ?, enabled = ? WHERE id = ?",
                     (f"hand {step}", rng.random() < 0.5, rng.choice(ids)))
        else:  # a mirror following as it goes, not only at the end
            events, cursor = _feed(client, auth.admin, cursor, limit=rng.randint(1, 7))
            for event in events:
                _apply(mirror, event)
    while True:
        events, cursor = _feed(client, auth.admin, cursor, limit=50)
        if not events:
            break
        for event in events:
            _apply(mirror, event)
    assert mirror == _listed(client, auth.admin)
    assert len(mirror) == len(ids) > 0

