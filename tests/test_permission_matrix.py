"""Who may call which department endpoint: one table, derived from the perm line of each endpoint
in docs/compatibility.md §2 (and §4.6) and the default role grants of §3.4.

Every request is VALID, so that the permission check alone decides: "allow" means the route let the
caller through and the request succeeded (2xx, `success: true`); 403 is the exact Rocket.Chat body;
401 is the exact not-logged-in body.

Principals: the five roles of a new workspace with their default grants, an unauthenticated caller,
and `agent+add`, a livechat-agent whose role was also granted `add-livechat-department-agents`.
That last one passes PUT's route check (hasAny of manage-livechat-departments,
add-livechat-department-agents) but, lacking manage-livechat-departments, gets the documented
400 `error-not-allowed` (§2.4 step 2).

Default grants (§3.4):
  view-livechat-departments       livechat-manager, livechat-monitor, admin
  manage-livechat-departments     livechat-manager, livechat-monitor, admin
  add-livechat-department-agents  livechat-manager, livechat-monitor, admin
  remove-livechat-department      livechat-manager, admin
  view-l-room                     livechat-manager, livechat-monitor, livechat-agent, admin
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import API, FORBIDDEN_BODY, UNAUTHORIZED_BODY, create_department, department_fields, set_permission

PRINCIPALS = ("admin", "livechat-manager", "livechat-monitor", "livechat-agent", "user", "agent+add", "anonymous")

A, F, U = "allow", 403, 401
NOT_ALLOWED = 400  # the documented 400 `error-not-allowed` of PUT (§2.4 step 2)

# endpoint: (method, path, perm line of the spec) -> outcome per principal, in PRINCIPALS order.
#                                                                     admin mgr mon agent user agent+add anon
MATRIX: dict[str, tuple[str, str, str, tuple[Any, ...]]] = {
    "list": ("GET", "/livechat/department", "view-livechat-departments|view-l-room (§2.1)",
             (A, A, A, A, F, A, U)),
    "create": ("POST", "/livechat/department", "manage-livechat-departments (§2.2)",
               (A, A, A, F, F, F, U)),
    "get": ("GET", "/livechat/department/{dep}", "view-livechat-departments|view-l-room (§2.3)",
            (A, A, A, A, F, A, U)),
    "update": ("PUT", "/livechat/department/{dep}", "manage-livechat-departments|add-livechat-department-agents (§2.4)",
               (A, A, A, F, F, NOT_ALLOWED, U)),
    "delete": ("DELETE", "/livechat/department/{dep}", "manage-livechat-departments|remove-livechat-department (§2.5)",
               (A, A, A, F, F, F, U)),
    "archived": ("GET", "/livechat/departments/archived", "view-livechat-departments|view-l-room (§2.6)",
                 (A, A, A, A, F, A, U)),
    "archive": ("POST", "/livechat/department/{dep}/archive", "manage-livechat-departments (§2.7)",
                (A, A, A, F, F, F, U)),
    "unarchive": ("POST", "/livechat/department/{dep}/unarchive", "manage-livechat-departments (§2.8)",
                  (A, A, A, F, F, F, U)),
    "autocomplete": ("GET", "/livechat/department.autocomplete", "view-livechat-departments|view-l-room (§2.9)",
                     (A, A, A, A, F, A, U)),
    "agents-get": ("GET", "/livechat/department/{dep}/agents", "view-livechat-departments|view-l-room (§2.10)",
                   (A, A, A, A, F, A, U)),
    "agents-post": ("POST", "/livechat/department/{dep}/agents",
                    "manage-livechat-departments|add-livechat-department-agents (§2.11)",
                    (A, A, A, F, F, A, U)),
    "list-by-ids": ("GET", "/livechat/department.listByIds", "view-livechat-departments|view-l-room (§2.12)",
                    (A, A, A, A, F, A, U)),
    "creation-available": ("GET", "/livechat/department/isDepartmentCreationAvailable",
                           "view-livechat-departments|manage-livechat-departments (§2.13)",
                           (A, A, A, F, F, F, U)),
    "agent-departments": ("GET", "/livechat/agents/{agent}/departments", "view-l-room (§4.6)",
                          (A, A, A, A, F, A, U)),
}

CASES = [
    pytest.param(endpoint, principal, outcomes[i], id=f"{endpoint}-{principal}")
    for endpoint, (_method, _path, _perm, outcomes) in MATRIX.items()
    for i, principal in enumerate(PRINCIPALS)
]


def request_parts(endpoint: str, department_id: str, agent_id: str) -> tuple[str, str, dict[str, Any]]:
    """A valid request for the endpoint: method, URL and test-client keyword arguments."""
    method, path, _perm, _outcomes = MATRIX[endpoint]
    target = API + path.format(dep=department_id, agent=agent_id)
    kwargs: dict[str, Any] = {}
    if endpoint == "create":
        kwargs["json"] = {"department": department_fields(name="created by caller")}
    elif endpoint == "update":
        kwargs["json"] = {"department": department_fields(name="updated by caller")}
    elif endpoint == "agents-post":
        kwargs["json"] = {"upsert": [{"agentId": agent_id}], "remove": []}
    elif endpoint == "autocomplete":
        kwargs["query_string"] = {"selector": '{"term":""}'}
    elif endpoint == "list-by-ids":
        target += f"?ids[]={department_id}"
    return method, target, kwargs


def headers_for(client, auth, principal: str) -> dict[str, str]:
    if principal == "anonymous":
        return {}
    if principal == "admin":
        return auth.admin
    if principal == "agent+add":
        set_permission(
            client, auth.admin, "add-livechat-department-agents",
            ["livechat-manager", "livechat-monitor", "admin", "livechat-agent"],
        )
        return auth.user_headers("caller", ["livechat-agent"])
    return auth.user_headers("caller", [principal])


def test_matrix_covers_every_department_endpoint_and_principal():
    assert len(MATRIX) == 14
    assert all(len(outcomes) == len(PRINCIPALS) for *_rest, outcomes in MATRIX.values())


@pytest.mark.parametrize("endpoint, principal, expected", CASES)
def test_permission_matrix(client, auth, endpoint, principal, expected):
    agent = auth.create_user("linked.agent")
    department = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}])
    headers = headers_for(client, auth, principal)
    method, target, kwargs = request_parts(endpoint, department["_id"], agent["_id"])

    response = client.open(target, method=method, headers=headers, **kwargs)

    assert response.headers["Content-Type"] == "application/json"
    if expected == A:
        assert 200 <= response.status_code < 300, (response.status_code, response.json)
        assert response.json["success"] is True
    elif expected == F:
        assert response.status_code == 403, response.json
        assert response.json == FORBIDDEN_BODY
    elif expected == U:
        assert response.status_code == 401, response.json
        assert response.json == UNAUTHORIZED_BODY
    else:
        assert response.status_code == NOT_ALLOWED, response.json
        assert response.json == {"success": False, "error": "error-not-allowed"}


GET_ENDPOINTS = [endpoint for endpoint, (method, *_rest) in MATRIX.items() if method == "GET"]


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_a_read_answered_to_the_admin_is_never_served_to_a_caller_who_may_not_see_it(client, auth, endpoint):
    # The same valid request, first by the admin, then (no write in between) by every principal the table
    # denies: each still gets its own 401/403, whatever the service remembers of the admin's answer.
    agent = auth.create_user("linked.agent")
    department = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}])
    denied = {
        principal: expected
        for principal, expected in zip(PRINCIPALS, MATRIX[endpoint][3], strict=True)
        if expected in (F, U) and principal != "agent+add"
    }
    headers: dict[str, dict[str, str]] = {}
    for index, principal in enumerate(denied):
        if principal == "anonymous":
            headers[principal] = {}
        else:
            headers[principal] = auth.user_headers(f"denied{index}", [principal])
    method, target, kwargs = request_parts(endpoint, department["_id"], agent["_id"])
    first = client.open(target, method=method, headers=auth.admin, **kwargs)
    assert first.status_code == 200, first.json
    for principal, expected in denied.items():
        response = client.open(target, method=method, headers=headers[principal], **kwargs)
        assert response.status_code == expected, (principal, response.json)
        assert response.json == (FORBIDDEN_BODY if expected == F else UNAUTHORIZED_BODY)


def test_agents_shown_to_the_admin_are_not_served_to_a_view_l_room_caller(client, auth):
    # §2.3: agents only with view-livechat-departments, also right after the admin read the same URL.
    agent = auth.create_user("linked.agent")
    department = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}])
    viewer = auth.user_headers("viewer", ["livechat-agent"])
    target = f"{API}/livechat/department/{department['_id']}"
    assert "agents" in client.get(target, headers=auth.admin).json
    response = client.get(target, headers=viewer)
    assert response.status_code == 200
    assert "agents" not in response.json
    assert response.json["department"]["_id"] == department["_id"]
