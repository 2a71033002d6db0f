"""The read caches (cache.py) never change an answer: same bytes as the uncached path, and a
write committed through one worker is seen by the very next read in any other worker.

Two applications on one database stand for two gunicorn workers: each has its own caches
and its own connections, exactly what separate worker processes have.
"""

from __future__ import annotations

import json
import random
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from conftest import ADMIN_PASSWORD, CHEAP_HASHING, create_department

import cache
import db
import department_service
import department_routes
from app import create_app
from models import DataVersion, Department, DepartmentChange

API = "/api/v1/livechat"


@pytest.fixture
def second_worker(database_url):
    """Another application on the same database, with its own caches."""
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_HASHING})
    yield app
    db.dispose(app)


@pytest.fixture
def uncached_worker(database_url):
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "READ_CACHE": False, **CHEAP_HASHING})
    yield app
    db.dispose(app)


def _populate(client, auth):
    agent = auth.create_user("agent.one", ["livechat-agent"])
    first = create_department(client, auth.admin, name="Billing", agents=[{"agentId": agent["_id"], "count": 2}])
    second = create_department(client, auth.admin, name="École", maxNumberSimultaneousChat=3)
    archived = create_department(client, auth.admin, name="Old")
    assert client.post(f"{API}/department/{archived['_id']}/archive", headers=auth.admin).status_code == 200
    return agent, first, second, archived


def test_cached_responses_are_byte_identical_to_uncached_ones(app, client, auth, uncached_worker):
    agent, first, second, archived = _populate(client, auth)
    urls = [
        f"{API}/department",
        f"{API}/department?count=2&offset=1&sort=%7B%22name%22%3A-1%7D",
        f"{API}/department?text=%C3%A9cole",
        f"{API}/department?showArchived=true",
        f"{API}/departments/archived",
        f"{API}/department/{first['_id']}",
        f"{API}/department/{first['_id']}?includeAgents=false",
        f"{API}/department/unknown-id",
        f"{API}/department/{first['_id']}/agents",
        f"{API}/department.autocomplete?selector=%7B%22term%22%3A%22b%22%7D",
        f"{API}/department.listByIds?ids[]={first['_id']}&ids[]={second['_id']}",
        f"{API}/department/isDepartmentCreationAvailable",
        f"{API}/agents/{agent['_id']}/departments",
    ]
    uncached = uncached_worker.test_client()
    for url in urls:
        warm = client.get(url, headers=auth.admin)
        hit = client.get(url, headers=auth.admin)  # served from the cache
        reference = uncached.get(url, headers=auth.admin)
        assert reference.status_code == hit.status_code == warm.status_code == 200, url
        assert hit.get_data() == reference.get_data() == warm.get_data(), url
        assert hit.headers["Content-Type"] == reference.headers["Content-Type"] == "application/json"


def test_the_cache_really_serves_repeated_reads(app, client, auth):
    _populate(client, auth)
    client.get(f"{API}/department", headers=auth.admin)
    lists = app.extensions["caches"].lists
    assert any(key[0].startswith(f"{API}/department?") for key in lists.entries)


def test_a_write_in_one_worker_is_seen_by_the_next_read_in_another(client, auth, second_worker):
    other = second_worker.test_client()
    login = other.post("/api/v1/login", json={"user": "admin", "password": ADMIN_PASSWORD}).json["data"]
    other_headers = {"X-User-Id": login["userId"], "X-Auth-Token": login["authToken"]}
    created = create_department(client, auth.admin, name="Before")

    # Both workers cache the list and the department.
    for worker, headers in ((client, auth.admin), (other, other_headers)):
        assert [d["name"] for d in worker.get(f"{API}/department", headers=headers).json["departments"]] == ["Before"]
        assert worker.get(f"{API}/department/{created['_id']}", headers=headers).json["department"]["name"] == "Before"

    # A write through the first worker...
    response = client.put(
        f"{API}/department/{created['_id']}", json={"department": {"name": "After"}}, headers=auth.admin
    )
    assert response.status_code == 200
    create_department(client, auth.admin, name="Added")

    # ...is what the other worker answers next.
    names = [d["name"] for d in other.get(f"{API}/department", headers=other_headers).json["departments"]]
    assert names == ["Added", "After"]
    assert other.get(f"{API}/department/{created['_id']}", headers=other_headers).json["department"]["name"] == "After"


def test_a_permission_change_in_one_worker_applies_at_once_in_another(client, auth, second_worker):
    other = second_worker.test_client()
    manager = auth.user_headers("manager.one", ["livechat-manager"])
    assert other.get(f"{API}/department", headers=manager).status_code == 200  # cached as allowed

    response = client.post(
        "/api/v1/permissions.update",
        json={"permissions": [{"_id": "view-livechat-departments", "roles": ["admin"]}, {"_id": "view-l-room", "roles": ["admin"]}]},
        headers=auth.admin,
    )
    assert response.status_code == 200
    assert other.get(f"{API}/department", headers=manager).status_code == 403


def test_logout_in_one_worker_ends_the_session_in_another(client, auth, second_worker):
    other = second_worker.test_client()
    headers = auth.user_headers("manager.two", ["livechat-manager"])
    assert other.get(f"{API}/department", headers=headers).status_code == 200
    assert client.post("/api/v1/logout", headers=headers).status_code == 200
    assert other.get(f"{API}/department", headers=headers).status_code == 401


def test_a_setting_change_in_one_worker_applies_at_once_to_cached_reads_in_another(client, auth, second_worker):
    # Settings have a version counter of their own (department writes do not reload them), so a
    # cached response must still change with a setting it depends on: here the default page size.
    other = second_worker.test_client()
    for name in ("Alpha", "Bravo", "Charlie"):
        create_department(client, auth.admin, name=name)
    assert other.get(f"{API}/department", headers=auth.admin).json["count"] == 3  # cached in `other`

    response = client.post("/api/v1/settings/API_Default_Count", json={"value": 2}, headers=auth.admin)
    assert response.status_code == 200
    page = other.get(f"{API}/department", headers=auth.admin).json
    assert (page["count"], [d["name"] for d in page["departments"]]) == (2, ["Alpha", "Bravo"])


def test_the_response_cache_is_bounded_in_entries_and_bytes_oldest_first():
    responses = cache.VersionedCache(db.DATA, max_entries=3, max_bytes=10)
    built = []

    def get(key, body, version=1):
        return responses.get_or_build(version, key, lambda: built.append(key) or body)

    get("a", b"1234")
    get("b", b"1234")
    get("c", b"12")  # 10 bytes held
    get("d", b"1")  # a fourth entry: "a" goes
    assert list(responses.entries) == ["b", "c", "d"] and responses.size == 7
    get("e", b"12345")  # 12 bytes would exceed 10: "b" goes
    assert list(responses.entries) == ["c", "d", "e"] and responses.size == 8
    assert get("f", b"x" * 11) == b"x" * 11  # larger than the cache: served, not kept
    assert "f" not in responses.entries and responses.size == 8
    get("c", b"other")  # still cached: not rebuilt
    assert built.count("c") == 1
    get("c", b"new", version=2)  # a new data version starts empty
    assert list(responses.entries) == ["c"] and responses.size == 3


def test_a_loaded_query_string_is_kept_read_only_and_a_failed_one_is_not(app, client, auth):
    from types import MappingProxyType

    from schemas import DepartmentListQuerySchema

    kept_queries = app.extensions["caches"].queries.entries

    for _ in range(2):  # a bad query answers the same 400 every time: nothing was kept for it
        response = client.get(f"{API}/department?count=-1", headers=auth.admin)
        assert response.status_code == 400 and response.json["error"] == "must be >= 0 [invalid-params]"
    assert (DepartmentListQuerySchema, b"count=-1") not in kept_queries

    assert client.get(f"{API}/department?count=7", headers=auth.admin).json["count"] == 0
    kept = kept_queries[(DepartmentListQuerySchema, b"count=7")]
    assert isinstance(kept, MappingProxyType) and kept["count"] == 7


def _login(worker_app):
    client = worker_app.test_client()
    login = client.post("/api/v1/login", json={"user": "admin", "password": ADMIN_PASSWORD}).json["data"]
    return client, {"X-User-Id": login["userId"], "X-Auth-Token": login["authToken"]}


def test_random_writes_through_two_workers_never_leave_a_stale_read(client, auth, second_worker, uncached_worker):
    """Writes of every kind, each through one of two caching workers; after each, both workers
    answer every read exactly as a worker without caches does (same bytes). Both keep their
    caches warm between writes, so any entry a write should have invalidated would be served."""
    rng = random.Random(20261126)
    other, other_headers = _login(second_worker)
    uncached, uncached_headers = _login(uncached_worker)
    agents = [auth.create_user(f"agent.{k}", ["livechat-agent"])["_id"] for k in range(4)]
    departments = [
        create_department(client, auth.admin, name=f"Dept {k:02d}", description=f"d{k}", chatClosingTags=["a"],
                          agents=[{"agentId": agents[k % 4]}])["_id"]
        for k in range(12)
    ]

    def sort(field: str, direction: int) -> str:
        return "sort=" + quote(json.dumps({field: direction}, separators=(",", ":")))

    def reads() -> list[str]:
        urls = [
            f"{API}/department", f"{API}/department?count=5&offset=3", f"{API}/department?text=dept%200",
            f"{API}/department?{sort('_updatedAt', -1)}&count=4", f"{API}/department?showArchived=true",
            f"{API}/department?{sort('numAgents', -1)}", f"{API}/departments/archived",
            f"{API}/department?enabled=true&count=3&offset=2",
            # pages that later writes may leave alone (list cache): windows, sorts, filters
            f"{API}/department?count=2", f"{API}/department?count=3&offset=9", f"{API}/department?count=4&offset=40",
            f"{API}/department?{sort('name', -1)}&count=3", f"{API}/department?{sort('email', 1)}&count=3",
            f"{API}/department?{sort('description', 1)}&count=3", f"{API}/department?{sort('showOnOfflineForm', -1)}&count=5",
            f"{API}/department?{sort('enabled', 1)}&count=4&offset=1", f"{API}/department?text=dept%201&count=2",
            f"{API}/department?text=x&enabled=true", f"{API}/departments/archived?count=1",
            f"{API}/department?count=3&excludeDepartmentId={departments[0]}",
            # sorted by columns every write moves, filtered so that most writes are to departments not listed
            f"{API}/department?text=dept%201&{sort('_updatedAt', -1)}&count=2",
            f"{API}/department?text=dept%200&{sort('numAgents', -1)}&count=3",
            f"{API}/department?text=first&enabled=true&{sort('_updatedAt', 1)}",
        ]
        for department_id in rng.sample(departments, min(4, len(departments))):
            urls += [f"{API}/department/{department_id}", f"{API}/department/{department_id}/agents"]
        return urls + [f"{API}/agents/{agents[0]}/departments"]

    def write(worker, headers) -> None:
        target = rng.choice(departments)
        kind = rng.choice(["create", "update", "update", "agents", "agents", "archive", "unarchive", "delete", "user"])
        if kind == "create":  # named to sort anywhere: before, inside and after the pages read
            name = rng.choice([f"Dept {rng.randrange(100):02d}x", "AAA first", "zzz last", "Élan", "Dept 1"])
            fields = {"email": f"{rng.choice('amz')}{rng.randrange(9)}@example.com", "enabled": rng.random() < 0.7}
            if rng.random() < 0.5:
                fields |= {"description": f"d{rng.randrange(9)}", "showOnOfflineForm": rng.random() < 0.5}
            departments.append(create_department(worker, headers, name=name, **fields)["_id"])
            return
        if kind == "update":
            change = rng.choice([{"name": f"Dept {rng.randrange(100):02d}"}, {"description": f"d{rng.randrange(9)}"},
                                 {"chatClosingTags": ["b", str(rng.randrange(9))]}, {"enabled": rng.random() < 0.5},
                                 {"customField": rng.randrange(9)}])
            response = worker.put(f"{API}/department/{target}", json={"department": change}, headers=headers)
        elif kind == "agents":
            body = {"upsert": [{"agentId": rng.choice(agents), "count": rng.randrange(5)}], "remove": []}
            if rng.random() < 0.4:
                body = {"upsert": [], "remove": [{"agentId": rng.choice(agents)}]}
            response = worker.post(f"{API}/department/{target}/agents", json=body, headers=headers)
        elif kind in ("archive", "unarchive"):
            response = worker.post(f"{API}/department/{target}/{kind}", headers=headers)
        elif kind == "delete":
            response = worker.delete(f"{API}/department/{target}", headers=headers)
            departments.remove(target)
        else:  # an agent leaves every department
            response = worker.delete(f"{API}/users/agent/{rng.choice(agents)}", headers=headers)
        assert response.status_code == 200, (kind, response.json)

    for step in range(60):
        worker, headers = rng.choice([(client, auth.admin), (other, other_headers)])
        write(worker, headers)
        for url in reads():
            expected = uncached.get(url, headers=uncached_headers)
            for reader, reader_headers in ((client, auth.admin), (other, other_headers)):
                got = reader.get(url, headers=reader_headers)
                assert (got.status_code, got.get_data()) == (expected.status_code, expected.get_data()), (step, url)
    # The pages kept across writes were really served again, not all built afresh.
    for worker in (client.application, second_worker):
        assert worker.extensions["caches"].lists.kept > 50


def test_a_write_to_one_department_keeps_the_cached_answers_of_the_others(client, auth, second_worker):
    other, other_headers = _login(second_worker)
    kept = create_department(client, auth.admin, name="Kept")
    changed = create_department(client, auth.admin, name="Changed")
    for department in (kept, changed):
        assert other.get(f"{API}/department/{department['_id']}", headers=other_headers).status_code == 200
    answers = second_worker.extensions["caches"].department_responses.departments

    response = client.put(
        f"{API}/department/{changed['_id']}", json={"department": {"name": "Renamed"}}, headers=auth.admin
    )
    assert response.status_code == 200
    assert other.get(f"{API}/department/{changed['_id']}", headers=other_headers).json["department"]["name"] == "Renamed"
    # The other department's answer was not dropped (nor built again).
    assert kept["_id"] in answers
    assert other.get(f"{API}/department/{kept['_id']}", headers=other_headers).json["department"]["name"] == "Kept"


def test_each_committed_write_bumps_the_version_once_and_logs_what_it_changed(app, client, auth):
    """The version bump and the change log: one statement on PostgreSQL, two on SQLite."""

    def logged_since(version):
        with app.app_context():
            session = app.extensions["db.sessionmaker"]()
            current = session.execute(sa.select(DataVersion.version).where(DataVersion.id == db.DATA)).scalar_one()
            rows = session.execute(
                sa.select(DepartmentChange.version, DepartmentChange.department_id, DepartmentChange.fields)
                .where(DepartmentChange.version > version)
                .order_by(DepartmentChange.version, DepartmentChange.department_id)
            ).all()
            session.close()
        return current, [tuple(row) for row in rows]

    agent = auth.create_user("agent.one", ["livechat-agent"])
    start, _ = logged_since(0)
    created = create_department(client, auth.admin, name="Logged")["_id"]
    update = {"department": {"description": "changed"}}
    assert client.put(f"{API}/department/{created}", json=update, headers=auth.admin).status_code == 200
    for count in (1, 2):  # a new agent, then the same agent again
        upsert = {"upsert": [{"agentId": agent["_id"], "count": count}], "remove": []}
        assert client.post(f"{API}/department/{created}/agents", json=upsert, headers=auth.admin).status_code == 200
    assert client.delete(f"{API}/department/{created}", headers=auth.admin).status_code == 200

    current, rows = logged_since(start)
    assert current == start + 5
    assert rows == [
        (start + 1, created, db.CREATED),
        (start + 2, created, "description,updated_at"),
        (start + 3, created, "agents,num_agents,updated_at"),
        (start + 4, created, "agents,updated_at"),  # the same agents: numAgents did not move
        # A deletion also clears other departments' fallback to it, in a statement that cannot
        # say which departments it changes: "any department", changes unknown (NULL).
        (start + 5, db.ANY_DEPARTMENT, None),
        (start + 5, created, db.DELETED),
    ]


def test_the_change_log_is_pruned_and_a_worker_behind_it_drops_everything(client, auth, second_worker, monkeypatch):
    monkeypatch.setattr(db, "CHANGES_KEPT", 4)
    monkeypatch.setattr(db, "PRUNE_EVERY", 2)
    other, other_headers = _login(second_worker)
    first = create_department(client, auth.admin, name="First")
    assert other.get(f"{API}/department/{first['_id']}", headers=other_headers).json["department"]["name"] == "First"

    client.put(f"{API}/department/{first['_id']}", json={"department": {"name": "Changed"}}, headers=auth.admin)
    for k in range(8):  # writes to other departments push the change to `first` out of the log
        create_department(client, auth.admin, name=f"Filler {k}")
    with second_worker.app_context():
        session = second_worker.extensions["db.sessionmaker"]()
        logged = [v for (v,) in session.execute(sa.select(DepartmentChange.version))]
        current = session.execute(sa.select(DataVersion.version).where(DataVersion.id == db.DATA)).scalar_one()
        session.close()
    assert logged and min(logged) > current - 4 - 2  # pruned: at most CHANGES_KEPT + PRUNE_EVERY versions kept
    assert other.get(f"{API}/department/{first['_id']}", headers=other_headers).json["department"]["name"] == "Changed"


def test_on_postgresql_a_read_only_request_cannot_write(app, client, auth, database_url):
    """PostgreSQL reads run in autocommit, where a write would commit without its version bump:
    the session of a GET request refuses any write instead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite reads keep their transaction")
    create_department(client, auth.admin, name="Unchanged")
    with app.test_request_context(f"{API}/department", method="GET"):
        session = db.session()
        with pytest.raises(RuntimeError, match="read-only request wrote to departments"):
            session.execute(sa.update(Department).values(description="written by a read"))
        db.close_session()
    assert client.get(f"{API}/department", headers=auth.admin).json["departments"][0].get("description") is None


def test_a_list_page_outlives_the_writes_that_cannot_change_it_and_no_other(client, auth, second_worker, uncached_worker):
    other, other_headers = _login(second_worker)
    uncached, uncached_headers = _login(uncached_worker)
    first = create_department(client, auth.admin, name="B first")
    create_department(client, auth.admin, name="C second")
    url = f"{API}/department?count=2"
    lists = second_worker.extensions["caches"].lists

    def read_through_other_worker() -> dict:
        got, expected = other.get(url, headers=other_headers), uncached.get(url, headers=uncached_headers)
        assert got.get_data() == expected.get_data()
        return got.json

    def update(department_id: str, **fields: object) -> None:
        response = client.put(f"{API}/department/{department_id}", json={"department": fields}, headers=auth.admin)
        assert response.status_code == 200

    assert read_through_other_worker()["total"] == 2
    after = create_department(client, auth.admin, name="Z after the page")
    assert read_through_other_worker()["total"] == 3 and lists.kept == 1  # kept: only the total moved
    update(after["_id"], description="not on the page, not in its order")
    read_through_other_worker()
    assert lists.kept == 2
    create_department(client, auth.admin, name="A before the page")
    assert [d["name"] for d in read_through_other_worker()["departments"]] == ["A before the page", "B first"]
    assert lists.kept == 2  # built again
    update(first["_id"], description="on the page")
    assert read_through_other_worker()["departments"][1]["description"] == "on the page"
    assert lists.kept == 2


def test_a_page_sorted_by_agents_outlives_an_upsert_of_agents_already_linked(client, auth, second_worker, uncached_worker):
    other, other_headers = _login(second_worker)
    uncached, uncached_headers = _login(uncached_worker)
    agent, newcomer = (auth.create_user(name, ["livechat-agent"])["_id"] for name in ("agent.one", "agent.two"))
    create_department(client, auth.admin, name="Busy", agents=[{"agentId": agent}, {"agentId": newcomer}])
    linked = create_department(client, auth.admin, name="Linked", agents=[{"agentId": agent}])["_id"]
    url = f"{API}/department?count=1&sort=" + quote('{"numAgents":-1}')  # Busy only
    lists = second_worker.extensions["caches"].lists

    def upsert_then_read(agent_id: str, count: int) -> None:
        body = {"upsert": [{"agentId": agent_id, "count": count}], "remove": []}
        assert client.post(f"{API}/department/{linked}/agents", json=body, headers=auth.admin).status_code == 200
        got, expected = other.get(url, headers=other_headers), uncached.get(url, headers=uncached_headers)
        assert got.get_data() == expected.get_data()

    assert other.get(url, headers=other_headers).status_code == 200
    upsert_then_read(agent, 4)  # already linked: numAgents cannot move, the page is kept
    assert lists.kept == 1
    upsert_then_read(newcomer, 0)  # a new link moves numAgents: built again
    assert lists.kept == 1


def test_the_filter_columns_cover_what_every_filter_reads_from_a_key():
    widest = department_service.ListFilter(text="x", enabled_only=True, exclude_id="y", archived=False, agent_id="a")
    assert widest.watched == department_service.FILTER_COLUMNS | {db.AGENT_LINKS}
    values = {"id": "z", "type": "d", "archived": False, "enabled": True, "name": "x", "name_folded": "x"}
    key = tuple(values.get(column) for column in department_service.KEY_INDEX)
    assert widest.lists(key) is None  # agent links are not in a key: it cannot tell
    assert department_service.ListFilter(text="x", enabled_only=True, exclude_id="y").lists(key) is True


def test_a_page_outlives_the_writes_that_move_a_department_its_filter_does_not_list(
    client, auth, second_worker, uncached_worker
):
    """Such a department's values tell, even after later changes, as long as none of them
    touched a column a filter reads."""
    other, other_headers = _login(second_worker)
    uncached, uncached_headers = _login(uncached_worker)
    names = ("Sales 1", "Sales 2", "Support")
    first_sales, second_sales, unlisted = (create_department(client, auth.admin, name=name)["_id"] for name in names)
    url = f"{API}/department?text=sales&count=1&sort=" + quote('{"_updatedAt":-1}')  # the latest "Sales" only
    lists = second_worker.extensions["caches"].lists

    def update(department_id: str, **fields: object) -> None:
        response = client.put(f"{API}/department/{department_id}", json={"department": fields}, headers=auth.admin)
        assert response.status_code == 200

    def read() -> list[str]:
        got, expected = other.get(url, headers=other_headers), uncached.get(url, headers=uncached_headers)
        assert got.get_data() == expected.get_data()
        return [department["_id"] for department in got.json["departments"]]

    assert read() == [second_sales]
    update(unlisted, description="moved to the top, but not a sales department")
    assert read() == [second_sales] and lists.kept == 1
    update(unlisted, description="two")
    update(unlisted, description="three")  # the first change's key no longer tells; what filters read does
    assert read() == [second_sales] and lists.kept == 2
    update(first_sales, description="a sales department moved to the top")
    assert read() == [first_sales] and lists.kept == 2  # built again
    create_department(client, auth.admin, name="Support 2")  # not listed either
    update(unlisted, description="four")
    assert read() == [first_sales] and lists.kept == 3
    update(unlisted, description="five")
    update(unlisted, name="Sales 3")  # now listed: the change before cannot be judged by today's name
    assert read() == [unlisted] and lists.kept == 3  # built again
    update(second_sales, name="Support 3")  # leaves the filter
    update(second_sales, description="six")
    assert read() == [unlisted] and lists.kept == 3  # built again: it may have been on the page


def test_a_total_counted_after_a_newer_write_is_not_moved_by_that_write_again(client, auth, second_worker):
    """A count runs after the request read its data version, so it may hold newer writes: it is
    kept with the version it was counted at, not the request's."""
    create_department(client, auth.admin, name="One")
    other, other_headers = _login(second_worker)
    with second_worker.test_request_context(f"{API}/department"):
        db.data_version(db.DATA)  # read first, as every request does
        create_department(client, auth.admin, name="Two")  # committed after it, before the count
        assert department_routes._total(department_service.ListFilter()) == 2
        db.close_session()
    assert other.get(f"{API}/department?count=1", headers=other_headers).json["total"] == 2


def test_a_page_is_not_kept_on_the_word_of_a_state_newer_than_the_request(client, auth, second_worker):
    """The change log read for a request may run past its data version. A department created
    onto the page, then moved off it by a newer write, still changed the page at the request's
    version: the page is built again, not kept on the newer state."""
    other, other_headers = _login(second_worker)
    create_department(client, auth.admin, name="B")
    create_department(client, auth.admin, name="C")
    assert other.get(f"{API}/department?count=2", headers=other_headers).status_code == 200
    lists = second_worker.extensions["caches"].lists
    (key,) = lists.entries
    moved = create_department(client, auth.admin, name="A")  # onto the page
    with second_worker.test_request_context(f"{API}/department?count=2"):
        version = db.data_version(db.DATA)
        response = client.put(f"{API}/department/{moved['_id']}", json={"department": {"name": "Z"}}, headers=auth.admin)
        assert response.status_code == 200  # off the page, committed after this request's version
        assert lists.get(version, key) is None
        db.close_session()


def test_a_page_is_not_kept_on_the_word_of_filter_values_newer_than_the_request(client, auth, second_worker):
    """A listed department moved to the top of a filtered page, then out of the filter by a write
    newer than the request: at the request's version it was listed, and on the page."""
    other, other_headers = _login(second_worker)
    url = f"{API}/department?text=sales&count=1&sort=" + quote('{"_updatedAt":-1}')
    moved = create_department(client, auth.admin, name="Sales 1")["_id"]
    create_department(client, auth.admin, name="Sales 2")  # the newest: the page
    assert other.get(url, headers=other_headers).status_code == 200
    lists = second_worker.extensions["caches"].lists
    (key,) = lists.entries

    def update(**fields: object) -> None:
        response = client.put(f"{API}/department/{moved}", json={"department": fields}, headers=auth.admin)
        assert response.status_code == 200

    update(description="to the top")  # onto the page
    with second_worker.test_request_context(url):
        version = db.data_version(db.DATA)
        # Committed after this request's version: a change that keeps the filter's columns,
        # then one that takes the department out of the filter.
        update(description="still on top")
        update(name="Support")
        assert lists.get(version, key) is None
        db.close_session()


def test_a_page_older_than_the_changes_a_worker_holds_is_built_again(client, auth, second_worker, uncached_worker):
    """The change feed keeps only the recent changes (ChangeFeed.max_changes): a page or total
    from before them cannot be checked, so it is built again, never kept on a partial log."""
    other, other_headers = _login(second_worker)
    uncached, uncached_headers = _login(uncached_worker)
    for name in ("B", "C"):
        create_department(client, auth.admin, name=name)
    caches = second_worker.extensions["caches"]
    caches.changes.max_changes = 4
    url = f"{API}/department?count=2"

    def read_through_other_worker() -> dict:
        got, expected = other.get(url, headers=other_headers), uncached.get(url, headers=uncached_headers)
        assert got.get_data() == expected.get_data()
        return got.json

    assert read_through_other_worker()["total"] == 2
    for k in range(6):  # creations after the page: harmless to it, but more than the feed holds
        create_department(client, auth.admin, name=f"Z {k}")
    assert read_through_other_worker()["total"] == 8
    assert caches.lists.kept == 0 and len(caches.changes.changes) <= 4  # built again, not kept
    create_department(client, auth.admin, name="Z last")
    assert read_through_other_worker()["total"] == 9
    assert caches.lists.kept == 1  # within what the feed holds: kept
