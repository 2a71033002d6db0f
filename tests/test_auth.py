"""Login, logout, me and the 401 body (docs/compatibility.md §3.2, §4.1–§4.3)."""

import base64
import hashlib

import sqlalchemy as sa
from conftest import ADMIN_PASSWORD

UNAUTHORIZED = {
    "success": False,
    "error": "You must be logged in to do this.",
    "status": "error",
    "message": "You must be logged in to do this.",
}


def test_login_with_username_returns_token_and_me(client):
    response = client.post("/api/v1/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert body["status"] == "success" and body["success"] is True
    assert body["data"]["me"]["username"] == "admin"
    assert body["data"]["me"]["roles"] == ["admin"]
    assert body["data"]["userId"] == body["data"]["me"]["_id"]
    assert len(body["data"]["authToken"]) == 43
    assert "password" not in str(body["data"]["me"]).lower()


def test_login_accepts_username_email_and_form_bodies(client):
    for body in ({"username": "admin"}, {"email": "admin@example.com"}, {"user": "admin@example.com"}):
        response = client.post("/api/v1/login", json={**body, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, body
    response = client.post("/api/v1/login", data={"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200


def test_login_with_resume_token(client, auth):
    headers = auth.admin
    response = client.post("/api/v1/login", json={"resume": headers["X-Auth-Token"]})
    assert response.status_code == 200
    assert response.json["data"]["userId"] == headers["X-User-Id"]


def test_login_failures_do_not_tell_whether_the_user_exists(client):
    wrong_password = client.post("/api/v1/login", json={"user": "admin", "password": "nope"})
    unknown_user = client.post("/api/v1/login", json={"user": "ghost", "password": "nope"})
    bad_resume = client.post("/api/v1/login", json={"resume": "not-a-token"})
    for response in (wrong_password, unknown_user, bad_resume):
        assert response.status_code == 401
        assert response.json == {"success": False, "error": "Unauthorized", "status": "error", "message": "Unauthorized"}


def test_protected_route_without_or_with_bad_credentials_is_401(client, auth):
    assert client.get("/api/v1/me").json == UNAUTHORIZED
    assert client.get("/api/v1/me").status_code == 401
    bad = {"X-User-Id": auth.admin["X-User-Id"], "X-Auth-Token": "wrong"}
    response = client.get("/api/v1/me", headers=bad)
    assert response.status_code == 401 and response.json == UNAUTHORIZED
    # a valid token presented with someone else's user id
    other = {"X-User-Id": "someone-else", "X-Auth-Token": auth.admin["X-Auth-Token"]}
    assert client.get("/api/v1/me", headers=other).status_code == 401


def test_me_returns_the_caller(client, auth):
    response = client.get("/api/v1/me", headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True
    assert response.json["username"] == "admin"
    assert response.json["_id"] == auth.admin["X-User-Id"]


def test_logout_revokes_the_token(client, auth):
    headers = auth.admin
    response = client.post("/api/v1/logout", headers=headers)
    assert response.status_code == 200
    assert response.json == {"status": "success", "data": {"message": "You've been logged out!"}, "success": True}
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_logout_by_get_revokes_the_token(client, auth):
    """Rocket.Chat accepts GET logout; PostgreSQL runs GETs read-only, so this one is marked (db.writes)."""
    headers = auth.admin
    response = client.get("/api/v1/logout", headers=headers)
    assert response.status_code == 200
    assert response.json == {"status": "success", "data": {"message": "You've been logged out!"}, "success": True}
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_tokens_are_stored_only_as_base64_sha256(app, auth):
    token = auth.admin["X-Auth-Token"]
    expected = base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()
    with app.extensions["db.engine"].connect() as conn:
        stored = conn.execute(sa.text("SELECT hashed_token FROM login_tokens")).scalars().all()
        hashes = conn.execute(sa.text("SELECT password_hash FROM users")).scalars().all()
    assert expected in stored and token not in stored
    assert all(h.startswith("$argon2id$") for h in hashes)
