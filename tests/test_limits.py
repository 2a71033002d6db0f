"""Size limits, each with a clear error and a documented setting (README "Limits")."""

from __future__ import annotations

import json
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


def raw_request(base: str, head: str) -> tuple[str, dict[str, str], bytes]:
    """Send a hand-made request head; return the status line, the headers and the body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = sock.makefile("rb")
        status = reply.readline().decode().strip()
        headers = {}
        while (line := reply.readline().decode().strip()):
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        return status, headers, reply.read(int(headers.get("content-length", 0)))


def assert_json_refusal(status: int, reason: str, response: tuple[str, dict[str, str], bytes]) -> None:
    """gunicorn's own refusal, answered like the app's (security.json_error_page)."""
    status_line, headers, body = response
    assert status_line == f"HTTP/1.1 {status} {reason}"
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    assert json.loads(body) == {"success": False, "error": reason}


@pytest.mark.e2e
def test_gunicorn_refuses_oversized_request_heads_in_json(empty_database_url, tmp_path):
    server = Server(server_url(empty_database_url), tmp_path / "gunicorn.log", "e2e-limits-pass")
    server.env.update(MAX_HEADER_BYTES="2048", MAX_HEADER_FIELDS="20")
    with server:
        info = f"{server.base}/api/info"
        assert requests.get(info, headers={"X-Note": "a" * 1500}, timeout=10).status_code == 200
        too_big = requests.get(info, headers={"X-Note": "a" * 3000}, timeout=10)
        assert too_big.status_code == 431  # Request Header Fields Too Large
        assert too_big.json() == {"success": False, "error": "Request Header Fields Too Large"}
        too_many = requests.get(info, headers={f"X-N{i}": "1" for i in range(25)}, timeout=10)
        assert too_many.status_code == 431 and too_many.headers["Content-Type"] == "application/json"
        # the request line: the default 8190 bytes, gunicorn's ceiling
        assert requests.get(info + "?q=" + "a" * 7000, timeout=10).status_code == 200
        long_line = raw_request(server.base, f"GET /api/info?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_json_refusal(414, "URI Too Long", long_line)
        assert_json_refusal(400, "Bad Request", raw_request(server.base, "GET /api/info HTTP/9.9\r\nHost: x\r\n\r\n"))
        # and the server is fine afterwards, with nothing logged as an error
        assert requests.get(info, timeout=10).status_code == 200
    assert "Traceback" not in server.output()
