"""A corpus of hostile inputs on every route: always a JSON answer, never a 5xx, nothing written.

Huge strings, deep JSON nesting, NUL bytes, invalid UTF-8 (bodies, query strings, headers),
JSON that is not an object, duplicate keys, numbers out of range (1e400, NaN, 2**70), SQL- and
regex-looking text, very long ids in paths and very long headers. Path parameters are never
real ids, so every write must fail: a 4xx with `success: false`. Reads may answer 200 (a
search for `%` finds nothing, which is right). Every table is dumped with the app's own engine
before and after, and must not change (failed logins excepted: counting them is the throttle's job).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from conftest import API, create_department

SQL = "'; DROP TABLE departments;--"
HUGE = "x" * 500_000  # under MAX_BODY_BYTES (1 MiB): it reaches the schemas
DEEP = 100_000  # far past Python's recursion limit
VALID_DEPARTMENT = '{"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true}'

BODIES: list[bytes | str] = [
    "[]", '"x"', "1", "null", "true", "{}", "[{}]",
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    '{"department": ' + "[" * 900 + "]" * 900 + ', "upsert": ' + "[" * 900 + "]" * 900 + ', "remove": [], "value": ' + "[" * 900 + "]" * 900 + "}",
    '{"department": ' + '{"a":' * 900 + "1" + "}" * 900 + ', "permissions": ' + '[{"_id":' * 300 + '"x"' + "}]" * 300 + "}",
    '{"department": {"name": "a\\u0000b", "email": "e@x", "enabled": true, "showOnRegistration": true}}',
    '{"username": "\\u0000", "userId": "a\\u0000", "user": "\\u0000", "password": "\\u0000", "value": "\\u0000"}',
    b'{"department": {"name": "\x00"}}',
    b'{"department": {"name": "\xff\xfe"}, "username": "\xc3\x28", "value": "\xed\xa0\x80"}',
    b"\xff\xfe{\x00}",
    '{"department": ' + VALID_DEPARTMENT + ', "department": 1, "upsert": [], "upsert": 1, "remove": [], "value": 1, "value": {}}',
    '{"department": {"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true, "x": 1e400}, "value": 1e400}',
    '{"department": {"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true, "x": NaN}, "value": NaN}',
    '{"department": {"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true, "x": -Infinity}, "value": Infinity}',
    f'{{"department": {{"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true, "x": {2**70}}}, "value": {2**70}}}',
    f'{{"department": {VALID_DEPARTMENT}, "agents": [{{"agentId": "nobody", "count": {2**70}}}], "upsert": [{{"agentId": "x", "order": 1e400}}], "remove": []}}',
    json.dumps({"department": {"name": SQL, "email": ".*"}, "username": SQL, "userId": SQL, "user": SQL, "password": SQL}),
    json.dumps({"permissions": [{"_id": SQL, "roles": [".*", "%"]}], "value": SQL, "upsert": [{"agentId": ".*"}], "remove": [{"agentId": "%"}]}),
    json.dumps({"department": {"name": HUGE, "email": "e@x", "enabled": True, "showOnRegistration": True}, "username": HUGE, "value": HUGE}),
    json.dumps({"department": {"name": "n", "email": "e@x", "enabled": True, "showOnRegistration": True, HUGE[:5000]: 1}}),
    json.dumps({"value": "x" * 2_000_000}),  # over MAX_BODY_BYTES: 413
    json.dumps({"department": {"name": "n", "email": "e@x", "enabled": True, "showOnRegistration": True}, "agents": [{"agentId": "a"}] * 5000}),
]
QUERIES = [
    "text=%ff%fe&%ff=%fe", "text=%00", "%00=1", "text=" + quote(SQL), "text=.*", "text=%25", "text=_", "text=" + "a" * 100_000,
    "count=1e400&offset=1e400", "count=-1e400", "offset=NaN&count=Infinity", f"count={2**70}&offset={2**70}",
    "sort=" + quote('{"name": 1e400}'), "sort=" + quote('{"name": ' * 5000 + "1" + "}" * 5000), "sort=" + quote(SQL),
    "selector=" + quote(json.dumps({"term": ".*"})), "selector=" + quote(json.dumps({"term": SQL, "conditions": {"$where": "1"}})),
    "selector=" + quote("[" * DEEP + "]" * DEEP), "selector=%ff",
    "ids[]=" + "&ids[]=".join(str(i) for i in range(600)), "ids=" + "x" * 100_000, "ids[a][b][c]=1",
    "username=" + quote(SQL), "userId=" + "x" * 100_000, "updatedSince=" + quote(SQL), "fields=" + quote(SQL),
    "query=" + quote('{"$where": "sleep(1000)"}'), "text[a][b]=1&count[]=1",
]
PATH_IDS = ["x" * 10_000, quote(SQL, safe=""), ".*", "%25", "%00", "%ff%fe", "..", "null", "%2F"]
PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
DOCUMENTS = ("/api/openapi.json", "/api/docs", "/admin/")  # the admin page's files are not envelopes either


LOGIN_BODIES = [
    json.dumps({"user": {"$ne": 1}, "password": {"$ne": 1}}),
    json.dumps({"user": "admin", "password": {"digest": "x" * 100_000, "algorithm": "sha-256"}}),
    json.dumps({"user": "admin", "password": ["a"]}), json.dumps({"user": "admin", "password": None}),
    json.dumps({"resume": SQL}), json.dumps({"resume": "x" * 100_000}), json.dumps({"user": ".*", "password": ".*"}),
    json.dumps({"username": "admin", "password": "wrong\u0000"}), json.dumps({"email": "%", "password": "%"}),
]
# A failed login is counted (the throttle) and that count bumps the data version: both may change.
LOGIN_TABLES = {"login_failures", "data_version"}


def dump_tables(app) -> dict[str, list[str]]:
    """Every row of every table (reflected, so new tables count too), read with the app's own engine."""
    metadata = sa.MetaData()
    with app.extensions["db.engine"].connect() as conn:
        metadata.reflect(conn)
        return {name: sorted(repr(tuple(row)) for row in conn.execute(sa.select(table))) for name, table in metadata.tables.items()}


def routes(app) -> list[tuple[str, str, list[str]]]:
    """(method, path with `<param>` kept, param names) for every route and method."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, PARAM.findall(rule.rule)))
    return sorted(found)


def fill(path: str, value: str) -> str:
    return PARAM.sub(value, path)


class Sweep:
    """Sends requests and keeps every answer that breaks the rules, with a tally of statuses."""

    def __init__(self, client) -> None:
        self.client = client
        self.problems: list[str] = []
        self.statuses: Counter[int] = Counter()

    def send(self, method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
             content_type: str = "application/json", may_succeed: bool = False) -> None:
        response = self.client.open(url, method=method, data=body, content_type=content_type, headers=headers or {})
        self.statuses[response.status_code] += 1
        shown = body[:80] if body is not None else None
        where = f"{method} {url[:120]} body={shown!r} headers={[k for k in (headers or {})]}: {response.status_code} {response.get_data()[:200]!r}"
        if response.status_code >= 500:
            self.problems.append("server error: " + where)
            return
        if url.startswith(DOCUMENTS) and response.status_code == 200:
            return  # the OpenAPI document, the docs page or the admin page, not an envelope
        if response.headers.get("Content-Type") != "application/json":
            self.problems.append("not JSON: " + where)
            return
        data = response.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("success"), bool):
            self.problems.append("no envelope: " + where)
        elif response.status_code >= 400 and data["success"] is not False:
            self.problems.append("error with success: " + where)
        elif response.status_code < 400 and not (may_succeed or method == "GET"):
            self.problems.append("a hostile write succeeded: " + where)

    def assert_clean(self) -> None:
        assert not self.problems, f"{len(self.problems)} problems:\n" + "\n".join(self.problems[:25])


@pytest.fixture
def seeded(app, client, auth):
    """Data worth protecting: an agent in a department, and a second department."""
    agent = auth.create_user("hostile.agent")
    assert client.post(f"{API}/livechat/users/agent", json={"username": "hostile.agent"}, headers=auth.admin).status_code == 200
    create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}], name="Sales")
    create_department(client, auth.admin, name="Support", description="help")
    return auth.admin


def test_hostile_bodies_queries_and_path_ids(app, client, seeded):
    admin = seeded
    before = dump_tables(app)
    sweep = Sweep(client)
    for method, path, params in routes(app):
        if path.endswith("/logout") or path.endswith("/login"):
            continue  # logout would end the session; login has its own test below
        url = fill(path, "nothing-here")
        if method == "GET":
            for query in QUERIES:
                sweep.send(method, f"{url}?{query}", headers=admin)
        else:
            for body in BODIES:
                sweep.send(method, url, body, admin)
            sweep.send(method, url, BODIES[-3], admin, content_type="text/plain")
            sweep.send(method, url, "department=1&value=%00", admin, content_type="application/x-www-form-urlencoded")
        for hostile_id in PATH_IDS if params else []:
            sweep.send(method, fill(path, hostile_id), "{}" if method != "GET" else None, admin)
    sweep.assert_clean()
    assert dump_tables(app) == before
    assert {400, 413, 415} <= set(sweep.statuses), sweep.statuses


def test_hostile_headers(app, client, seeded):
    admin = seeded
    before = dump_tables(app)
    sweep = Sweep(client)
    headers = [
        {"X-User-Id": "x" * 100_000, "X-Auth-Token": "y" * 100_000},
        {"X-User-Id": admin["X-User-Id"], "X-Auth-Token": admin["X-Auth-Token"] + "\xff"},
        {"X-User-Id": admin["X-User-Id"] + "\x00", "X-Auth-Token": admin["X-Auth-Token"]},
        {"X-User-Id": SQL, "X-Auth-Token": ".*"},
        {"X-User-Id": "%", "X-Auth-Token": "%", "X-Junk": "z" * 1_000_000},
    ]
    for method, path, _params in routes(app):
        for hostile in headers:
            public = path in ("/api/info", "/api/v1/login") or path.startswith(DOCUMENTS) or not path.startswith("/api/")
            sweep.send(method, fill(path, "nothing-here"), "{}" if method != "GET" else None, hostile, may_succeed=public)
    sweep.assert_clean()
    assert dump_tables(app) == before
    assert sweep.statuses[401] > 0, sweep.statuses


def test_hostile_logins(app, client, seeded):
    before = dump_tables(app)
    sweep = Sweep(client)
    for body in [*BODIES, *LOGIN_BODIES]:
        sweep.send("POST", f"{API}/login", body)
    sweep.send("POST", f"{API}/login", "user=admin&password=%00", content_type="application/x-www-form-urlencoded")
    sweep.send("POST", f"{API}/login", "user=%ff&password=%fe", content_type="application/x-www-form-urlencoded")
    sweep.assert_clean()
    after = dump_tables(app)
    assert {k: v for k, v in after.items() if k not in LOGIN_TABLES} == {k: v for k, v in before.items() if k not in LOGIN_TABLES}
    # the admin's session still works
    assert client.get(f"{API}/me", headers=seeded).status_code == 200


# --- characters no column can hold, and JSON that is not JSON (issue 14, items 1 and 11) -------

LONE_SURROGATE = '"\\ud800"'  # JSON text: the escape of a lone surrogate, which Python decodes as is
SURROGATE_BODIES = {
    "livechat/department": '{"department": {"name": %s, "email": "e@x", "enabled": true, "showOnRegistration": true}}',
    "users.create": '{"username": "u", "email": "u@example.com", "name": %s, "password": "pw-1"}',
    "livechat/users/agent": '{"username": %s}',
    "users.delete": '{"username": %s}',
    "livechat/department/{id}/agents": '{"upsert": [{"agentId": %s}], "remove": []}',
    "livechat/department/{id}": '{"department": {"description": %s}}',
}
SURROGATE_ERROR = "Invalid input: unpaired UTF-16 surrogates (\\ud800-\\udfff) are not allowed"


def refused_once(caplog, response, error: str) -> None:
    """400 with the Rocket.Chat-style body, logged as one INFO line and no error."""
    assert response.status_code == 400, response.get_data()
    assert response.json == {"success": False, "error": error}
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.getMessage()[:40] for r in caplog.records if r.name == "request_input"] == [f"request refused: {error}"[:40]]


def test_a_lone_surrogate_in_any_json_string_is_a_400_not_a_500(app, client, seeded, caplog):
    department = create_department(client, seeded, name="Target")
    before = dump_tables(app)
    for path, body in SURROGATE_BODIES.items():
        method = "PUT" if path == "livechat/department/{id}" else "POST"
        url = f"{API}/{path.replace('{id}', department['_id'])}"
        for text in (body % LONE_SURROGATE, body % '"a\\udfffb"'):
            caplog.clear()
            with caplog.at_level(logging.INFO):
                response = client.open(url, method=method, data=text, content_type="application/json", headers=seeded)
            refused_once(caplog, response, SURROGATE_ERROR)
    # a pair of surrogate escapes is one real character, and is stored
    emoji = '{"department": {"name": "\\ud83d\\ude00", "email": "e@x", "enabled": true, "showOnRegistration": true}}'
    response = client.post(f"{API}/livechat/department", data=emoji, content_type="application/json", headers=seeded)
    assert response.status_code == 200 and response.json["department"]["name"] == "\U0001f600"
    after = dump_tables(app)
    assert {k: v for k, v in after.items() if k not in ("departments", "department_changes", "data_version")} == {
        k: v for k, v in before.items() if k not in ("departments", "department_changes", "data_version")
    }


@pytest.mark.parametrize(
    "query",
    [
        "selector=" + quote('{"term": "\\ud800"}'),
        "selector=" + quote('{"conditions": {"_id": {"$in": ["\\udc00"]}}}'),
    ],
)
def test_a_lone_surrogate_in_a_json_query_parameter_is_a_400(client, seeded, caplog, query):
    with caplog.at_level(logging.INFO):
        response = client.get(f"{API}/livechat/department.autocomplete?{query}", headers=seeded)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": SURROGATE_ERROR}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("query", ["text=%ff", "text=%ed%a0%80", "text=%c3", "%e9t%e9=1", "username=caf%e9"])
def test_a_query_string_that_is_not_utf8_is_a_400(client, seeded, caplog, query):
    path = "users.info" if query.startswith("username") else "livechat/department"
    with caplog.at_level(logging.INFO):
        response = client.get(f"{API}/{path}?{query}", headers=seeded)
    refused_once(caplog, response, "Invalid input: the query string is not valid UTF-8")


def test_a_valid_utf8_query_string_is_read(client, seeded):
    create_department(client, seeded, name="Café")
    response = client.get(f"{API}/livechat/department?text=caf%C3%A9", headers=seeded)
    assert response.status_code == 200 and [d["name"] for d in response.json["departments"]] == ["Café"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_bare_nan_and_infinity_are_malformed_json(app, client, seeded, constant):
    before = dump_tables(app)
    department = f'{{"department": {{"name": "n", "email": "e@x", "enabled": true, "showOnRegistration": true, "x": {constant}}}}}'
    named = f'{{"department": {{"name": {constant}, "email": "e@x", "enabled": true, "showOnRegistration": true}}}}'
    for body in (department, named):
        response = client.post(f"{API}/livechat/department", data=body, content_type="application/json", headers=seeded)
        assert response.status_code == 400
        assert response.json == {"success": False, "error": "Malformed JSON body"}
    assert dump_tables(app) == before
