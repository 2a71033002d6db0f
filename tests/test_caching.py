"""The read caches (cache.py) never change an answer: same bytes as the uncached path, and a
write committed through one worker, or by hand on the database, is seen by the very next read in
any other worker.

Two applications on one database stand for two gunicorn workers: each has its own caches
and its own connections, exactly what separate worker processes have.
"""

from __future__ import annotations

import json
import random
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from conftest import ADMIN_PASSWORD, CHEAP_HASHING, create_department, raw_connection, write_by_hand

import cache
import db
import department_service
from app import create_app
from models import Department

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
    client.get(f"{API}/department?count=7", headers=auth.admin)
    responses = app.extensions["caches"].responses
    assert any(key[0] == f"{API}/department?count=7" for key in responses.entries)


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


def test_the_response_cache_is_bounded_in_entries_and_bytes_oldest_first(app):
    responses = cache.VersionedCache((db.DATA,), max_entries=3, max_bytes=10)
    built = []
    version = [1]

    def get(key, body):
        with app.test_request_context():
            db.g.data_versions = _versions({db.DATA: version[0]}, order=len(built) + 1)  # what this request read first
            return responses.get_or_build(key, lambda: built.append(key) or body)

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
    version[0] = 2
    get("c", b"new")  # a new data version starts empty
    assert list(responses.entries) == ["c"] and responses.size == 3


def _versions(counters: dict[int, int], order: int) -> db.Versions:
    versions = db.Versions(counters)
    versions.order = order
    return versions


def test_a_request_that_read_the_versions_before_the_cache_moved_neither_reads_nor_fills_it(app):
    """A thread that read the counters before a write, and reaches the cache after another thread
    moved it past that write, builds its answer without the cache; the cache stays where it is.
    A later read that finds an older version (the database went back: a restore) moves it."""
    responses = cache.VersionedCache((db.DATA,), max_entries=10)

    def get(key, body, data_version, order):
        with app.test_request_context():
            db.g.data_versions = _versions({db.DATA: data_version}, order)
            return responses.get_or_build(key, lambda: body)

    assert get("a", b"at 5", 5, order=1) == b"at 5"
    assert get("a", b"at 6", 6, order=3) == b"at 6"  # moved to version 6 by the third read
    assert get("a", b"seen at 5", 5, order=2) == b"seen at 5"  # the second read, older: built, not kept
    assert (responses.version, responses.entries) == ((6,), {"a": b"at 6"})
    assert get("a", b"restored", 4, order=4) == b"restored"  # a newer read finding an older version
    assert (responses.version, responses.entries) == ((4,), {"a": b"restored"})


def _cached_keys(worker_app) -> set[str]:
    return {key[0].removesuffix("?") for key in worker_app.extensions["caches"].responses.entries}  # full_path


def test_a_write_to_one_department_keeps_the_cached_bodies_of_the_others(client, auth, second_worker, database_url):
    """GET one and its agents are kept across writes to other departments (the change log names
    what changed); lists and searches are not. A write to the department itself, through the API
    or by hand, drops its bodies, and the next read answers the new data."""
    other, other_headers = _login(second_worker)
    kept, written = (create_department(client, auth.admin, name=name)["_id"] for name in ("Kept", "Written"))
    one, agents, listed = f"{API}/department/{kept}", f"{API}/department/{kept}/agents", f"{API}/department"
    before = {url: other.get(url, headers=other_headers).get_data() for url in (one, agents, listed)}
    assert {one, agents, listed} <= _cached_keys(second_worker)

    response = client.put(f"{API}/department/{written}", json={"department": {"description": "new"}}, headers=auth.admin)
    assert response.status_code == 200
    assert other.get(f"{API}/department/{written}", headers=other_headers).json["department"]["description"] == "new"
    assert {one, agents} <= _cached_keys(second_worker) and listed not in _cached_keys(second_worker)
    assert {url: other.get(url, headers=other_headers).get_data() for url in (one, agents)} == {
        url: before[url] for url in (one, agents)
    }
    # A list's rows are kept the same way: the page is read anew, the unchanged row is not.
    entries = second_worker.extensions["caches"].responses.entries
    assert ("row", kept) in entries and ("row", written) not in entries
    kept_row = entries[("row", kept)]
    shown = other.get(listed, headers=other_headers).json["departments"]
    assert [(d["name"], d.get("description")) for d in shown] == [("Kept", None), ("Written", "new")]
    assert entries[("row", kept)] is kept_row

    write_by_hand(database_url, "UPDATE departments SET name = ? WHERE id = ?", ("Kept by hand", kept))
    assert other.get(one, headers=other_headers).json["department"]["name"] == "Kept by hand"
    agent = auth.create_user("agent.kept", ["livechat-agent"])
    body = {"upsert": [{"agentId": agent["_id"], "count": 1}], "remove": []}
    assert client.post(f"{API}/department/{kept}/agents", json=body, headers=auth.admin).status_code == 200
    assert [a["agentId"] for a in other.get(agents, headers=other_headers).json["agents"]] == [agent["_id"]]


def test_a_list_read_while_a_write_commits_is_built_from_one_version(client, auth, database_url, monkeypatch):
    """A write committed after the request read the counters and before it read the page's ids: the
    ids are then newer than the rows kept for the request's version, so the page is built whole."""
    renamed = create_department(client, auth.admin, name="Alpha")["_id"]
    for name in ("Bravo", "Charlie"):
        create_department(client, auth.admin, name=name)
    assert client.get(f"{API}/department", headers=auth.admin).status_code == 200  # rows kept
    page_ids = department_service.list_department_ids

    def ids_after_a_hand_write(*args, **kwargs):
        write_by_hand(database_url, "UPDATE departments SET name = 'Zulu' WHERE id = ?", (renamed,))
        return page_ids(*args, **kwargs)

    monkeypatch.setattr(department_service, "list_department_ids", ids_after_a_hand_write)
    page = client.get(f"{API}/department?count=10", headers=auth.admin).json
    assert [d["name"] for d in page["departments"]] == ["Bravo", "Charlie", "Zulu"]


def test_a_list_read_while_a_write_commits_between_its_ids_and_its_total_is_built_from_one_version(
    client, auth, database_url, monkeypatch
):
    """The page's ids and its total are read each in its own snapshot: a write committed between
    the two (here, a department deleted by hand) must not give a page of the old ids with the new
    total, nor the deleted department's kept row."""
    names = ["Alpha", "Bravo", "Charlie"]
    ids = [create_department(client, auth.admin, name=name)["_id"] for name in names]
    assert client.get(f"{API}/department?count=2", headers=auth.admin).json["total"] == 3  # rows kept
    total = department_service._total

    def total_after_a_hand_delete(*args, **kwargs):
        write_by_hand(database_url, "DELETE FROM departments WHERE id = ?", (ids[0],))
        return total(*args, **kwargs)

    monkeypatch.setattr(department_service, "_total", total_after_a_hand_delete)
    page = client.get(f"{API}/department?count=2&offset=0", headers=auth.admin).json  # another body, same rows
    assert ([d["name"] for d in page["departments"]], page["total"]) == (["Bravo", "Charlie"], 2)


def _move_counter_by_hand(database_url, _other_department):
    write_by_hand(database_url, "UPDATE data_version SET version = version + 1 WHERE id = 1")


def _prune_then_write(database_url, other_department):
    write_by_hand(database_url, "DELETE FROM department_changes")
    write_by_hand(database_url, "UPDATE departments SET description = 'x' WHERE id = ?", (other_department,))


def _restore_then_write(database_url, other_department):
    # A restored database whose history differs: the row the cache saw at its version is not the same one.
    write_by_hand(database_url, "UPDATE department_changes SET changed_at = changed_at - 1")
    write_by_hand(database_url, "UPDATE departments SET description = 'x' WHERE id = ?", (other_department,))


def _many_writes(database_url, other_department):
    for k in range(cache.DepartmentResponses.MAX_STEP + 1):
        write_by_hand(database_url, "UPDATE departments SET description = ? WHERE id = ?", (f"d{k}", other_department))


def _truncate(database_url, _other_department):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no TRUNCATE (its DELETE fires the row triggers)")
    write_by_hand(database_url, "TRUNCATE department_agents")


@pytest.mark.parametrize(
    "step", [_move_counter_by_hand, _prune_then_write, _restore_then_write, _many_writes, _truncate],
    ids=["counter moved by hand", "log pruned", "log of another history", "a long step", "truncate"],
)
def test_a_step_the_change_log_cannot_vouch_for_drops_every_body(client, auth, second_worker, database_url, step):
    other, other_headers = _login(second_worker)
    kept, written = (create_department(client, auth.admin, name=name)["_id"] for name in ("Kept", "Written"))
    one = f"{API}/department/{kept}"
    assert other.get(one, headers=other_headers).status_code == 200
    assert one in _cached_keys(second_worker)

    step(database_url, written)
    assert other.get(f"{API}/department/{written}", headers=other_headers).status_code == 200  # moves the cache
    assert one not in _cached_keys(second_worker)


def test_one_transaction_over_more_departments_than_a_step_holds_drops_every_body(
    client, auth, second_worker, database_url
):
    """On PostgreSQL such a transaction is one version with a log row per department: more rows than
    DepartmentResponses.MAX_STEP. On SQLite every row has a version of its own: too many versions."""
    other, other_headers = _login(second_worker)
    ids = [create_department(client, auth.admin, name=f"D{k:03d}")["_id"] for k in range(cache.DepartmentResponses.MAX_STEP + 2)]
    for department_id in ids:
        assert other.get(f"{API}/department/{department_id}", headers=other_headers).status_code == 200

    write_by_hand(database_url, "UPDATE departments SET description = 'all at once'")
    answered = other.get(f"{API}/department/{ids[0]}", headers=other_headers).json["department"]
    assert answered["description"] == "all at once"
    assert _cached_keys(second_worker) == {f"{API}/department/{ids[0]}"}  # nothing from before the step


def _login(worker_app):
    client = worker_app.test_client()
    login = client.post("/api/v1/login", json={"user": "admin", "password": ADMIN_PASSWORD}).json["data"]
    return client, {"X-User-Id": login["userId"], "X-Auth-Token": login["authToken"]}


def test_random_writes_through_two_workers_never_leave_a_stale_read(
    client, auth, second_worker, uncached_worker, database_url
):
    """Writes of every kind, each through one of two caching workers or by hand on the database;
    after each, both workers answer every read exactly as a worker without caches does (same
    bytes). Both keep their caches warm between writes, so any entry a write should have
    invalidated would be served."""
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
        kind = rng.choice(
            ["create", "update", "update", "agents", "agents", "archive", "unarchive", "delete", "user", "hand"]
        )
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
        elif kind == "user":  # an agent leaves every department
            response = worker.delete(f"{API}/users/agent/{rng.choice(agents)}", headers=headers)
        else:  # by hand, with no code of the service's: sqlite3/psql
            write_by_hand(target)
            return
        assert response.status_code == 200, (kind, response.json)

    def write_by_hand(target: str) -> None:
        mark = "?" if database_url.startswith("sqlite") else "%s"
        statement, values = rng.choice([
            (f"UPDATE departments SET name = {mark} WHERE id = {mark}", (f"Dept {rng.randrange(100):02d} hand", target)),
            (f"UPDATE departments SET description = {mark}, enabled = {mark} WHERE id = {mark}",
             (f"hand {rng.randrange(9)}", rng.random() < 0.5, target)),
            (f"DELETE FROM department_agents WHERE department_id = {mark}", (target,)),
        ])
        connection = raw_connection(database_url)
        try:
            connection.cursor().execute(statement, values)
            connection.commit()
        finally:
            connection.close()

    for step in range(60):
        worker, headers = rng.choice([(client, auth.admin), (other, other_headers)])
        write(worker, headers)
        for url in reads():
            expected = uncached.get(url, headers=uncached_headers)
            for reader, reader_headers in ((client, auth.admin), (other, other_headers)):
                got = reader.get(url, headers=reader_headers)
                assert (got.status_code, got.get_data()) == (expected.status_code, expected.get_data()), (step, url)


def test_on_postgresql_a_read_only_request_cannot_write(app, client, auth, database_url):
    """PostgreSQL reads run in autocommit, where each statement of a write would commit on its
    own: the session of a GET request refuses any write instead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite reads keep their transaction")
    create_department(client, auth.admin, name="Unchanged")
    with app.test_request_context(f"{API}/department", method="GET"):
        session = db.session()
        with pytest.raises(RuntimeError, match="read-only request wrote"):
            session.execute(sa.update(Department).values(description="written by a read"))
        db.close_session()
    assert client.get(f"{API}/department", headers=auth.admin).json["departments"][0].get("description") is None
