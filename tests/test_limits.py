"""Size limits, each with a clear error and a documented setting (README "Limits")."""

from __future__ import annotations

import socket

import pytest
import requests
from conftest import API, create_department, set_setting
from servers import Server, server_url


def test_a_body_over_max_body_bytes_is_413(make_app, auth):
    client = make_app(MAX_CONTENT_LENGTH=1024).test_client()
    auth.client = client
    body = {"department": {"name": "x", "description": "d" * 2000}}
    response = client.post(f"{API}/livechat/department", json=body, headers=auth.admin)
    assert response.status_code == 413
    assert response.json == {"success": False, "error": "Request body too large"}


def test_a_page_never_exceeds_the_upper_count_limit(client, auth):
    set_setting(client, auth.admin, "API_Upper_Count_Limit", 3)
    for i in range(5):
        create_department(client, auth.admin, name=f"dep-{i}")
    body = client.get(f"{API}/livechat/department?count=1000", headers=auth.admin).json
    assert (body["count"], body["total"]) == (3, 5)


def test_a_string_longer_than_its_column_is_400(client, auth):
    department = {"name": "n" * 257, "email": "a@b", "enabled": True, "showOnRegistration": True}
    response = client.post(f"{API}/livechat/department", json={"department": department}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Expected string of at most 256 characters in field name"}


def test_list_by_ids_takes_at_most_500_ids(client, auth):
    query = "&".join(f"ids[]={i:024x}" for i in range(501))
    response = client.get(f"{API}/livechat/department.listByIds?{query}", headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "The 'ids' param can hold at most 500 ids"}


def test_at_most_1000_agents_per_request(client, auth):
    department = create_department(client, auth.admin)
    body = {"upsert": [{"agentId": f"agent-{i}"} for i in range(1001)], "remove": []}
    response = client.post(f"{API}/livechat/department/{department['_id']}/agents", json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Too many agents in one request (at most 1000)"}


def raw_request(base: str, head: str) -> str:
    """Send a hand-made request head; return the status line."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        return sock.makefile("rb").readline().decode().strip()


@pytest.mark.e2e
def test_gunicorn_refuses_oversized_request_heads(empty_database_url, tmp_path):
    server = Server(server_url(empty_database_url), tmp_path / "gunicorn.log", "e2e-limits-pass")
    server.env.update(MAX_HEADER_BYTES="2048", MAX_HEADER_FIELDS="20")
    with server:
        info = f"{server.base}/api/info"
        assert requests.get(info, headers={"X-Note": "a" * 1500}, timeout=10).status_code == 200
        too_big = requests.get(info, headers={"X-Note": "a" * 3000}, timeout=10)
        assert too_big.status_code == 431  # Request Header Fields Too Large
        too_many = requests.get(info, headers={f"X-N{i}": "1" for i in range(25)}, timeout=10)
        assert too_many.status_code == 431
        # the request line: the default 8190 bytes, gunicorn's ceiling
        assert requests.get(info + "?q=" + "a" * 7000, timeout=10).status_code == 200
        assert raw_request(server.base, f"GET /api/info?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            "HTTP/1.1 414"
        )
        # and the server is fine afterwards
        assert requests.get(info, timeout=10).status_code == 200


def test_list_fields_of_a_department_are_capped(app, client, auth):
    """Issue 14 item 10: 100 closing tags, 500 departments to forward to; more is a 400, on create and update."""
    tags, forward = ["t"] * 100, [f"{i:024x}" for i in range(500)]
    department = create_department(client, auth.admin, chatClosingTags=tags, departmentsAllowedToForward=forward)
    assert len(department["chatClosingTags"]) == 100 and len(department["departmentsAllowedToForward"]) == 500
    for field, value in (("chatClosingTags", tags + ["t"]), ("departmentsAllowedToForward", forward + ["x"])):
        body = {"department": {"name": "n", "email": "a@b", "enabled": True, "showOnRegistration": True, field: value}}
        response = client.post(f"{API}/livechat/department", json=body, headers=auth.admin)
        assert response.status_code == 400
        limit = len(value) - 1
        assert response.json == {"success": False, "error": f"Match error: Expected at most {limit} items in field {field}"}
        response = client.put(f"{API}/livechat/department/{department['_id']}", json={"department": {field: value}}, headers=auth.admin)
        assert response.status_code == 400
        assert response.json["error"] == f"Match error: Expected at most {limit} items in field {field}"
    body = client.get(f"{API}/livechat/department/{department['_id']}", headers=auth.admin).json["department"]
    assert len(body["chatClosingTags"]) == 100  # nothing changed
