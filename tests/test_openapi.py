"""The OpenAPI document (`GET /api/openapi.json`): valid OpenAPI 3, and complete.

It is generated from the schemas the views load and dump (openapi.py), so these tests check the
generator's inputs: every route carries `@doc`, and what `@doc` names is what the view uses.
"""

from __future__ import annotations

import inspect

import pytest
from conftest import API
from openapi_spec_validator import validate

import openapi
import schemas
import validation

DEPARTMENT_OPERATIONS = {
    ("get", "/api/v1/livechat/department"),
    ("post", "/api/v1/livechat/department"),
    ("get", "/api/v1/livechat/department/{department_id}"),
    ("put", "/api/v1/livechat/department/{department_id}"),
    ("delete", "/api/v1/livechat/department/{department_id}"),
    ("get", "/api/v1/livechat/departments/archived"),
    ("post", "/api/v1/livechat/department/{department_id}/archive"),
    ("post", "/api/v1/livechat/department/{department_id}/unarchive"),
    ("get", "/api/v1/livechat/department.autocomplete"),
    ("get", "/api/v1/livechat/department/{department_id}/agents"),
    ("post", "/api/v1/livechat/department/{department_id}/agents"),
    ("get", "/api/v1/livechat/department.listByIds"),
    ("get", "/api/v1/livechat/department/isDepartmentCreationAvailable"),
    ("get", "/api/v1/livechat/agents/{agent_id}/departments"),
}


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")  # no auth headers: the document is public
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    return response.json


def test_the_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_is_documented(app):
    undocumented = [
        f"{sorted(rule.methods - {'HEAD', 'OPTIONS'})} {rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and openapi.view_doc(app.view_functions[rule.endpoint]) is None
    ]
    assert not undocumented, "routes without @doc (openapi.py):\n" + "\n".join(undocumented)


def test_every_documented_route_is_in_the_document(app, document):
    for rule in app.url_map.iter_rules():
        meta = openapi.view_doc(app.view_functions.get(rule.endpoint))
        if rule.endpoint == "static" or meta is None or meta.hidden:
            continue
        path = openapi._PATH_PARAM.sub(r"{\1}", rule.rule)
        for method in rule.methods - openapi.IGNORED_METHODS:
            assert method.lower() in document["paths"].get(path, {}), (method, path)


def test_the_department_endpoints_are_all_there(document):
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert DEPARTMENT_OPERATIONS <= operations, DEPARTMENT_OPERATIONS - operations


def test_public_means_public(app):
    """`@doc(public=True)` says what auth.public (or a path outside /api/) does."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        meta = openapi.view_doc(view)
        if rule.endpoint == "static" or meta is None or meta.hidden:
            continue
        reachable_without_login = getattr(view, "is_public", False) or not rule.rule.startswith("/api/")
        assert meta.public == reachable_without_login, rule.rule


def test_doc_names_the_schemas_the_view_uses(app):
    """The classes in `@doc` are the ones the view passes to load()/dump()/request_query() (no drift)."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        meta = openapi.view_doc(view)
        if rule.endpoint == "static" or meta is None:
            continue
        source = inspect.getsource(view)
        body = source[source.index("\ndef ") :]  # without the decorators, @doc among them
        for schema in (meta.query, meta.body, meta.response):
            if schema is not None:
                used = f"({schema.__name__}," in body or f"request_query({schema.__name__})" in body
                assert used, (rule.rule, schema.__name__)


def test_operations_have_summaries_and_error_bodies(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (method, path)
            assert "200" in operation["responses"], (method, path)
    components = document["components"]["responses"]
    unauthorized = components["Unauthorized"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"success", "error", "status", "message"} <= set(document["components"]["schemas"][unauthorized]["properties"])
    department = document["paths"]["/api/v1/livechat/department"]
    # 414: a long query string; 304: If-None-Match (docs/etags-and-idempotency.md)
    assert set(department["get"]["responses"]) == {"200", "304", "400", "401", "403", "414"}
    assert {p["name"] for p in department["get"]["parameters"]} >= {"offset", "count", "sort", "text", "showArchived"}
    assert department["get"]["security"] and not document["paths"]["/api/v1/login"]["post"]["security"]


def test_custom_field_types_are_mapped(document):
    schemas_ = document["components"]["schemas"]
    assert schemas_["Department"]["properties"]["_updatedAt"] == {"type": "string", "format": "date-time"}
    assert schemas_["AjvDepartment"]["properties"]["enabled"]["type"] == "boolean"
    offset = next(p for p in document["paths"]["/api/v1/livechat/department"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["type"] == "number" and offset["schema"]["minimum"] == 0
    # the PUT body documents the department's fields, and the agent items
    body = schemas_["DepartmentBody"]
    assert body["properties"]["department"] == {"$ref": "#/components/schemas/DepartmentUpdate"}
    assert body["properties"]["agents"]["items"] == {"$ref": "#/components/schemas/AgentItem"}
    assert set(schemas_["DepartmentUpdate"]["properties"]) == set(schemas.DEPARTMENT_FIELDS)


def test_the_documentation_fields_change_no_validation(client, auth):
    """MatchSchema bodies gained fields for the document only: Rocket.Chat's messages and check
    order are unchanged (the Meteor pattern still answers first)."""
    department = client.post(
        f"{API}/livechat/department",
        json={"department": {"name": "A", "email": "a@x", "enabled": True, "showOnRegistration": True}},
        headers=auth.admin,
    ).json["department"]
    put = client.put(f"{API}/livechat/department/{department['_id']}", json={"department": {}, "agents": [1]}, headers=auth.admin)
    assert put.json["error"] == "Match error: Expected object, got number in field upsert[0]"
    agents = client.post(f"{API}/livechat/department/{department['_id']}/agents", json={"upsert": [], "remove": [], "x": 1}, headers=auth.admin)
    assert agents.json["error"] == "Match error: Unknown key in field x"
    extra = client.put(f"{API}/livechat/department/{department['_id']}", json={"department": {"name": 1}}, headers=auth.admin)
    assert extra.json["error"] == "Match error: Expected string, got number in field name"
    # loading keeps the client's key order (custom fields are stored and shown in it)
    sent = {"zeta": 1, "name": "a", "alpha": "x", "enabled": True, "mid": False, "_id": "ignored", "beta": 2}
    assert list(validation.load(schemas.DepartmentUpdateSchema, sent)) == ["zeta", "name", "alpha", "enabled", "mid", "beta"]
