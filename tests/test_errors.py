"""The one error path: every failure is a JSON body with the right status (docs/compatibility.md §3.1–§3.5,
docs/compatibility.md §D.14 "A malformed JSON body, wrong Content-Type, unknown route or method")."""

import json
import re
import sqlite3

import pytest
from conftest import ADMIN_PASSWORD, API, CHEAP_HASHING, FORBIDDEN_BODY, UNAUTHORIZED_BODY

import db
from access import public
from app import create_app

NOT_FOUND = {"success": False, "error": "Resource not found"}
NOT_ALLOWED = {"success": False, "error": "Method not allowed"}
MALFORMED = {"success": False, "error": "Malformed JSON body"}
UNSUPPORTED = {"success": False, "error": "Unsupported Media Type: the body must be JSON (Content-Type: application/json)"}
TOO_LARGE = {"success": False, "error": "Request body too large"}


def assert_json(response, status, body=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Content-Type"] == "application/json"
    if body is not None:
        assert response.json == body


def test_unknown_route_is_a_json_404(client, auth):
    for path in (f"{API}/nope", f"{API}/livechat/nope/deeper", "/nope", "/", "/api"):
        assert_json(client.get(path), 404, NOT_FOUND)  # not a 401, even without login
        assert_json(client.post(path, json={}, headers=auth.admin), 404, NOT_FOUND)


def test_wrong_method_is_a_json_405_with_allow(client, auth):
    for method, path, allowed in (
        ("delete", f"{API}/me", {"GET", "HEAD", "OPTIONS"}),
        ("put", f"{API}/login", {"POST", "OPTIONS"}),
        ("get", f"{API}/users.create", {"POST", "OPTIONS"}),
        ("patch", f"{API}/settings/Livechat_enabled", {"GET", "HEAD", "POST", "OPTIONS"}),
    ):
        for headers in ({}, auth.admin):
            response = getattr(client, method)(path, headers=headers)
            assert_json(response, 405, NOT_ALLOWED)
            assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_malformed_json_is_400(client, auth):
    for data in ("{", '{"user": "admin",}', "nul", b"\xff\xfe"):
        response = client.post(f"{API}/login", data=data, content_type="application/json")
        assert_json(response, 400, MALFORMED)
        response = client.post(f"{API}/users.create", data=data, content_type="application/json", headers=auth.admin)
        assert_json(response, 400, MALFORMED)


def test_json_that_is_not_an_object_is_a_validation_error(client, auth):
    # (`null` counts as malformed, as Express's strict JSON parser has it)
    response = client.post(f"{API}/users.create", data="null", content_type="application/json", headers=auth.admin)
    assert_json(response, 400, MALFORMED)
    for data in ("[]", '"text"', "42"):
        response = client.post(f"{API}/users.create", data=data, content_type="application/json", headers=auth.admin)
        assert_json(response, 400, {"success": False, "error": "must be object [invalid-params]", "errorType": "invalid-params"})


def test_wrong_content_type_is_415(client, auth):
    body = json.dumps({"user": "admin", "password": ADMIN_PASSWORD})
    for content_type in ("text/plain", "application/xml", "application/octet-stream"):
        assert_json(client.post(f"{API}/login", data=body, content_type=content_type), 415, UNSUPPORTED)
        response = client.post(f"{API}/permissions.update", data="{}", content_type=content_type, headers=auth.admin)
        assert_json(response, 415, UNSUPPORTED)
    # `application/json; charset=utf-8` and `+json` types are JSON
    response = client.post(f"{API}/login", data=body, content_type="application/json; charset=utf-8")
    assert_json(response, 200)


@pytest.fixture
def small_body_client(database_url):
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "MAX_CONTENT_LENGTH": 256, **CHEAP_HASHING})
    yield app.test_client()
    db.dispose(app)


def test_oversized_body_is_413(small_body_client):
    client = small_body_client
    big = {"user": "admin", "password": "x" * 300}
    assert_json(client.post(f"{API}/login", json=big), 413, TOO_LARGE)
    assert_json(client.post(f"{API}/login", data="{" * 300, content_type="application/json"), 413, TOO_LARGE)
    # a body under the limit is read as usual (here: an unknown user)
    assert_json(client.post(f"{API}/login", json={"user": "ghost", "password": "x"}), 401)


def test_success_and_error_responses_are_exactly_application_json(client, auth):
    plain = auth.user_headers("plain")
    responses = [
        (client.get("/api/info"), 200),
        (client.get(f"{API}/me", headers=auth.admin), 200),
        (client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD}), 200),
        (client.get(f"{API}/permissions.listAll", headers=auth.admin), 200),
        (client.get(f"{API}/me"), 401),
        (client.post(f"{API}/login", json={"user": "admin", "password": "wrong"}), 401),
        (client.get(f"{API}/users.list?count=x", headers=auth.admin), 400),
        (client.get(f"{API}/users.list", headers=plain), 403),
        (client.get(f"{API}/nope"), 404),
        (client.delete(f"{API}/me"), 405),
        (client.post(f"{API}/login", data="{", content_type="application/json"), 400),
        (client.post(f"{API}/login", data="x", content_type="text/plain"), 415),
    ]
    for response, status in responses:
        assert_json(response, status)
        body = response.json
        assert body["success"] is (status == 200)
        # no charset, no HTML anywhere
        assert "<" not in response.get_data(as_text=True)


def test_forbidden_body_is_exact(client, auth):
    plain = auth.user_headers("plain")
    for response in (
        client.get(f"{API}/users.list", headers=plain),
        client.post(f"{API}/permissions.update", json={"permissions": []}, headers=plain),
        client.get(f"{API}/settings/Livechat_enabled", headers=plain),
        client.post(f"{API}/livechat/users/agent", json={"username": "plain"}, headers=plain),
    ):
        assert_json(response, 403)
        assert response.json == {
            "success": False,
            "error": "User does not have the permissions required for this action [error-unauthorized]",
        }
        assert response.json == FORBIDDEN_BODY


def test_check_order_is_401_then_400_then_403(client, auth):
    plain = auth.user_headers("plain")
    # The agent list answers Rocket.Chat's bare `API.v1.forbidden()` (docs/compatibility.md §4.5).
    bare_forbidden = {"success": False, "error": "unauthorized"}
    cases = [
        # (method, path, bad body or query, good body or query, the 403 body)
        ("post", f"{API}/permissions.update", {"permissions": "x"}, {"permissions": []}, FORBIDDEN_BODY),
        ("post", f"{API}/users.create", {}, {"email": "a@b.c", "name": "A", "password": "p", "username": "a"}, None),
        ("post", f"{API}/livechat/users/agent", {"nope": 1}, {"username": "plain"}, FORBIDDEN_BODY),
        ("post", f"{API}/settings/Livechat_enabled", {}, {"value": False}, FORBIDDEN_BODY),
        ("get", f"{API}/users.list?count=abc", None, None, FORBIDDEN_BODY),
        ("get", f"{API}/livechat/users/agent?offset=x", None, None, bare_forbidden),
    ]
    for method, path, bad, _good, _forbidden in cases:
        call = getattr(client, method)
        # not logged in: 401 whatever the parameters
        assert_json(call(path, json=bad) if bad is not None else call(path), 401, UNAUTHORIZED_BODY)
        # logged in but unprivileged, bad parameters: 400, not 403
        response = call(path, json=bad, headers=plain) if bad is not None else call(path, headers=plain)
        assert_json(response, 400)
        assert response.json["success"] is False, path
    # unprivileged with good parameters: 403 (users.create is Rocket.Chat's 400 exception, see test_users)
    for method, path, _bad, good, forbidden in cases:
        if forbidden is None:
            continue
        call = getattr(client, method)
        path = path.split("?")[0]
        response = call(path, json=good, headers=plain) if good is not None else call(path, headers=plain)
        assert_json(response, 403, forbidden)


@pytest.fixture
def app_with_a_bug(database_url):
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, **CHEAP_HASHING})

    @app.get(f"{API}/boom")
    @public
    def boom():
        raise RuntimeError("secret internals")

    yield app
    db.dispose(app)


def test_an_unexpected_error_is_a_json_500_without_details(app_with_a_bug, caplog):
    response = app_with_a_bug.test_client().get(f"{API}/boom")
    assert_json(response, 500, {"success": False, "error": "Internal server error"})
    assert "secret internals" not in response.get_data(as_text=True)
    assert "secret internals" in caplog.text  # but the log has it


def test_an_unreachable_database_is_a_json_503(tmp_path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    for url in (f"sqlite:///{directory}", "postgresql://postgres@127.0.0.1:1/nothing-listens-here"):
        app = create_app({"TESTING": True, "DATABASE_URL": url, **CHEAP_HASHING})
        client = app.test_client()
        try:
            assert_json(
                client.post(f"{API}/login", json={"user": "admin", "password": "x"}),
                503,
                {"success": False, "error": "Service unavailable: database error"},
            )
            assert_json(client.get(f"{API}/me", headers={"X-User-Id": "a", "X-Auth-Token": "b"}), 503)
        finally:
            db.dispose(app)


NUL_REQUESTS = [
    ("POST", f"{API}/login", {"user": "a\x00b", "password": "x"}),
    ("POST", f"{API}/login", {"resume": "a\x00b"}),
    ("GET", f"{API}/users.info?username=a%00b", None),
    ("GET", f"{API}/users.info?userId=a%00b", None),
    ("GET", f"{API}/users.list?query=%00", None),
    ("GET", f"{API}/livechat/users/agent?text=a%00b", None),
    ("GET", f"{API}/livechat/users/agent?excludeId=a%00b", None),
    ("GET", f"{API}/livechat/users/agent/a%00b", None),
    ("DELETE", f"{API}/livechat/users/agent/a%00b", None),
    ("POST", f"{API}/livechat/users/agent", {"username": "a\x00b"}),
    ("GET", f"{API}/settings/a%00b", None),
    ("POST", f"{API}/settings/a%00b", {"value": 1}),
    ("POST", f"{API}/permissions.update", {"permissions": [{"_id": "a\x00b", "roles": []}]}),
    ("POST", f"{API}/permissions.update", {"permissions": [{"_id": "view-l-room", "roles": ["a\x00b"]}]}),
    ("POST", f"{API}/users.create", {"username": "nul1", "email": "a\x00@b.c", "name": "n", "password": "p"}),
    ("POST", f"{API}/users.create", {"username": "nul2", "email": "nul2@b.c", "name": "n\x00", "password": "p"}),
    ("POST", f"{API}/users.delete", {"userId": "a\x00b"}),
]


def test_nul_characters_are_answered_never_a_server_error(client, auth):
    """PostgreSQL cannot hold or compare NUL characters; SQLite can. Either way: 200 or 400."""
    for method, path, body in NUL_REQUESTS:
        response = client.open(path, method=method, json=body, headers=auth.admin)
        where = (method, path, body, response.get_data(as_text=True)[:200])
        assert response.status_code in (200, 400, 401), where
        assert response.headers["Content-Type"] == "application/json", where
        assert response.json["success"] is (response.status_code == 200), where
    # the admin session and the data are intact
    assert client.get(f"{API}/me", headers=auth.admin).status_code == 200
    permissions = client.get(f"{API}/permissions.listAll", headers=auth.admin).json["update"]
    assert next(p["roles"] for p in permissions if p["_id"] == "view-l-room") == [
        "livechat-manager", "livechat-monitor", "livechat-agent", "admin"
    ]


def _concrete_paths(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "x", rule.rule)
        if path.endswith("/logout"):
            continue  # it would end the admin session the sweep uses
        yield path


ODD_BODIES = [
    "{", "null", "[]", '"text"', "{}", '{"a": {"b": [1, null]}}', '{"department": null, "upsert": 5, "value": []}',
    '{"username": "a\\u0000b", "userId": "\\u0000", "permissions": [{"_id": "\\u0000", "roles": []}]}',
]
ODD_QUERIES = [
    "", "?count=abc&offset=-1&sort={", "?text[]=a&count[x]=1&sort=%7B%22name%22%3A2%7D&ids=1", "?selector=%7B&_id=1",
    "?offset=99999999999999999999&count=1e999", "?text=a%00b&excludeId=%00&username=%00&updatedSince=%00",
]


def test_no_route_answers_500_or_html_to_odd_requests(app, client, auth):
    """A sweep over every route and method with odd bodies and queries, logged in and not."""
    paths = sorted(set(_concrete_paths(app)))
    assert f"{API}/users.create" in paths and f"{API}/livechat/users/x/x" in paths
    seen = set()
    for path in paths:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            requests = [("", None, {})]
            if method == "GET":
                requests += [(query, None, auth.admin) for query in ODD_QUERIES]
            else:
                requests += [("", body, auth.admin) for body in ODD_BODIES]
            for query, body, headers in requests:
                response = client.open(
                    path + query, method=method, data=body, content_type="application/json", headers=headers
                )
                where = (method, path + query, body, response.status_code, response.get_data(as_text=True)[:200])
                assert response.status_code < 500, where
                if path in ("/api/docs", "/admin/") and response.status_code == 200:  # pages: HTML by design
                    assert response.headers["Content-Type"].startswith("text/html"), where
                    continue
                assert response.headers["Content-Type"] == "application/json", where
                assert isinstance(response.json, dict), where
                if not (path == "/api/openapi.json" and response.status_code == 200):  # a document, no envelope
                    assert isinstance(response.json.get("success"), bool), where
                if response.status_code >= 400:
                    assert response.json["success"] is False, where
                seen.add(response.status_code)
    assert {200, 400, 401, 405} <= seen
    # the sweep did not lock the admin out or delete anyone
    assert client.get(f"{API}/me", headers=auth.admin).status_code == 200


def test_a_write_lock_held_past_busy_timeout_is_a_json_503_and_a_clear_cli_error(make_app, database_url):
    """SQLite: another process holds the write lock (a person in the sqlite3 shell, mid-transaction).
    A write waits SQLITE_BUSY_TIMEOUT_MS at its BEGIN IMMEDIATE, then answers 503 in JSON, and a
    command says "database error" instead of a traceback; reads go on (WAL)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's file lock; PostgreSQL locks rows, not the database")
    app = make_app(SQLITE_BUSY_TIMEOUT_MS=50)
    client = app.test_client()
    login = client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    headers = {"X-User-Id": login.json["data"]["userId"], "X-Auth-Token": login.json["data"]["authToken"]}
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        body = {"department": {"name": "Locked out", "enabled": True, "showOnRegistration": True, "email": "a@b.c"}}
        assert_json(
            client.post(f"{API}/livechat/department", json=body, headers=headers),
            503,
            {"success": False, "error": "Service unavailable: database error"},
        )
        assert client.get(f"{API}/livechat/department", headers=headers).status_code == 200
        result = app.test_cli_runner().invoke(
            args=["create-user", "locked.out", "locked.out@example.com", "--password-stdin"], input="pass-word-1\n"
        )
        assert result.exit_code == 1 and "database error: database is locked" in result.output, result.output
    finally:
        holder.rollback()
        holder.close()
    assert client.post(f"{API}/livechat/department", json=body, headers=headers).status_code == 200
