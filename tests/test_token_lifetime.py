"""How long a login token works: LOGIN_TOKEN_TTL_DAYS (90 days, like Rocket.Chat's
Accounts_LoginExpiration), and revocation on logout, password change, deletion and deactivation.

The caller of a token is cached per data version (access.py, cache.py). Each test warms that cache
first, so a revocation has to reach the cached answer: a committed write empties the cache, and
expiry, which is no write, is compared with the clock on every request.
"""

from __future__ import annotations

import sqlalchemy as sa
from conftest import ADMIN_PASSWORD, UNAUTHORIZED_BODY
from sqlalchemy import select

import models

ME = "/api/v1/me"
LOGIN = "/api/v1/login"




def login(client, user: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    response = client.post(LOGIN, json={"user": user, "password": password})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    return {"X-User-Id": data["userId"], "X-Auth-Token": data["authToken"]}


def warm(client, headers: dict[str, str]) -> None:
    """Two reads: the second is answered from the cached caller."""
    for _ in range(2):
        assert client.get(ME, headers=headers).status_code == 200


def token_count(app) -> int:
    with app.extensions["db.engine"].connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM login_tokens")).scalar_one()


def test_a_token_works_for_90_days_then_gets_401_even_from_the_cache(make_app, clock):
    client = make_app().test_client()
    headers = login(client)
    warm(client, headers)
    clock.advance(days=90, seconds=-1)
    assert client.get(ME, headers=headers).status_code == 200
    clock.advance(seconds=1)
    expired = client.get(ME, headers=headers)
    assert expired.status_code == 401 and expired.json == UNAUTHORIZED_BODY


def test_an_expired_token_cannot_resume(make_app, clock):
    client = make_app().test_client()
    headers = login(client)
    clock.advance(days=89)
    fresh = client.post(LOGIN, json={"resume": headers["X-Auth-Token"]})
    assert fresh.status_code == 200  # resuming gives a new token with a new 90 days
    clock.advance(days=2)
    old = client.post(LOGIN, json={"resume": headers["X-Auth-Token"]})
    assert old.status_code == 401
    assert old.json == {"success": False, "error": "Unauthorized", "status": "error", "message": "Unauthorized"}
    resumed = {"X-User-Id": headers["X-User-Id"], "X-Auth-Token": fresh.json["data"]["authToken"]}
    assert client.get(ME, headers=resumed).status_code == 200


def test_the_lifetime_is_a_setting(make_app, clock):
    client = make_app(LOGIN_TOKEN_TTL_DAYS=1).test_client()
    headers = login(client)
    warm(client, headers)
    clock.advance(hours=23)
    assert client.get(ME, headers=headers).status_code == 200
    clock.advance(hours=1)
    assert client.get(ME, headers=headers).status_code == 401


def test_zero_days_means_tokens_do_not_expire(make_app, clock):
    client = make_app(LOGIN_TOKEN_TTL_DAYS=0).test_client()
    headers = login(client)
    clock.advance(days=3650)
    assert client.get(ME, headers=headers).status_code == 200


def test_expired_tokens_are_deleted_at_the_users_next_login(make_app, clock):
    app = make_app()
    client = app.test_client()
    for _ in range(3):
        login(client)
    assert token_count(app) == 3
    clock.advance(days=91)
    login(client)
    assert token_count(app) == 1


def test_logout_revokes_only_that_token(make_app, clock):
    client = make_app().test_client()
    doomed, kept = login(client), login(client)
    warm(client, doomed)
    warm(client, kept)
    assert client.post("/api/v1/logout", headers=doomed).status_code == 200
    assert client.get(ME, headers=doomed).status_code == 401
    assert client.get(ME, headers=kept).status_code == 200


def test_a_password_change_revokes_every_token_of_the_user(make_app, clock):
    app = make_app()
    client = app.test_client()
    admin = login(client)
    bob = {"username": "bob", "email": "bob@example.com", "name": "Bob", "password": "old-password"}
    assert client.post("/api/v1/users.create", json=bob, headers=admin).status_code == 200
    bob_sessions = [login(client, "bob", "old-password") for _ in range(2)]
    for headers in bob_sessions:
        warm(client, headers)

    result = app.test_cli_runner().invoke(args=["set-password", "bob", "--password-stdin"], input="new-password\n")
    assert result.exit_code == 0, result.output
    assert "2 login token(s) revoked" in result.output
    for headers in bob_sessions:
        assert client.get(ME, headers=headers).status_code == 401
    assert client.post(LOGIN, json={"resume": bob_sessions[0]["X-Auth-Token"]}).status_code == 401
    assert client.get(ME, headers=admin).status_code == 200  # other users keep theirs
    login(client, "bob", "new-password")


def test_deleting_a_user_deletes_their_tokens(make_app, clock):
    app = make_app()
    client = app.test_client()
    admin = login(client)
    created = client.post(
        "/api/v1/users.create",
        json={"username": "carol", "email": "carol@example.com", "name": "Carol", "password": "pw-carol"},
        headers=admin,
    ).json["user"]
    carol = login(client, "carol", "pw-carol")
    warm(client, carol)
    assert client.post("/api/v1/users.delete", json={"userId": created["_id"]}, headers=admin).status_code == 200
    assert client.get(ME, headers=carol).status_code == 401
    assert client.post(LOGIN, json={"resume": carol["X-Auth-Token"]}).status_code == 401
    with app.extensions["db.engine"].connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM login_tokens WHERE user_id = :u"), {"u": created["_id"]})
        assert left.scalar_one() == 0


def test_a_deactivated_user_is_locked_out_at_once(make_app, clock):
    """No endpoint deactivates a user yet (an import can); whatever does it commits a write,
    and the active flag is part of the token check, so cached callers are dropped too."""
    app = make_app()
    client = app.test_client()
    admin = login(client)
    body = {"username": "dave", "email": "dave@example.com", "name": "Dave", "password": "pw-dave"}
    user_id = client.post("/api/v1/users.create", json=body, headers=admin).json["user"]["_id"]
    dave = login(client, "dave", "pw-dave")
    warm(client, dave)

    with app.extensions["db.sessionmaker"]() as session:  # the sessions every write path uses
        session.scalars(select(models.User).where(models.User.id == user_id)).one().active = False
        session.commit()

    assert client.get(ME, headers=dave).status_code == 401
    assert client.post(LOGIN, json={"resume": dave["X-Auth-Token"]}).status_code == 401
    assert client.post(LOGIN, json={"user": "dave", "password": "pw-dave"}).status_code == 401
    assert client.get(ME, headers=admin).status_code == 200
