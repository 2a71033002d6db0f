"""Listing departments and agents: pagination, sort, search and filters.

GET livechat/department and livechat/departments/archived (docs/compatibility.md §2.1, §2.6, §3.8),
GET livechat/department/:_id/agents (§2.10), GET livechat/agents/:agentId/departments (§4.6),
with the choices of docs/compatibility.md §D.15, §D.16, §D.17 (literal, Unicode case-insensitive `text`; byte-wise name order
with an `_id` tie-break; `onlyMyDepartments`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import API, create_department, set_setting

import department_service
from request_input import request_query
from schemas import DepartmentListQuerySchema

LIST = f"{API}/livechat/department"
ARCHIVED = f"{API}/livechat/departments/archived"


def url(department_id: str, suffix: str = "") -> str:
    return f"{API}/livechat/department/{department_id}{suffix}"


def listing(client, headers, path: str = LIST, **query: Any) -> dict[str, Any]:
    response = client.get(path, query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["success"] is True
    return response.json


def names(client, headers, path: str = LIST, **query: Any) -> list[str]:
    return [d["name"] for d in listing(client, headers, path, **query)["departments"]]


def create_many(client, headers, n: int) -> list[dict[str, Any]]:
    return [create_department(client, headers, name=f"dep {i:03d}") for i in range(n)]


def archive(client, headers, department_id: str) -> None:
    response = client.post(url(department_id, "/archive"), headers=headers)
    assert response.status_code == 200, response.json


# ---------------------------------------------------------------------------
# Pagination (§3.8)
# ---------------------------------------------------------------------------


def test_offset_and_count_give_a_page_and_total_counts_all_matches(client, auth):
    create_many(client, auth.admin, 5)
    body = listing(client, auth.admin, offset=1, count=2)
    assert [d["name"] for d in body["departments"]] == ["dep 001", "dep 002"]
    assert (body["count"], body["offset"], body["total"]) == (2, 1, 5)  # count = page length


def test_offset_past_the_end_is_an_empty_page(client, auth):
    create_many(client, auth.admin, 3)
    body = listing(client, auth.admin, offset=10, count=2)
    assert (body["departments"], body["count"], body["offset"], body["total"]) == ([], 0, 10, 3)


def test_total_counts_all_matches_of_the_filter(client, auth):
    for name in ("alpha one", "alpha two", "alpha three", "beta"):
        create_department(client, auth.admin, name=name)
    body = listing(client, auth.admin, text="alpha", count=1)
    assert (body["count"], body["total"]) == (1, 3)


def test_default_page_is_50_cap_is_100_and_count_0_is_all(client, auth):
    create_many(client, auth.admin, 105)
    default = listing(client, auth.admin)
    assert (len(default["departments"]), default["count"], default["total"]) == (50, 50, 105)
    capped = listing(client, auth.admin, count=500)
    assert (len(capped["departments"]), capped["total"]) == (100, 105)
    everything = listing(client, auth.admin, count=0)
    assert len(everything["departments"]) == 105
    assert [d["name"] for d in everything["departments"]] == [f"dep {i:03d}" for i in range(105)]
    tail = listing(client, auth.admin, count=0, offset=100)
    assert [d["name"] for d in tail["departments"]] == [f"dep {i:03d}" for i in range(100, 105)]


def test_pagination_settings_change_default_cap_and_infinite_count(client, auth):
    create_many(client, auth.admin, 8)
    set_setting(client, auth.admin, "API_Default_Count", 3)
    set_setting(client, auth.admin, "API_Upper_Count_Limit", 5)
    assert len(listing(client, auth.admin)["departments"]) == 3
    assert len(listing(client, auth.admin, count=7)["departments"]) == 5
    assert len(listing(client, auth.admin, count=0)["departments"]) == 8  # API_Allow_Infinite_Count default true
    set_setting(client, auth.admin, "API_Allow_Infinite_Count", False)
    assert len(listing(client, auth.admin, count=0)["departments"]) == 3  # falls back to the default count


def test_archived_list_is_paginated_too(client, auth):
    for department in create_many(client, auth.admin, 4):
        archive(client, auth.admin, department["_id"])
    body = listing(client, auth.admin, ARCHIVED, count=3, offset=1)
    assert [d["name"] for d in body["departments"]] == ["dep 001", "dep 002", "dep 003"]
    assert (body["count"], body["offset"], body["total"]) == (3, 1, 4)


# ---------------------------------------------------------------------------
# Sort (§2.1, §3.8, docs/compatibility.md §D.16 byte-wise order with _id tie-break)
# ---------------------------------------------------------------------------


def test_default_order_is_byte_wise_by_name(client, auth):
    given = ["b", "B", "a", "A", "Z", "_x", "é", "e", "É", "10", "9"]
    for name in given:
        create_department(client, auth.admin, name=name)
    expected = sorted(given, key=lambda s: s.encode("utf-8"))
    assert names(client, auth.admin) == expected
    assert names(client, auth.admin, sort=json.dumps({"name": 1})) == expected


def test_sort_descending_by_name(client, auth):
    given = ["b", "B", "a", "A", "é"]
    for name in given:
        create_department(client, auth.admin, name=name)
    assert names(client, auth.admin, sort='{"name":-1}') == sorted(given, key=lambda s: s.encode(), reverse=True)


def test_equal_names_are_ordered_by_id(client, auth):
    ids = [create_department(client, auth.admin, name="same")["_id"] for _ in range(4)]
    create_department(client, auth.admin, name="before")
    body = listing(client, auth.admin)
    assert [d["_id"] for d in body["departments"][1:]] == sorted(ids, key=lambda s: s.encode())
    # the tie-break also makes pages stable
    page_ids = [d["_id"] for offset in range(5) for d in listing(client, auth.admin, count=1, offset=offset)["departments"]]
    assert page_ids == [d["_id"] for d in body["departments"]]


@pytest.mark.parametrize("path", [LIST, ARCHIVED, "agents", f"{API}/livechat/department.listByIds"])
@pytest.mark.parametrize("raw", ['{"name":2}', "not json", '["name"]', '{"name":"asc"}'])
def test_invalid_sort_is_error_invalid_sort(client, auth, raw, path):
    # §3.8 parseJsonQuery (for listByIds it runs first, even before the ids check, §2.12).
    if path == "agents":
        path = url(create_department(client, auth.admin)["_id"], "/agents")
    response = client.get(path, query_string={"sort": raw}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": f"Invalid sort parameter provided: {json.dumps(raw)} [error-invalid-sort]",
        "errorType": "error-invalid-sort",
        "details": {"helperMethod": "parseJsonQuery"},
    }


# ---------------------------------------------------------------------------
# `text` (docs/compatibility.md §D.15: literal, case-insensitive across Unicode, substring)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("%", ["100% sure"]),
        ("_", ["a_b"]),
        (".*", ["a.*z"]),
        ("a.b", []),
        ("[ab]", ["x[ab]"]),
        ("\\", ["back\\slash"]),
        ("^a", []),
        ("b", ["a_b", "abz", "axb", "back\\slash", "x[ab]"]),
    ],
)
def test_text_is_matched_literally(client, auth, text, expected):
    for name in ("100% sure", "100 pct", "a_b", "axb", "a.*z", "abz", "x[ab]", "back\\slash"):
        create_department(client, auth.admin, name=name)
    assert names(client, auth.admin, text=text) == expected


def test_text_is_case_insensitive_across_unicode(client, auth):
    for name in ("École", "ÉCOLE du soir", "ecole", "Отдел продаж", "Straße"):
        create_department(client, auth.admin, name=name)
    assert names(client, auth.admin, text="école") == ["ÉCOLE du soir", "École"]
    assert names(client, auth.admin, text="ÉCOLE") == ["ÉCOLE du soir", "École"]
    assert names(client, auth.admin, text="отдел") == ["Отдел продаж"]
    assert names(client, auth.admin, text="ОТДЕЛ ПРОДАЖ") == ["Отдел продаж"]
    assert names(client, auth.admin, text="STRAßE") == ["Straße"]


def test_text_search_in_the_archived_list(client, auth):
    for name in ("Old sales", "old support", "new sales"):
        department = create_department(client, auth.admin, name=name)
        if name.lower().startswith("old"):
            archive(client, auth.admin, department["_id"])
    assert names(client, auth.admin, ARCHIVED, text="SALES") == ["Old sales"]
    assert names(client, auth.admin, text="sales") == ["new sales"]


# ---------------------------------------------------------------------------
# Filters (§2.1, §2.6)
# ---------------------------------------------------------------------------


def test_enabled_true_filters_and_enabled_false_does_not(client, auth):
    create_department(client, auth.admin, name="on", enabled=True)
    create_department(client, auth.admin, name="off", enabled=False)
    assert names(client, auth.admin, enabled="true") == ["on"]
    assert names(client, auth.admin, enabled="false") == ["off", "on"]  # §2.1 QUIRK: no filter
    assert names(client, auth.admin, enabled="yes") == ["off", "on"]
    assert names(client, auth.admin) == ["off", "on"]


def test_exclude_department_id(client, auth):
    first = create_department(client, auth.admin, name="first")
    create_department(client, auth.admin, name="second")
    assert names(client, auth.admin, excludeDepartmentId=first["_id"]) == ["second"]
    assert names(client, auth.admin, excludeDepartmentId="unknown") == ["first", "second"]


def test_show_archived(client, auth):
    create_department(client, auth.admin, name="active")
    archived = create_department(client, auth.admin, name="archived")
    archive(client, auth.admin, archived["_id"])
    assert names(client, auth.admin) == ["active"]
    assert names(client, auth.admin, showArchived="false") == ["active"]
    assert names(client, auth.admin, showArchived="true") == ["active", "archived"]
    assert listing(client, auth.admin, showArchived="true")["total"] == 2


def test_archived_list_holds_only_archived_and_ignores_enabled_and_show_archived(client, auth):
    create_department(client, auth.admin, name="active")
    gone = create_department(client, auth.admin, name="gone")
    back = create_department(client, auth.admin, name="back")
    archive(client, auth.admin, gone["_id"])
    archive(client, auth.admin, back["_id"])
    assert client.post(url(back["_id"], "/unarchive"), headers=auth.admin).status_code == 200
    assert names(client, auth.admin, ARCHIVED) == ["gone"]
    # §2.6: same schema as the list, so enabled/showArchived are accepted but ignored
    assert names(client, auth.admin, ARCHIVED, enabled="true") == ["gone"]
    assert names(client, auth.admin, ARCHIVED, showArchived="false") == ["gone"]
    assert names(client, auth.admin, ARCHIVED, excludeDepartmentId=gone["_id"]) == []


@pytest.mark.parametrize("path", [LIST, ARCHIVED])
@pytest.mark.parametrize("param", ["foo", "fields", "departmentUnit"])
def test_unknown_query_parameter_is_invalid_params(client, auth, path, param):
    # §2.1: additionalProperties false (`fields` is absent from the newest schema).
    response = client.get(path, query_string={param: "x"}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must NOT have additional properties [invalid-params]",
        "errorType": "invalid-params",
    }


def test_only_my_departments_must_be_true_or_false(client, auth):
    response = client.get(LIST, query_string={"onlyMyDepartments": "yes"}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must be equal to one of the allowed values [invalid-params]",
        "errorType": "invalid-params",
    }


def test_only_my_departments_for_an_agent_lists_the_departments_they_belong_to(client, auth):
    # docs/compatibility.md §D.17: for callers without view-livechat-departments, "departments I am an agent of".
    agent = auth.create_user("me.agent", ["livechat-agent"])
    create_department(client, auth.admin, name="mine", agents=[{"agentId": agent["_id"]}])
    create_department(client, auth.admin, name="not mine")
    headers = auth.login("me.agent", "pass-word-1")
    assert names(client, headers, onlyMyDepartments="true") == ["mine"]
    assert listing(client, headers, onlyMyDepartments="true")["total"] == 1
    assert names(client, headers, onlyMyDepartments="false") == ["mine", "not mine"]
    assert names(client, headers) == ["mine", "not mine"]
    # a caller with view-livechat-departments: no filter
    assert names(client, auth.admin, onlyMyDepartments="true") == ["mine", "not mine"]


# ---------------------------------------------------------------------------
# GET livechat/department/:_id/agents (§2.10)
# ---------------------------------------------------------------------------


@pytest.fixture
def staffed(client, auth) -> dict[str, Any]:
    """A department with five agents, created in an order that is not the username order."""
    usernames = ["carol", "alice", "eve", "bob", "dave"]
    users = [auth.create_user(name) for name in usernames]
    department = create_department(client, auth.admin, agents=[{"agentId": u["_id"]} for u in users])
    create_department(client, auth.admin, name="other", agents=[{"agentId": users[0]["_id"]}])
    return department


def agent_names(body: dict[str, Any]) -> list[str]:
    return [a["username"] for a in body["agents"]]


def test_department_agents_default_sort_is_by_username(client, auth, staffed):
    body = listing(client, auth.admin, url(staffed["_id"], "/agents"))
    assert agent_names(body) == ["alice", "bob", "carol", "dave", "eve"]
    assert (body["count"], body["offset"], body["total"]) == (5, 0, 5)
    assert all(a["departmentId"] == staffed["_id"] for a in body["agents"])


def test_department_agents_pagination(client, auth, staffed):
    body = listing(client, auth.admin, url(staffed["_id"], "/agents"), count=2, offset=1)
    assert agent_names(body) == ["bob", "carol"]
    assert (body["count"], body["offset"], body["total"]) == (2, 1, 5)
    assert agent_names(listing(client, auth.admin, url(staffed["_id"], "/agents"), count=0)) == [
        "alice", "bob", "carol", "dave", "eve",
    ]


def test_department_agents_pagination_follows_the_settings(client, auth, staffed):
    set_setting(client, auth.admin, "API_Default_Count", 2)
    set_setting(client, auth.admin, "API_Upper_Count_Limit", 3)
    assert agent_names(listing(client, auth.admin, url(staffed["_id"], "/agents"))) == ["alice", "bob"]
    assert len(listing(client, auth.admin, url(staffed["_id"], "/agents"), count=10)["agents"]) == 3


def test_department_agents_sort_descending(client, auth, staffed):
    body = listing(client, auth.admin, url(staffed["_id"], "/agents"), sort='{"username":-1}')
    assert agent_names(body) == ["eve", "dave", "carol", "bob", "alice"]


def test_department_agents_items_are_link_documents(client, auth, staffed):
    [first] = listing(client, auth.admin, url(staffed["_id"], "/agents"), count=1)["agents"]
    assert set(first) == {"_id", "agentId", "departmentId", "username", "departmentEnabled", "count", "order", "_updatedAt"}


# ---------------------------------------------------------------------------
# GET livechat/agents/:agentId/departments (§4.6)
# ---------------------------------------------------------------------------


def test_agent_departments_join_the_department_name_and_filter_enabled(client, auth):
    agent = auth.create_user("busy.agent", ["livechat-agent"])
    on = create_department(client, auth.admin, name="Support", agents=[{"agentId": agent["_id"], "count": 2, "order": 1}])
    off = create_department(client, auth.admin, name="Sales", enabled=False, agents=[{"agentId": agent["_id"]}])
    create_department(client, auth.admin, name="Elsewhere")
    path = f"{API}/livechat/agents/{agent['_id']}/departments"

    every = client.get(path, headers=auth.admin)
    assert every.status_code == 200
    items = {d["departmentId"]: d for d in every.json["departments"]}
    assert set(items) == {on["_id"], off["_id"]}
    assert {d["departmentName"] for d in items.values()} == {"Support", "Sales"}
    support = items[on["_id"]]
    assert set(support) == {
        "_id", "agentId", "departmentId", "departmentName", "username", "count", "order", "departmentEnabled", "_updatedAt",
    }
    assert (support["agentId"], support["username"], support["count"], support["order"], support["departmentEnabled"]) == (
        agent["_id"], "busy.agent", 2, 1, True,
    )
    assert items[off["_id"]]["departmentEnabled"] is False

    only = client.get(path, query_string={"enabledDepartmentsOnly": "true"}, headers=auth.admin).json["departments"]
    assert [d["departmentName"] for d in only] == ["Support"]
    both = client.get(path, query_string={"enabledDepartmentsOnly": "false"}, headers=auth.admin).json["departments"]
    assert len(both) == 2


def test_agent_departments_show_the_current_department_name(client, auth):
    agent = auth.create_user("renamed.agent")
    department = create_department(client, auth.admin, name="Before", agents=[{"agentId": agent["_id"]}])
    response = client.put(url(department["_id"]), json={"department": {"name": "After"}}, headers=auth.admin)
    assert response.status_code == 200, response.json
    items = client.get(f"{API}/livechat/agents/{agent['_id']}/departments", headers=auth.admin).json["departments"]
    assert [d["departmentName"] for d in items] == ["After"]


def test_agent_can_read_their_own_departments(client, auth):
    agent = auth.create_user("self.agent", ["livechat-agent"])
    create_department(client, auth.admin, name="Mine", agents=[{"agentId": agent["_id"]}])
    headers = auth.login("self.agent", "pass-word-1")
    response = client.get(f"{API}/livechat/agents/{agent['_id']}/departments", headers=headers)
    assert response.status_code == 200
    assert [d["departmentName"] for d in response.json["departments"]] == ["Mine"]


@pytest.mark.parametrize("path", [LIST, ARCHIVED, "agents"])
def test_huge_offset_is_an_empty_page_or_a_400_never_a_server_error(client, auth, path):
    # docs/compatibility.md §D.14: never a 500. Rocket.Chat parses offset with parseInt (§3.8).
    department = create_department(client, auth.admin, agents=[{"agentId": auth.create_user("someone")["_id"]}])
    target = url(department["_id"], "/agents") if path == "agents" else path
    response = client.get(target, query_string={"offset": "99999999999999999999"}, headers=auth.admin)
    assert response.status_code in (200, 400), response.json
    assert response.headers["Content-Type"] == "application/json"
    if response.status_code == 200:
        items = response.json["agents" if path == "agents" else "departments"]
        assert items == [] and response.json["count"] == 0


@pytest.mark.parametrize("text", [None, "sales"])
@pytest.mark.parametrize("enabled_only", [False, True])
@pytest.mark.parametrize(
    ("archived", "index"), [(False, "ix_departments_listed"), (None, "ix_departments_with_archived")]
)
def test_a_list_page_and_its_total_scan_only_their_index(app, text, enabled_only, archived, index):
    # Each holds every column these statements read (models.Department's indexes). The default
    # lists' statements carry models.LISTED verbatim and migrations 0014/0015 froze the same
    # predicate into the partial index: were the two to drift apart, or a column to go missing,
    # the planner would quietly read the table instead (docs/performance.md).
    where = department_service.ListFilter(text=text, enabled_only=enabled_only, archived=archived)
    statements = [
        department_service._page_ids_statement(where.shape(), (("name", 1),), True).statement,
        department_service._count_statement(where.shape()).statement,
    ]
    params = {"offset": 0, "limit": 25, **where.params()}
    engine = app.extensions["db.engine"]
    with engine.connect() as connection:
        for statement in statements:
            compiled = statement.compile(connection)
            values = compiled.construct_params(params)
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table: make it choose among indexes
                plan = connection.exec_driver_sql(f"EXPLAIN {compiled}", values).scalars().all()
            else:
                positional = tuple(values[name] for name in compiled.positiontup)
                plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional).all()]
                assert any(f"COVERING INDEX {index}" in line for line in plan), plan
            assert any(index in line for line in plan), plan


def test_a_query_string_read_again_is_loaded_again_the_same_way(client, auth):
    # request_input keeps what it loaded per raw query string; a write in between empties the
    # response cache, so the second reads go through the kept load (or its refusal) again.
    create_department(client, auth.admin, name="Alpha")
    read = f"{API}/livechat/department?count=1&text=alp"
    refused = f"{API}/livechat/department?count=-1"
    answers = []
    for name in ("Bravo", "Charlie"):
        answers.append((client.get(read, headers=auth.admin).json, client.get(refused, headers=auth.admin)))
        create_department(client, auth.admin, name=name)
    for page, refusal in answers:
        assert [d["name"] for d in page["departments"]] == ["Alpha"] and page["total"] == 1
        assert refusal.status_code == 400
        assert refusal.json == {"success": False, "error": "must be >= 0 [invalid-params]", "errorType": "invalid-params"}


def test_a_loaded_query_string_is_the_callers_own(app):
    with app.test_request_context(f"{API}/livechat/department?count=5&text=a"):
        first = request_query(DepartmentListQuerySchema)
        first["count"] = 99
        assert request_query(DepartmentListQuerySchema) == {"count": 5, "text": "a"}


@pytest.mark.parametrize("spare", [0, 2, 250])
def test_a_search_page_and_its_total_whether_the_matches_end_within_its_spare_ids_or_not(client, auth, monkeypatch, spare):
    # list_department_ids reads SEARCH_SPARE_IDS ids past a `text` page: when the matches end
    # within them they tell the total, otherwise it is counted.
    monkeypatch.setattr(department_service, "SEARCH_SPARE_IDS", spare)
    for name in [f"Match {k}" for k in range(7)] + ["Other"]:
        create_department(client, auth.admin, name=name)
    for offset, count in [(0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (0, 7), (0, 10), (3, 0)]:
        query = {"text": "match", "offset": offset, "count": count}
        page = client.get(f"{API}/livechat/department", query_string=query, headers=auth.admin).json
        names = [d["name"] for d in page["departments"]]
        shown = range(offset, 7 if count == 0 else min(offset + count, 7))  # count=0: all of them
        assert (names, page["count"], page["total"]) == ([f"Match {k}" for k in shown], len(shown), 7), query
