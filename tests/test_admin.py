"""permissions.listAll/update, settings/:_id and /api/info (docs/compatibility.md §4.7–§4.8)."""

import re
import time

from conftest import API, FORBIDDEN_BODY, UNAUTHORIZED_BODY, set_permission

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
INVALID_BODY = {"success": False, "error": "Invalid body params", "errorType": "error-invalid-body-params"}


def permissions_by_id(client, headers, **query):
    response = client.get(f"{API}/permissions.listAll", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return {p["_id"]: p for p in response.json["update"]}


def update(client, headers, *changes):
    body = {"permissions": [{"_id": permission, "roles": roles} for permission, roles in changes]}
    return client.post(f"{API}/permissions.update", json=body, headers=headers)


# --- permissions.listAll ----------------------------------------------------------------------


def test_list_all_permissions(client, auth):
    response = client.get(f"{API}/permissions.listAll", headers=auth.user_headers("plain"))  # login is enough
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert list(body) == ["update", "remove", "success"]
    assert body["remove"] == [] and body["success"] is True
    for permission in body["update"]:
        assert set(permission) == {"_id", "roles", "_updatedAt"}
        assert DATE.match(permission["_updatedAt"])
    by_id = {p["_id"]: p["roles"] for p in body["update"]}
    # Rocket.Chat's default grants (§3.4), in stored order
    assert by_id["view-livechat-departments"] == ["livechat-manager", "livechat-monitor", "admin"]
    assert by_id["remove-livechat-department"] == ["livechat-manager", "admin"]
    assert by_id["edit-omnichannel-contact"] == ["livechat-manager", "livechat-agent", "admin"]
    assert by_id["access-permissions"] == ["admin"]
    assert by_id["create-user"] == by_id["delete-user"] == ["admin"]


def test_list_all_needs_login(client):
    response = client.get(f"{API}/permissions.listAll")
    assert response.status_code == 401 and response.json == UNAUTHORIZED_BODY


def test_list_all_updated_since(client, auth):
    before = permissions_by_id(client, auth.admin)
    latest = max(p["_updatedAt"] for p in before.values())
    # nothing changed after the newest date shown, even at sub-millisecond precision
    assert permissions_by_id(client, auth.admin, updatedSince=latest) == {}
    time.sleep(0.002)
    assert update(client, auth.admin, ("view-l-room", ["admin"])).status_code == 200
    changed = permissions_by_id(client, auth.admin, updatedSince=latest)
    assert list(changed) == ["view-l-room"]
    assert changed["view-l-room"]["roles"] == ["admin"]
    assert changed["view-l-room"]["_updatedAt"] > latest
    # an older date lists everything; a date without a zone is read as UTC
    assert len(permissions_by_id(client, auth.admin, updatedSince="2000-01-01T00:00:00.000Z")) == len(before)
    assert len(permissions_by_id(client, auth.admin, updatedSince="2000-01-01T00:00:00")) == len(before)


def test_list_all_rejects_an_invalid_date(client, auth):
    # the last two are dates, but one millisecond later / in UTC they leave the years 1-9999
    for value in ("garbage", "2020-13-45", "9999-12-31T23:59:59.9999Z", "0001-01-01T00:00:00+23:59"):
        response = client.get(f"{API}/permissions.listAll", query_string={"updatedSince": value}, headers=auth.admin)
        assert response.status_code == 400, value
        assert response.json == {
            "success": False,
            "error": 'The "updatedSince" query parameter must be a valid date. [error-roomId-param-invalid]',
            "errorType": "error-roomId-param-invalid",
        }


# --- permissions.update ---------------------------------------------------------------------


def test_list_all_takes_dates_near_the_edges(client, auth):
    user = auth.user_headers("plain")  # any logged-in user may list permissions
    assert permissions_by_id(client, user, updatedSince="9999-12-31T23:59:59.998Z") == {}
    assert len(permissions_by_id(client, user, updatedSince="0001-01-01T00:00:00-23:59")) > 0


def test_update_replaces_the_roles(client, auth):
    old = permissions_by_id(client, auth.admin)["view-livechat-departments"]
    time.sleep(0.002)
    response = update(client, auth.admin, ("view-livechat-departments", ["admin", "livechat-agent"]), ("view-l-room", []))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert body["success"] is True
    returned = {p["_id"]: p for p in body["permissions"]}
    assert set(returned) == set(permissions_by_id(client, auth.admin))  # every permission, not only those changed
    assert returned["view-livechat-departments"]["roles"] == ["admin", "livechat-agent"]  # replaced, in the given order
    assert returned["view-l-room"]["roles"] == []
    assert returned["view-livechat-departments"]["_updatedAt"] > old["_updatedAt"]
    stored = permissions_by_id(client, auth.admin)
    assert stored["view-livechat-departments"]["roles"] == ["admin", "livechat-agent"]
    assert stored["view-l-room"]["roles"] == []
    assert stored["manage-livechat-departments"]["roles"] == ["livechat-manager", "livechat-monitor", "admin"]


def test_update_takes_effect_on_the_next_request(client, auth):
    plain = auth.user_headers("plain")
    assert client.get(f"{API}/users.list", headers=plain).status_code == 403
    set_permission(client, auth.admin, "view-user-administration", ["user"])
    assert client.get(f"{API}/users.list", headers=plain).status_code == 200
    set_permission(client, auth.admin, "view-user-administration", [])
    assert client.get(f"{API}/users.list", headers=auth.admin).status_code == 403


def test_update_unknown_permission_or_role_changes_nothing(client, auth):
    before = permissions_by_id(client, auth.admin)
    response = update(client, auth.admin, ("view-l-room", ["admin"]), ("no-such-permission", ["admin"]))
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Invalid permission", "errorType": "error-invalid-permission"}
    response = update(client, auth.admin, ("view-l-room", ["admin"]), ("create-user", ["admin", "wizard"]))
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Invalid role", "errorType": "error-invalid-role"}
    assert permissions_by_id(client, auth.admin) == before


def test_update_rejects_bad_bodies(client, auth):
    bodies = [
        {},
        {"permissions": "view-l-room"},
        {"permissions": [{"_id": "view-l-room"}]},
        {"permissions": [{"roles": ["admin"]}]},
        {"permissions": [{"_id": "view-l-room", "roles": "admin"}]},
        {"permissions": [{"_id": "view-l-room", "roles": [1]}]},
        {"permissions": [{"_id": "view-l-room", "roles": ["admin"], "extra": 1}]},
        {"permissions": [{"_id": "view-l-room", "roles": ["admin", "admin"]}]},  # roles must be unique
        {"permissions": [], "extra": True},
        [{"_id": "view-l-room", "roles": ["admin"]}],
        "text",
    ]
    for body in bodies:
        response = client.post(f"{API}/permissions.update", json=body, headers=auth.admin)
        assert response.status_code == 400, body
        assert response.json == INVALID_BODY, body
    assert permissions_by_id(client, auth.admin)["view-l-room"]["roles"] == [
        "livechat-manager", "livechat-monitor", "livechat-agent", "admin"
    ]


def test_update_needs_access_permissions(client, auth):
    manager = auth.user_headers("boss", roles=["livechat-manager"])
    response = update(client, manager, ("view-l-room", ["livechat-manager"]))
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY
    assert "errorType" not in response.json
    # an admin who gives away access-permissions loses it too
    assert update(client, auth.admin, ("access-permissions", ["livechat-manager"])).status_code == 200
    assert update(client, auth.admin, ("view-l-room", ["admin"])).status_code == 403
    assert update(client, manager, ("access-permissions", ["admin"])).status_code == 200


def test_update_needs_login(client):
    response = client.post(f"{API}/permissions.update", json={"permissions": []})
    assert response.status_code == 401 and response.json == UNAUTHORIZED_BODY


# --- settings ---------------------------------------------------------------------------------


def get_setting(client, headers, setting):
    return client.get(f"{API}/settings/{setting}", headers=headers)


def test_get_setting(client, auth):
    response = get_setting(client, auth.admin, "Omnichannel_enable_department_removal")
    assert response.status_code == 200
    assert response.json == {"_id": "Omnichannel_enable_department_removal", "value": True, "success": True}
    assert get_setting(client, auth.admin, "API_Default_Count").json["value"] == 50
    assert get_setting(client, auth.admin, "Livechat_Routing_Method").json["value"] == "Auto_Selection"


def test_set_setting_of_each_type(client, auth):
    for setting, value in (
        ("Livechat_enabled", False),
        ("API_Upper_Count_Limit", 250),
        ("Livechat_business_hour_type", "Multiple"),
    ):
        response = client.post(f"{API}/settings/{setting}", json={"value": value}, headers=auth.admin)
        assert response.status_code == 200, setting
        assert response.json == {"success": True}
        assert get_setting(client, auth.admin, setting).json == {"_id": setting, "value": value, "success": True}


def test_set_setting_enforces_the_type(client, auth):
    wrong = [
        ("Livechat_enabled", 1),
        ("Livechat_enabled", "true"),
        ("Livechat_enabled", None),
        ("API_Default_Count", True),
        ("API_Default_Count", 2.5),
        ("API_Default_Count", "10"),
        ("Livechat_Routing_Method", 5),
        ("Livechat_Routing_Method", ["x"]),
    ]
    for setting, value in wrong:
        response = client.post(f"{API}/settings/{setting}", json={"value": value}, headers=auth.admin)
        assert response.status_code == 400, (setting, value)
        assert response.json == {
            "success": False,
            "error": "Invalid setting value [error-invalid-setting-value]",
            "errorType": "error-invalid-setting-value",
            "details": {"method": "saveSetting"},
        }
    assert get_setting(client, auth.admin, "Livechat_enabled").json["value"] is True
    assert get_setting(client, auth.admin, "API_Default_Count").json["value"] == 50
    assert get_setting(client, auth.admin, "Livechat_Routing_Method").json["value"] == "Auto_Selection"


def test_unknown_setting_or_missing_value_is_400(client, auth):
    assert get_setting(client, auth.admin, "No_Such_Setting").json == {"success": False}
    assert get_setting(client, auth.admin, "No_Such_Setting").status_code == 400
    response = client.post(f"{API}/settings/No_Such_Setting", json={"value": True}, headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False}
    response = client.post(f"{API}/settings/Livechat_enabled", json={}, headers=auth.admin)
    assert response.status_code == 400 and response.json == {"success": False}


def test_settings_need_privileged_permissions(client, auth):
    manager = auth.user_headers("boss", roles=["livechat-manager"])
    response = get_setting(client, manager, "Livechat_enabled")
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    response = client.post(f"{API}/settings/Livechat_enabled", json={"value": False}, headers=manager)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY
    assert get_setting(client, auth.admin, "Livechat_enabled").json["value"] is True
    # reading and writing are separate permissions
    set_permission(client, auth.admin, "view-privileged-setting", ["admin", "livechat-manager"])
    assert get_setting(client, manager, "Livechat_enabled").status_code == 200
    assert client.post(f"{API}/settings/Livechat_enabled", json={"value": False}, headers=manager).status_code == 403


def test_settings_need_login(client):
    assert client.get(f"{API}/settings/Livechat_enabled").json == UNAUTHORIZED_BODY
    assert client.post(f"{API}/settings/Livechat_enabled", json={"value": False}).status_code == 401


# --- /api/info --------------------------------------------------------------------------------


def test_info_needs_no_login(client):
    response = client.get("/api/info")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json == {"version": "1.0.0", "success": True}
