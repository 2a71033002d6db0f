"""Security headers on every response, CORS (off unless CORS_ORIGINS lists origins) and
`X-Forwarded-*` (ignored unless TRUSTED_PROXY_HOPS > 0), security.py."""

from __future__ import annotations

import pytest
from conftest import API
from flask import request

import access

HARDENING = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Pragma": "no-cache"}
ORIGIN = "https://app.example.com"


def assert_hardened(response) -> None:
    for name, value in HARDENING.items():
        assert response.headers.get(name) == value, (name, response.status_code, dict(response.headers))


def test_every_kind_of_response_carries_the_security_headers(make_app, auth):
    app = make_app(MAX_CONTENT_LENGTH=64)
    client = app.test_client()
    auth.client = client
    headers = auth.admin
    responses = [
        client.get("/api/info"),  # public 200
        client.get(f"{API}/me", headers=headers),  # authenticated 200
        client.post(f"{API}/login", json={"user": "admin", "password": "wrong"}),  # 401 login
        client.get(f"{API}/me"),  # 401
        client.get(f"{API}/nope"),  # 404
        client.delete(f"{API}/me", headers=headers),  # 405
        client.post(f"{API}/users.create", data="x" * 100, content_type="application/json", headers=headers),  # 413
        client.post(f"{API}/users.create", json={}, headers=headers),  # 400
        client.options(f"{API}/me"),  # OPTIONS without CORS
    ]
    assert [r.status_code for r in responses] == [200, 200, 401, 401, 404, 405, 413, 400, 200]
    for response in responses:
        assert_hardened(response)


def test_a_500_carries_them_too(make_app):
    app = make_app()

    @app.get("/api/v1/_boom")
    @access.public
    def boom():  # pragma: no cover - raises
        raise RuntimeError("boom")

    response = app.test_client().get("/api/v1/_boom")
    assert response.status_code == 500
    assert_hardened(response)


def test_cors_is_off_by_default(make_app, auth):
    client = make_app().test_client()
    auth.client = client
    simple = client.get(f"{API}/me", headers={**auth.admin, "Origin": ORIGIN})
    assert simple.status_code == 200
    assert "Access-Control-Allow-Origin" not in simple.headers
    preflight = client.options(
        f"{API}/me", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert not any(name.startswith("Access-Control-") for name in preflight.headers.keys())


def test_an_allowed_origin_gets_cors_headers_and_preflights(make_app, auth):
    client = make_app(CORS_ORIGINS=f"{ORIGIN}, https://other.example.com").test_client()
    auth.client = client
    response = client.get(f"{API}/me", headers={**auth.admin, "Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # echoed, never "*"
    assert "Origin" in response.headers["Vary"]
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After, ETag, Idempotent-Replayed"
    assert "Access-Control-Allow-Credentials" not in response.headers  # credentials are headers, not cookies

    preflight = client.options(
        f"{API}/livechat/department",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-user-id, x-auth-token",
        },
    )
    assert preflight.status_code == 204 and preflight.get_data() == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")} >= {"GET", "POST", "PUT", "DELETE"}
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"content-type", "x-user-id", "x-auth-token", "if-match", "if-none-match", "idempotency-key"}
    assert preflight.headers["Access-Control-Max-Age"] == "600"
    assert_hardened(preflight)

    # errors from an allowed origin can be read by the page too
    unauthorized = client.get(f"{API}/me", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_an_origin_not_listed_gets_no_cors_headers(make_app, auth):
    client = make_app(CORS_ORIGINS=ORIGIN).test_client()
    auth.client = client
    for origin in ("https://evil.example.com", "https://app.example.com.evil.example", "null", "http://app.example.com"):
        response = client.get(f"{API}/me", headers={**auth.admin, "Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers, origin
        preflight = client.options(f"{API}/me", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
        assert "Access-Control-Allow-Origin" not in preflight.headers, origin
        assert preflight.status_code != 204


@pytest.mark.parametrize("origins", ["*", f"{ORIGIN} *", "null"])
def test_a_wildcard_origin_is_refused_at_start(make_app, origins):
    with pytest.raises(ValueError, match="exact origins"):
        make_app(CORS_ORIGINS=origins)


def _whoami_app(make_app, **config):
    app = make_app(**config)

    @app.get("/api/v1/_whoami")
    @access.public
    def whoami():
        return {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host, "root": request.root_path}

    return app.test_client()


FORWARDED = {
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "chat.example.com",
    "X-Forwarded-Prefix": "/departments",
}


def test_forwarded_headers_are_ignored_by_default(make_app):
    client = _whoami_app(make_app)
    seen = client.get("/api/v1/_whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "192.0.2.1"}).json
    assert seen == {"addr": "192.0.2.1", "scheme": "http", "host": "localhost", "root": ""}


def test_forwarded_headers_are_trusted_for_the_configured_hops(make_app):
    client = _whoami_app(make_app, TRUSTED_PROXY_HOPS=1)
    seen = client.get("/api/v1/_whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "192.0.2.1"}).json
    assert seen == {"addr": "198.51.100.7", "scheme": "https", "host": "chat.example.com", "root": "/departments"}
    # one hop trusted: of a client-supplied chain, only the entry our proxy added counts
    chained = client.get(
        "/api/v1/_whoami", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.7"}, environ_base={"REMOTE_ADDR": "192.0.2.1"}
    ).json
    assert chained["addr"] == "198.51.100.7"
