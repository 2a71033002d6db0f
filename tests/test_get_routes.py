"""Every GET route, called with valid input, answers 2xx on both databases.

PostgreSQL runs GET requests in autocommit, read-only (db.session): a GET that writes fails
there with a 500 while SQLite lets it through, so this walk is what keeps every GET honest.
A GET route added without an example here fails the walk.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from conftest import API, create_department

import openapi
import webhooks

# GET `logout` writes on purpose (db.writes) and ends the session: it is called last.
LAST = "/api/v1/logout"
REDIRECTS = {"/admin"}


def examples(ids: dict[str, str]) -> dict[str, list[str]]:
    """URLs to call for each GET rule, with real ids and valid query strings."""
    department, agent = ids["department"], ids["agent"]
    return {
        "/admin": ["/admin"],  # a redirect to /admin/ (REDIRECTS)
        "/admin/": ["/admin/"],
        "/admin/<filename>": ["/admin/app.js", "/admin/style.css", "/admin/icon.svg"],
        "/api/docs": ["/api/docs"],
        "/api/docs/<path:filename>": ["/api/docs/swagger-initializer.js"],
        "/api/ext/v1/livechat/department.changes": ["/api/ext/v1/livechat/department.changes?limit=5", "/api/ext/v1/livechat/department.changes?after=0"],
        "/api/ext/v1/livechat/department/<department_id>/history": [f"/api/ext/v1/livechat/department/{department}/history?count=5"],
        "/api/ext/v1/webhooks": ["/api/ext/v1/webhooks"],
        "/api/ext/v1/webhooks/<endpoint_id>/deliveries": [f"/api/ext/v1/webhooks/{ids['webhook']}/deliveries?count=5"],
        "/api/info": ["/api/info"],
        "/api/openapi.json": ["/api/openapi.json"],
        "/api/v1/livechat/agents/<agent_id>/departments": [
            f"{API}/livechat/agents/{agent}/departments", f"{API}/livechat/agents/{agent}/departments?enabledDepartmentsOnly=true",
        ],
        "/api/v1/livechat/department": [
            f"{API}/livechat/department", f"{API}/livechat/department?text=sal&count=5&offset=0&sort=" + quote('{"name":-1}'),
            f"{API}/livechat/department?onlyMyDepartments=true&showArchived=true&enabled=true&excludeDepartmentId={department}",
        ],
        "/api/v1/livechat/department.autocomplete": [
            f"{API}/livechat/department.autocomplete?selector=" + quote(json.dumps({"term": "Sa", "conditions": {"enabled": True}})),
        ],
        "/api/v1/livechat/department.listByIds": [f"{API}/livechat/department.listByIds?ids[]={department}"],
        "/api/v1/livechat/department/<department_id>": [
            f"{API}/livechat/department/{department}", f"{API}/livechat/department/{department}?includeAgents=false",
        ],
        "/api/v1/livechat/department/<department_id>/agents": [f"{API}/livechat/department/{department}/agents?count=10"],
        "/api/v1/livechat/department/isDepartmentCreationAvailable": [f"{API}/livechat/department/isDepartmentCreationAvailable"],
        "/api/v1/livechat/departments/archived": [f"{API}/livechat/departments/archived"],
        "/api/v1/livechat/users/<user_type>": [
            f"{API}/livechat/users/agent?text=get&onlyAvailable=false&showIdleAgents=false", f"{API}/livechat/users/manager",
        ],
        "/api/v1/livechat/users/<user_type>/<user_id>": [f"{API}/livechat/users/agent/{agent}"],
        "/api/v1/me": [f"{API}/me"],
        "/api/v1/permissions.listAll": [f"{API}/permissions.listAll", f"{API}/permissions.listAll?updatedSince=2020-01-01T00:00:00.000Z"],
        "/api/v1/settings/<setting_id>": [f"{API}/settings/API_Default_Count"],
        "/api/v1/users.info": [f"{API}/users.info?userId={agent}", f"{API}/users.info?username=get.agent"],
        "/api/v1/users.list": [f"{API}/users.list?count=10"],
        "/healthz": ["/healthz"],
        "/readyz": ["/readyz"],
        LAST: [LAST],
    }


def test_every_get_route_answers_with_valid_input(app, client, auth):
    agent = auth.create_user("get.agent")
    assert client.post(f"{API}/livechat/users/agent", json={"username": "get.agent"}, headers=auth.admin).status_code == 200
    department = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}], name="Sales")
    with app.app_context(), app.extensions["db.sessionmaker"]() as session:
        hook = webhooks.create_endpoint(session, {"url": "http://127.0.0.1:9/", "kinds": ["created"]}, webhooks.parse_networks("127.0.0.0/8"))
    urls = examples({"department": department["_id"], "agent": agent["_id"], "webhook": hook.id})

    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ()) and rule.endpoint != "static"}
    rules = set(endpoints)
    assert rules == set(urls), "every GET route needs an example here"
    for rule in sorted(rules - {LAST}) + [LAST]:
        for url in urls[rule]:
            response = client.get(url, headers=auth.admin)
            expected = range(300, 400) if rule in REDIRECTS else (200,)
            assert response.status_code in expected, (url, response.status_code, response.get_data()[:300])
            # an ETag exactly where the document promises one (docs/etags-and-idempotency.md)
            meta = openapi.view_doc(app.view_functions[endpoints[rule]])
            assert ("ETag" in response.headers) == bool(meta and meta.etag), url
    # the GET logout revoked the token, on both databases
    assert client.get(f"{API}/me", headers=auth.admin).status_code == 401
