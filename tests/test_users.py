"""users.create/info/list/delete and livechat/users/:type (docs/compatibility.md §4.4–§4.5, §5 #65–#68)."""

import re

import sqlalchemy as sa
from conftest import API, FORBIDDEN_BODY, UNAUTHORIZED_BODY, create_department, set_permission, set_setting

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
METEOR_ID = re.compile(r"^[23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}$")


def new_user_body(username, **extra):
    return {"email": f"{username}@example.com", "name": username.title(), "username": username, "password": "pw-1", **extra}


def count_rows(app, sql, **params):
    with app.extensions["db.engine"].connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


# --- users.create ---------------------------------------------------------------------------


def test_create_user_returns_the_new_user_without_secrets(client, auth):
    response = client.post(f"{API}/users.create", json=new_user_body("bob"), headers=auth.admin)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert body["success"] is True
    user = body["user"]
    assert METEOR_ID.match(user["_id"])
    assert user["username"] == "bob" and user["name"] == "Bob"
    assert user["emails"] == [{"address": "bob@example.com", "verified": False}]
    assert user["roles"] == ["user"]
    assert user["active"] is True and user["type"] == "user"
    assert DATE.match(user["createdAt"]) and DATE.match(user["_updatedAt"])
    assert not {"password", "services", "password_hash"} & set(user)
    # the password works
    assert auth.login("bob", "pw-1")["X-User-Id"] == user["_id"]


def test_create_user_with_roles_and_verified_email(client, auth):
    body = new_user_body("mgr", roles=["livechat-manager", "user"], verified=True)
    user = client.post(f"{API}/users.create", json=body, headers=auth.admin).json["user"]
    assert user["roles"] == ["livechat-manager", "user"]
    assert user["emails"][0]["verified"] is True


def test_create_user_with_an_unknown_role_is_refused(client, auth):
    response = client.post(f"{API}/users.create", json=new_user_body("x", roles=["wizard"]), headers=auth.admin)
    assert response.status_code == 400
    assert response.json["errorType"] == "error-invalid-role"
    assert client.get(f"{API}/users.info?username=x", headers=auth.admin).status_code == 400


def test_duplicate_username_is_a_meteor_error(client, auth):
    auth.create_user("bob")
    response = client.post(
        f"{API}/users.create", json={**new_user_body("bob"), "email": "other@example.com"}, headers=auth.admin
    )
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "bob is already in use :( [error-field-unavailable]",
        "errorType": "error-field-unavailable",
        "details": {"method": "insertOrUpdateUser"},
    }


def test_a_username_differing_only_by_case_is_taken(client, auth):
    auth.create_user("admin2")
    response = client.post(f"{API}/users.create", json=new_user_body("ADMIN2"), headers=auth.admin)
    assert response.status_code == 400
    assert response.json["error"] == "ADMIN2 is already in use :( [error-field-unavailable]"
    response = client.post(f"{API}/users.create", json={**new_user_body("Admin"), "email": "x@example.com"}, headers=auth.admin)
    assert response.json["error"] == "Admin is already in use :( [error-field-unavailable]"


def test_duplicate_email_is_a_meteor_error_whatever_its_case(client, auth):
    auth.create_user("bob")
    response = client.post(
        f"{API}/users.create", json={**new_user_body("robert"), "email": "BOB@Example.com"}, headers=auth.admin
    )
    assert response.status_code == 400
    assert response.json["error"] == "bob@example.com is already in use :( [error-field-unavailable]"
    assert response.json["errorType"] == "error-field-unavailable"


def test_create_user_with_an_invalid_email_is_refused(client, auth):
    for email in ("notanemail", "a@b", "a@b.c", "@example.com", "a@@example.com", "a@example.c0m"):
        response = client.post(f"{API}/users.create", json={**new_user_body("eve"), "email": email}, headers=auth.admin)
        assert response.status_code == 400, email
        assert response.json == {
            "success": False,
            "error": f"Invalid email {email} [error-invalid-email]",
            "errorType": "error-invalid-email",
            "details": {"function": "RocketChat.validateEmailDomain", "email": email},
        }
    assert client.get(f"{API}/users.info?username=eve", headers=auth.admin).status_code == 400
    for email in ("eve@example.com", "e.v+e@mail.example.org", " eve2@example.io "):
        name = email.strip().split("@")[0].replace("+", "")
        response = client.post(f"{API}/users.create", json={**new_user_body(name), "email": email}, headers=auth.admin)
        assert response.status_code == 200, (email, response.json)


def test_create_user_validates_like_ajv(client, auth):
    cases = [
        ({}, "must have required property 'email'"),
        ({"email": "a@b.c"}, "must have required property 'name'"),
        ({"email": "a@b.c", "name": "A"}, "must have required property 'password'"),
        ({"email": "a@b.c", "name": "A", "password": "p"}, "must have required property 'username'"),
        ({**new_user_body("a"), "unknown": 1}, "must NOT have additional properties"),
        ({**new_user_body("a"), "roles": "admin"}, "must be array"),
        ({**new_user_body("a"), "active": "yes"}, "must be boolean"),
        ({**new_user_body("a"), "name": None}, "must be string"),
        ([], "must be object"),
    ]
    for body, message in cases:
        response = client.post(f"{API}/users.create", json=body, headers=auth.admin)
        assert response.status_code == 400, body
        assert response.json == {"success": False, "error": f"{message} [invalid-params]", "errorType": "invalid-params"}
    # nothing was created by any of them
    assert client.get(f"{API}/users.list", headers=auth.admin).json["total"] == 1


def test_create_user_coerces_like_ajv(client, auth):
    """ajv's coerceTypes: a numeric username becomes a string, "false" a boolean."""
    body = {**new_user_body("x"), "username": 12345, "active": "false"}
    response = client.post(f"{API}/users.create", json=body, headers=auth.admin)
    assert response.status_code == 200, response.json
    assert response.json["user"]["username"] == "12345"
    assert response.json["user"]["active"] is False


def test_create_user_needs_create_user_permission_as_a_400(client, auth):
    headers = auth.user_headers("plain")
    response = client.post(f"{API}/users.create", json=new_user_body("bob"), headers=headers)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "Adding user is not allowed [error-action-not-allowed]",
        "errorType": "error-action-not-allowed",
        "details": {"method": "insertOrUpdateUser"},
    }
    # granting the permission to the `user` role is enough
    set_permission(client, auth.admin, "create-user", ["admin", "user"])
    assert client.post(f"{API}/users.create", json=new_user_body("bob"), headers=headers).status_code == 200


def test_create_user_needs_login(client):
    response = client.post(f"{API}/users.create", json=new_user_body("bob"))
    assert response.status_code == 401 and response.json == UNAUTHORIZED_BODY


# --- users.info / users.list ---------------------------------------------------------------


def test_user_info_by_id_or_username(client, auth):
    bob = auth.create_user("bob")
    headers = auth.user_headers("plain")  # any logged-in user may look users up
    by_id = client.get(f"{API}/users.info", query_string={"userId": bob["_id"]}, headers=headers)
    by_name = client.get(f"{API}/users.info", query_string={"username": "bob"}, headers=headers)
    for response in (by_id, by_name):
        assert response.status_code == 200
        assert response.json["success"] is True
        assert response.json["user"]["_id"] == bob["_id"]
        assert response.json["user"]["username"] == "bob"
        assert "password" not in str(response.json).lower()


def test_user_info_shows_emails_and_roles_only_to_oneself_or_with_full_info(client, auth):
    """Issue 14 item 6: Rocket.Chat's getFullUserData default fields for other users."""
    bob = auth.create_user("bob", roles=["livechat-agent", "user"])
    plain = auth.user_headers("plain")
    other = client.get(f"{API}/users.info", query_string={"username": "bob"}, headers=plain).json["user"]
    assert other == {"_id": bob["_id"], "username": "bob", "name": "bob", "status": "offline",
                     "active": True, "type": "user"}
    own = client.get(f"{API}/users.info", query_string={"username": "plain"}, headers=plain).json["user"]
    assert own["emails"] == [{"address": "plain@example.com", "verified": False}] and own["roles"] == ["user"]
    full = client.get(f"{API}/users.info", query_string={"userId": bob["_id"]}, headers=auth.admin).json["user"]
    assert full["emails"][0]["address"] == "bob@example.com" and full["roles"] == ["livechat-agent", "user"]
    # the permission decides, not the admin role
    set_permission(client, auth.admin, "view-full-other-user-info", ["user"])
    assert "emails" in client.get(f"{API}/users.info", query_string={"username": "bob"}, headers=plain).json["user"]
    set_permission(client, auth.admin, "view-full-other-user-info", [])
    shown = client.get(f"{API}/users.info", query_string={"username": "bob"}, headers=auth.admin).json["user"]
    assert "emails" not in shown and "roles" not in shown


def test_user_info_of_unknown_user_is_400(client, auth):
    for query in ({"userId": "nope"}, {"username": "nope"}, {}):
        response = client.get(f"{API}/users.info", query_string=query, headers=auth.admin)
        assert response.status_code == 400
        assert response.json == {"success": False, "error": "Invalid user [error-invalid-user]", "errorType": "error-invalid-user"}


def test_users_list_paginates(client, auth):
    for name in ("carol", "bob", "dave"):
        auth.create_user(name)
    response = client.get(f"{API}/users.list", headers=auth.admin)
    assert response.status_code == 200
    body = response.json
    assert [u["username"] for u in body["users"]] == ["admin", "bob", "carol", "dave"]
    assert (body["count"], body["offset"], body["total"], body["success"]) == (4, 0, 4, True)

    page = client.get(f"{API}/users.list?count=2&offset=1", headers=auth.admin).json
    assert [u["username"] for u in page["users"]] == ["bob", "carol"]
    assert (page["count"], page["offset"], page["total"]) == (2, 1, 4)

    past_end = client.get(f"{API}/users.list?count=2&offset=10", headers=auth.admin).json
    assert (past_end["users"], past_end["count"], past_end["offset"], past_end["total"]) == ([], 0, 10, 4)


def test_users_list_page_size_follows_the_settings(client, auth):
    for name in ("bob", "carol", "dave"):
        auth.create_user(name)
    set_setting(client, auth.admin, "API_Default_Count", 2)
    assert client.get(f"{API}/users.list", headers=auth.admin).json["count"] == 2
    set_setting(client, auth.admin, "API_Upper_Count_Limit", 3)
    assert client.get(f"{API}/users.list?count=50", headers=auth.admin).json["count"] == 3
    # count=0 means "all" while API_Allow_Infinite_Count is on, else the default
    assert client.get(f"{API}/users.list?count=0", headers=auth.admin).json["count"] == 4
    set_setting(client, auth.admin, "API_Allow_Infinite_Count", False)
    assert client.get(f"{API}/users.list?count=0", headers=auth.admin).json["count"] == 2


def test_absurd_offsets_and_counts_are_an_empty_page_or_a_400(client, auth):
    # Rocket.Chat parseInts whatever ajv let through; the database must never see an overflow.
    for path in ("users.list", "livechat/users/agent"):
        for query in ({"offset": "99999999999999999999"}, {"offset": "1e999"}, {"count": "99999999999999999999"}, {"count": "1e999"}):
            response = client.get(f"{API}/{path}", query_string=query, headers=auth.admin)
            assert response.status_code in (200, 400), (path, query, response.json)
            if response.status_code == 400:
                assert response.json["errorType"] == "invalid-params", response.json
            elif "offset" in query:
                assert response.json["count"] == 0
            else:
                assert response.json["count"] == response.json["total"]


def test_users_list_rejects_bad_pagination_and_needs_permission(client, auth):
    response = client.get(f"{API}/users.list?count=abc", headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "must be number [invalid-params]", "errorType": "invalid-params"}
    headers = auth.user_headers("plain")
    response = client.get(f"{API}/users.list", headers=headers)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY


# --- users.delete ---------------------------------------------------------------------------


def test_delete_user_removes_tokens_roles_and_department_links(app, client, auth):
    bob = auth.create_user("bob")
    carol = auth.create_user("carol")
    bob_headers = auth.login("bob", "pass-word-1")
    for name in ("bob", "carol"):
        assert client.post(f"{API}/livechat/users/agent", json={"username": name}, headers=auth.admin).status_code == 200
    both = create_department(client, auth.admin, agents=[{"agentId": bob["_id"]}, {"agentId": carol["_id"]}], name="Both")
    only_bob = create_department(client, auth.admin, agents=[{"agentId": bob["_id"]}], name="Bob only")
    assert count_rows(app, "SELECT count(*) FROM login_tokens WHERE user_id = :u", u=bob["_id"]) == 1

    response = client.post(f"{API}/users.delete", json={"userId": bob["_id"]}, headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"success": True}

    assert client.get(f"{API}/me", headers=bob_headers).status_code == 401
    for table, column in (("login_tokens", "user_id"), ("user_roles", "user_id"), ("department_agents", "agent_id")):
        assert count_rows(app, f"SELECT count(*) FROM {table} WHERE {column} = :u", u=bob["_id"]) == 0, table
    assert client.get(f"{API}/users.info?userId={bob['_id']}", headers=auth.admin).status_code == 400
    # numAgents follows; carol's link survives
    dep_both = client.get(f"{API}/livechat/department/{both['_id']}", headers=auth.admin).json
    assert dep_both["department"]["numAgents"] == 1
    assert [a["agentId"] for a in dep_both["agents"]] == [carol["_id"]]
    dep_bob = client.get(f"{API}/livechat/department/{only_bob['_id']}", headers=auth.admin).json
    assert dep_bob["department"]["numAgents"] == 0 and dep_bob["agents"] == []


def test_delete_user_by_username(client, auth):
    auth.create_user("bob")
    assert client.post(f"{API}/users.delete", json={"username": "bob"}, headers=auth.admin).json == {"success": True}
    assert client.get(f"{API}/users.info?username=bob", headers=auth.admin).status_code == 400


def test_delete_user_failures(client, auth):
    response = client.post(f"{API}/users.delete", json={"userId": "nope"}, headers=auth.admin)
    assert response.status_code == 400 and response.json["errorType"] == "error-invalid-user"
    response = client.post(f"{API}/users.delete", json={"userId": auth.admin["X-User-Id"]}, headers=auth.admin)
    assert response.status_code == 400 and response.json["errorType"] == "error-action-not-allowed"
    response = client.post(f"{API}/users.delete", json={"userId": 1, "extra": True}, headers=auth.admin)
    assert response.status_code == 400 and response.json["errorType"] == "invalid-params"
    bob = auth.create_user("bob")
    headers = auth.user_headers("plain")
    response = client.post(f"{API}/users.delete", json={"userId": bob["_id"]}, headers=headers)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    assert client.get(f"{API}/users.info?username=bob", headers=auth.admin).status_code == 200


# --- livechat/users/:type -----------------------------------------------------------------


def make_agent(client, headers, username):
    response = client.post(f"{API}/livechat/users/agent", json={"username": username}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["user"]


def test_add_agent_and_manager(client, auth):
    bob = auth.create_user("bob")
    response = client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"user": {"_id": bob["_id"], "username": "bob"}, "success": True}
    response = client.post(f"{API}/livechat/users/manager", json={"username": "bob"}, headers=auth.admin)
    assert response.json == {"user": {"_id": bob["_id"], "username": "bob"}, "success": True}
    info = client.get(f"{API}/users.info?username=bob", headers=auth.admin).json["user"]
    assert info["roles"] == ["livechat-agent", "livechat-manager", "user"]
    # an offline user becomes a not-available agent; the (online) admin an available one
    assert info["statusLivechat"] == "not-available"
    make_agent(client, auth.admin, "admin")
    assert client.get(f"{API}/me", headers=auth.admin).json["statusLivechat"] == "available"


def test_add_agent_is_idempotent(client, auth):
    auth.create_user("bob")
    first = client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=auth.admin)
    second = client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=auth.admin)
    assert first.status_code == second.status_code == 200
    assert first.json == second.json
    assert client.get(f"{API}/users.info?username=bob", headers=auth.admin).json["user"]["roles"] == ["livechat-agent", "user"]
    assert client.get(f"{API}/livechat/users/agent", headers=auth.admin).json["total"] == 1


def test_add_unknown_user_or_type_or_bad_body(client, auth):
    response = client.post(f"{API}/livechat/users/agent", json={"username": "mr-not-valid"}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "error-invalid-user"}
    auth.create_user("bob")
    response = client.post(f"{API}/livechat/users/invalid-type", json={"username": "bob"}, headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False, "error": "Invalid type"}
    response = client.post(f"{API}/livechat/users/agent", json={}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must have required property 'username' [invalid-params]",
        "errorType": "invalid-params",
    }
    response = client.post(f"{API}/livechat/users/agent", json={"username": "bob", "x": 1}, headers=auth.admin)
    assert response.json["error"] == "must NOT have additional properties [invalid-params]"


def test_add_agent_needs_view_livechat_manager(client, auth):
    auth.create_user("bob")
    headers = auth.user_headers("agent1", roles=["livechat-agent"])
    response = client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=headers)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    # a manager may
    manager = auth.user_headers("boss", roles=["livechat-manager"])
    assert client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=manager).status_code == 200


def test_a_monitor_cannot_make_itself_a_manager_nor_remove_managers(client, auth):
    """Issue 14 item 5: monitors hold view-livechat-manager but not manage-livechat-managers."""
    boss = auth.create_user("boss", roles=["livechat-manager"])
    monitor = auth.user_headers("watcher", roles=["livechat-monitor"])
    response = client.post(f"{API}/livechat/users/manager", json={"username": "watcher"}, headers=monitor)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    response = client.delete(f"{API}/livechat/users/manager/{boss['_id']}", headers=monitor)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    roles = {u["username"]: u["roles"] for u in client.get(f"{API}/users.list", headers=auth.admin).json["users"]}
    assert roles["watcher"] == ["livechat-monitor"] and roles["boss"] == ["livechat-manager"]
    # agents are the monitors' to manage (manage-livechat-agents), until that permission is taken away
    auth.create_user("bob")
    assert client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=monitor).status_code == 200
    set_permission(client, auth.admin, "manage-livechat-agents", ["livechat-manager", "admin"])
    response = client.post(f"{API}/livechat/users/agent", json={"username": "bob"}, headers=monitor)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    bob = client.get(f"{API}/users.info?username=bob", headers=auth.admin).json["user"]
    assert client.delete(f"{API}/livechat/users/agent/{bob['_id']}", headers=monitor).status_code == 403
    # managers and admins keep what they could do
    manager = auth.login("boss", "pass-word-1")
    assert client.post(f"{API}/livechat/users/manager", json={"username": "bob"}, headers=manager).status_code == 200
    assert client.delete(f"{API}/livechat/users/agent/{bob['_id']}", headers=manager).status_code == 200
    assert client.delete(f"{API}/livechat/users/manager/{bob['_id']}", headers=auth.admin).status_code == 200


def test_list_agents_paginated_and_filtered(client, auth):
    for username, name in (("bob", "Bob Builder"), ("carol", "Carol Singer"), ("dave", "Dave Diver")):
        client.post(f"{API}/users.create", json={**new_user_body(username), "name": name}, headers=auth.admin)
        make_agent(client, auth.admin, username)
    auth.create_user("notagent")

    response = client.get(f"{API}/livechat/users/agent", headers=auth.admin)
    assert response.status_code == 200
    body = response.json
    assert [u["username"] for u in body["users"]] == ["bob", "carol", "dave"]  # sorted by name
    assert (body["count"], body["offset"], body["total"], body["success"]) == (3, 0, 3, True)
    first = body["users"][0]
    assert set(first) == {"_id", "username", "name", "status", "statusLivechat", "emails", "livechat"}
    assert first["emails"] == [{"address": "bob@example.com", "verified": False}]

    page = client.get(f"{API}/livechat/users/agent?count=1&offset=1", headers=auth.admin).json
    assert [u["username"] for u in page["users"]] == ["carol"]
    assert (page["count"], page["offset"], page["total"]) == (1, 1, 3)

    # `text`: case-insensitive substring of username, name or email
    for text, expected in (("CAROL", ["carol"]), ("singer", ["carol"]), ("DAVE@EXAMPLE", ["dave"]), ("er", ["bob", "carol", "dave"])):
        found = client.get(f"{API}/livechat/users/agent", query_string={"text": text}, headers=auth.admin).json
        assert [u["username"] for u in found["users"]] == expected, text
        assert found["total"] == len(expected)
    # taken literally: SQL wildcards match nothing here
    for text in ("%", "_", "b%b"):
        found = client.get(f"{API}/livechat/users/agent", query_string={"text": text}, headers=auth.admin).json
        assert found["total"] == 0, text

    desc = client.get(f"{API}/livechat/users/agent", query_string={"sort": '{"username": -1}'}, headers=auth.admin).json
    assert [u["username"] for u in desc["users"]] == ["dave", "carol", "bob"]
    excluded = client.get(f"{API}/livechat/users/agent", query_string={"excludeId": page["users"][0]["_id"]}, headers=auth.admin).json
    assert [u["username"] for u in excluded["users"]] == ["bob", "dave"]


def test_list_agents_text_is_case_insensitive_beyond_ascii(client, auth):
    client.post(f"{API}/users.create", json={**new_user_body("elodie"), "name": "Élodie Ünal"}, headers=auth.admin)
    make_agent(client, auth.admin, "elodie")
    for text in ("Élodie", "élodie", "ÉLODIE", "ünal", "ÜNAL"):
        found = client.get(f"{API}/livechat/users/agent", query_string={"text": text}, headers=auth.admin).json
        assert [u["username"] for u in found["users"]] == ["elodie"], text


def test_list_managers_is_separate_from_agents(client, auth):
    auth.create_user("bob")
    client.post(f"{API}/livechat/users/manager", json={"username": "bob"}, headers=auth.admin)
    managers = client.get(f"{API}/livechat/users/manager", headers=auth.admin).json
    assert [u["username"] for u in managers["users"]] == ["bob"] and managers["total"] == 1
    assert client.get(f"{API}/livechat/users/agent", headers=auth.admin).json["total"] == 0


def test_list_users_errors(client, auth):
    response = client.get(f"{API}/livechat/users/invalid-type", headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False, "error": "Invalid type"}
    response = client.get(f"{API}/livechat/users/agent?count=x", headers=auth.admin)
    assert response.status_code == 400 and response.json["errorType"] == "invalid-params"
    response = client.get(f"{API}/livechat/users/agent?sort=name", headers=auth.admin)
    assert response.status_code == 400 and response.json["errorType"] == "error-invalid-sort"
    # agents: transfer-livechat-guest or edit-omnichannel-contact; managers: view-livechat-manager
    plain = auth.user_headers("plain")
    agent = auth.user_headers("agent1", roles=["livechat-agent"])
    for headers, user_type in ((plain, "agent"), (plain, "manager"), (agent, "manager")):
        response = client.get(f"{API}/livechat/users/{user_type}", headers=headers)
        assert response.status_code == 403, (user_type, response.json)
        assert response.json == {"success": False, "error": "unauthorized"}
    assert client.get(f"{API}/livechat/users/agent", headers=agent).status_code == 200


def test_show_idle_agents_false_leaves_out_offline_agents_but_not_bots(app, client, auth):
    """Rocket.Chat's "should return only online agents when showIdleAgents is false" (issue 14 item 8)."""
    statuses = {"on": "online", "busy": "busy", "gone": "offline", "robot": "offline"}
    for username in statuses:
        auth.create_user(username)
        make_agent(client, auth.admin, username)
    with app.extensions["db.engine"].begin() as conn:
        for username, status in statuses.items():
            conn.execute(sa.text("UPDATE users SET status = :s WHERE username = :u"), {"s": status, "u": username})
        conn.execute(sa.text("INSERT INTO roles (id, description) VALUES ('bot', 'Bot')"))
        conn.execute(sa.text("INSERT INTO user_roles (user_id, role_id) SELECT id, 'bot' FROM users WHERE username = 'robot'"))
        conn.execute(sa.text("UPDATE data_version SET version = version + 1"))  # a hand edit: tell the caches

    try:
        def listed(query):
            body = client.get(f"{API}/livechat/users/agent?{query}", headers=auth.admin).json
            return sorted(user["username"] for user in body["users"]), body["total"]

        assert listed("showIdleAgents=false") == (["busy", "on", "robot"], 3)
        assert listed("showIdleAgents=true") == (["busy", "gone", "on", "robot"], 4)
        assert listed("") == (["busy", "gone", "on", "robot"], 4)
        # managers are listed whatever their status (Rocket.Chat's findManagers ignores it)
        client.post(f"{API}/livechat/users/manager", json={"username": "gone"}, headers=auth.admin)
        assert "gone" in [u["username"] for u in client.get(f"{API}/livechat/users/manager?showIdleAgents=false", headers=auth.admin).json["users"]]
    finally:  # roles are not reset between tests (conftest.DATA_TABLES)
        with app.extensions["db.engine"].begin() as conn:
            conn.execute(sa.text("DELETE FROM user_roles WHERE role_id = 'bot'"))
            conn.execute(sa.text("DELETE FROM roles WHERE id = 'bot'"))


def test_get_one_agent(client, auth):
    bob = auth.create_user("bob")
    carol = auth.create_user("carol")
    make_agent(client, auth.admin, "bob")

    response = client.get(f"{API}/livechat/users/agent/{carol['_id']}", headers=auth.admin)
    assert response.status_code == 200 and response.json == {"user": None, "success": True}

    response = client.get(f"{API}/livechat/users/agent/{bob['_id']}", headers=auth.admin)
    assert response.status_code == 200
    user = response.json["user"]
    assert user["_id"] == bob["_id"] and user["username"] == "bob"
    assert user["statusLivechat"] == "not-available"
    assert "roles" not in user

    # bob is no manager
    assert client.get(f"{API}/livechat/users/manager/{bob['_id']}", headers=auth.admin).json == {"user": None, "success": True}

    response = client.get(f"{API}/livechat/users/agent/invalid-id", headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False, "error": "User not found"}
    response = client.get(f"{API}/livechat/users/invalid-type/{bob['_id']}", headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False, "error": "Invalid type"}

    agent = auth.user_headers("agent1", roles=["livechat-agent"])
    response = client.get(f"{API}/livechat/users/agent/{bob['_id']}", headers=agent)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY


def test_remove_agent_role_and_department_links(client, auth):
    bob = auth.create_user("bob")
    make_agent(client, auth.admin, "bob")
    client.post(f"{API}/livechat/users/manager", json={"username": "bob"}, headers=auth.admin)
    department = create_department(client, auth.admin, agents=[{"agentId": bob["_id"]}])
    assert client.get(f"{API}/livechat/department/{department['_id']}", headers=auth.admin).json["department"]["numAgents"] == 1

    response = client.delete(f"{API}/livechat/users/agent/{bob['_id']}", headers=auth.admin)
    assert response.status_code == 200 and response.json == {"success": True}

    info = client.get(f"{API}/users.info?username=bob", headers=auth.admin).json["user"]
    assert info["roles"] == ["livechat-manager", "user"]  # only the agent role went
    assert client.get(f"{API}/livechat/users/agent/{bob['_id']}", headers=auth.admin).json["user"] is None
    after = client.get(f"{API}/livechat/department/{department['_id']}", headers=auth.admin).json
    assert after["department"]["numAgents"] == 0 and after["agents"] == []

    # removing the manager role keeps nothing else behind either
    assert client.delete(f"{API}/livechat/users/manager/{bob['_id']}", headers=auth.admin).json == {"success": True}
    assert client.get(f"{API}/users.info?username=bob", headers=auth.admin).json["user"]["roles"] == ["user"]


def test_remove_agent_errors(client, auth):
    bob = auth.create_user("bob")
    make_agent(client, auth.admin, "bob")
    response = client.delete(f"{API}/livechat/users/invalid-type/{bob['_id']}", headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False, "error": "Invalid type"}
    response = client.delete(f"{API}/livechat/users/agent/invalid-id", headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False}

    set_permission(client, auth.admin, "view-livechat-manager", [])
    response = client.delete(f"{API}/livechat/users/agent/{bob['_id']}", headers=auth.admin)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    # and nothing changed
    set_permission(client, auth.admin, "view-livechat-manager", ["admin"])
    assert client.get(f"{API}/livechat/users/agent/{bob['_id']}", headers=auth.admin).json["user"]["_id"] == bob["_id"]


def test_livechat_users_need_login(client):
    for method, path in (("get", "agent"), ("post", "agent"), ("get", "agent/x"), ("delete", "agent/x")):
        response = getattr(client, method)(f"{API}/livechat/users/{path}", json={} if method == "post" else None)
        assert response.status_code == 401 and response.json == UNAUTHORIZED_BODY
