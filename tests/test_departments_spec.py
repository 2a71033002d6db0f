"""Rocket.Chat's department e2e behaviours (docs/compatibility.md §5), and the department rules of §1.4–§1.7.

Tests are named `test_NN_…` after the numbered behaviour of docs/compatibility.md §5
they replay; the rest cover §1.4–§1.7, §2 and docs/compatibility.md §D.1. Where docs/compatibility.md §D.1 overrides the
Rocket.Chat spec, the test says so and follows docs/compatibility.md §D.1.

Permissions and settings are toggled the way Rocket.Chat's tests do it (`permissions.update`,
`settings/:_id`). The CE block (#1–#4) runs with the setting DEPARTMENT_LIMIT=1 (docs/compatibility.md §D.7:
"No one-department limit" unless an operator sets one); everything else runs unlimited, like the EE block.

Not covered, on purpose:
- #33 (delete a department that has an open room) and #34 (the EE units variant): they need the
  rooms, visitors and units APIs, which are out of scope for this standalone service (docs/compatibility.md §D.17
  "Not in scope"). The department side of a delete (links, fallback and forward references) is
  covered by test_delete_cleans_up_links_and_references_in_other_departments.
- #60 (multiple business hours): an EE feature that is out of scope (docs/compatibility.md §D.17 "Not in scope").
- #65–#68 are tests of livechat/users/:type, not of department endpoints; only the department side
  effect of #68 (an agent losing the role leaves every department, §1.4/§4.5) is tested here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import (
    API,
    FORBIDDEN_BODY,
    UNAUTHORIZED_BODY,
    create_department,
    department_fields,
    set_permission,
    set_setting,
)

LIST = f"{API}/livechat/department"
ARCHIVED = f"{API}/livechat/departments/archived"
AUTOCOMPLETE = f"{API}/livechat/department.autocomplete"
LIST_BY_IDS = f"{API}/livechat/department.listByIds"
CREATION_AVAILABLE = f"{API}/livechat/department/isDepartmentCreationAvailable"
RC_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

MAX_DEPARTMENTS = {
    "success": False,
    "error": "Maximum number of departments reached [error-max-departments-number-reached]",
    "errorType": "error-max-departments-number-reached",
    "details": {"method": "livechat:saveDepartment"},
}
DEPARTMENT_NOT_FOUND_SAVE = {
    "success": False,
    "error": "Department not found [error-department-not-found]",
    "errorType": "error-department-not-found",
    "details": {"method": "livechat:saveDepartment"},
}
CLOSING_TAGS_REQUIRED = {
    "success": False,
    "error": "At least one closing tag is required when the department requires tag(s) on closing conversations."
    " [error-validating-department-chat-closing-tags]",
    "errorType": "error-validating-department-chat-closing-tags",
    "details": {"method": "livechat:saveDepartment"},
}
FALLBACK_NOT_FOUND = {
    "success": False,
    "error": "Fallback department not found [error-fallback-department-not-found]",
    "errorType": "error-fallback-department-not-found",
    "details": {"method": "livechat:saveDepartment"},
}
FALLBACK_CIRCULAR = {  # §2.4a row 10: no details
    "success": False,
    "error": "Cannot save department. Circular reference between fallback department and department"
    " [error-fallback-department-circular]",
    "errorType": "error-fallback-department-circular",
}
ARCHIVED_CANT_BE_ENABLED = {
    "success": False,
    "error": "Archived departments cant be enabled [error-archived-department-cant-be-enabled]",
    "errorType": "error-archived-department-cant-be-enabled",
    "details": {"method": "livechat:saveDepartment"},
}


def url(department_id: str, suffix: str = "") -> str:
    return f"{API}/livechat/department/{department_id}{suffix}"


def get_department(client, headers, department_id: str) -> dict[str, Any]:
    response = client.get(url(department_id), headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def links_of(client, headers, department_id: str) -> list[dict[str, Any]]:
    response = client.get(url(department_id, "/agents"), query_string={"count": 0}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json["agents"]


def make_agent(client, auth, username: str) -> dict[str, Any]:
    """A user who is made a livechat agent (POST livechat/users/agent), as Rocket.Chat's createAgent()."""
    user = auth.create_user(username)
    response = client.post(f"{API}/livechat/users/agent", json={"username": username}, headers=auth.admin)
    assert response.status_code == 200, response.json
    return user


def remove_view_permissions(client, admin) -> None:
    set_permission(client, admin, "view-livechat-departments", [])
    set_permission(client, admin, "view-l-room", [])


# ---------------------------------------------------------------------------
# CE block (§5 #1–#4): DEPARTMENT_LIMIT=1 stands for Rocket.Chat CE's one-department limit
# ---------------------------------------------------------------------------


def test_01_setup_lists_departments_and_deletes_each_of_them(client, auth):
    admin = auth.admin
    create_department(client, admin, name="one")
    create_department(client, admin, name="two")
    set_setting(client, admin, "DEPARTMENT_LIMIT", 1)
    response = client.get(LIST, headers=admin)
    assert response.status_code == 200
    assert len(response.json["departments"]) == 2
    for department in response.json["departments"]:
        deleted = client.delete(url(department["_id"]), headers=admin)
        assert deleted.status_code == 200 and deleted.json == {"success": True}
    assert client.get(LIST, headers=admin).json["departments"] == []


def test_02_ce_first_department_is_created_with_the_fields_sent(client, auth):
    set_setting(client, auth.admin, "DEPARTMENT_LIMIT", 1)
    body = {"department": department_fields(allowReceiveForwardOffline=True)}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True
    department = response.json["department"]
    assert isinstance(department["_id"], str) and department["_id"]
    assert department["name"] == "Test"
    assert department["enabled"] is True
    assert department["showOnOfflineForm"] is True
    assert department["showOnRegistration"] is True
    assert department["allowReceiveForwardOffline"] is True


def test_03_ce_second_department_is_refused_with_max_departments_error(client, auth):
    set_setting(client, auth.admin, "DEPARTMENT_LIMIT", 1)
    create_department(client, auth.admin)
    response = client.post(LIST, json={"department": department_fields(name="Second")}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == MAX_DEPARTMENTS  # §2.2


def test_04_ce_list_holds_only_the_one_department(client, auth):
    set_setting(client, auth.admin, "DEPARTMENT_LIMIT", 1)
    create_department(client, auth.admin)
    assert client.post(LIST, json={"department": department_fields(name="x")}, headers=auth.admin).status_code == 400
    response = client.get(LIST, headers=auth.admin)
    assert response.status_code == 200 and response.json["success"] is True
    assert len(response.json["departments"]) == 1


def test_department_creation_availability_follows_the_limit(client, auth):
    # docs/compatibility.md §D.7: available unless an operator sets a limit; §2.13 body shape.
    admin = auth.admin
    assert client.get(CREATION_AVAILABLE, headers=admin).json == {"isDepartmentCreationAvailable": True, "success": True}
    create_department(client, admin)
    assert client.get(CREATION_AVAILABLE, headers=admin).json["isDepartmentCreationAvailable"] is True  # unlimited
    set_setting(client, admin, "DEPARTMENT_LIMIT", 1)
    assert client.get(CREATION_AVAILABLE, headers=admin).json == {"isDepartmentCreationAvailable": False, "success": True}
    set_setting(client, admin, "DEPARTMENT_LIMIT", 2)
    assert client.get(CREATION_AVAILABLE, headers=admin).json["isDepartmentCreationAvailable"] is True


def test_archived_departments_count_toward_the_limit(client, auth):
    # §1.6 / §2.2: CE counts archived departments toward its limit.
    admin = auth.admin
    department = create_department(client, admin)
    assert client.post(url(department["_id"], "/archive"), headers=admin).status_code == 200
    set_setting(client, admin, "DEPARTMENT_LIMIT", 1)
    response = client.post(LIST, json={"department": department_fields(name="x")}, headers=admin)
    assert response.status_code == 400 and response.json == MAX_DEPARTMENTS


def test_no_department_limit_by_default(client, auth):
    # docs/compatibility.md §D.7 "No one-department limit".
    for i in range(3):
        create_department(client, auth.admin, name=f"dep {i}")
    assert client.get(LIST, headers=auth.admin).json["total"] == 3


# ---------------------------------------------------------------------------
# GET livechat/department (§5 #5–#10, §2.1)
# ---------------------------------------------------------------------------


def test_05_list_is_forbidden_without_either_view_permission(client, auth):
    remove_view_permissions(client, auth.admin)
    response = client.get(LIST, headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_06_list_is_allowed_with_view_livechat_departments_alone(client, auth):
    remove_view_permissions(client, auth.admin)
    set_permission(client, auth.admin, "view-livechat-departments", ["admin"])
    response = client.get(LIST, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True and isinstance(response.json["departments"], list)


def test_list_is_allowed_with_view_l_room_alone(client, auth):
    # §2.1 perm: hasAny of view-livechat-departments, view-l-room.
    remove_view_permissions(client, auth.admin)
    set_permission(client, auth.admin, "view-l-room", ["admin"])
    assert client.get(LIST, headers=auth.admin).status_code == 200


def test_07_count_that_is_not_a_number_is_invalid_params(client, auth):
    response = client.get(LIST, query_string={"count": "invalid"}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "must be number [invalid-params]", "errorType": "invalid-params"}


def test_parameter_validation_comes_before_the_permission_check(client, auth):
    # §3.3: ajv 400 beats 403, so a bad parameter from an unprivileged user is a 400.
    headers = auth.user_headers("plain", ["user"])
    response = client.get(LIST, query_string={"count": "invalid"}, headers=headers)
    assert response.status_code == 400 and response.json["errorType"] == "invalid-params"
    assert client.get(LIST, headers=headers).status_code == 403


def test_08_count_1_returns_one_department(client, auth):
    create_department(client, auth.admin, name="first")
    create_department(client, auth.admin, name="second")
    response = client.get(LIST, query_string={"count": 1, "offset": 0}, headers=auth.admin)
    assert response.status_code == 200
    assert len(response.json["departments"]) == 1


def test_09_text_search_is_case_insensitive_and_names_sort_binary(client, auth):
    lower = create_department(client, auth.admin, name="a test")
    upper = create_department(client, auth.admin, name="A test")
    response = client.get(LIST, query_string={"count": 2, "offset": 0, "text": "test"}, headers=auth.admin)
    assert response.status_code == 200
    departments = response.json["departments"]
    assert [d["_id"] for d in departments] == [upper["_id"], lower["_id"]]


def test_uppercase_sorts_before_lowercase_like_mongo(client, auth):
    # §2.1: 'A test' < 'Test' < 'a test'.
    for name in ("a test", "Test", "A test"):
        create_department(client, auth.admin, name=name)
    names = [d["name"] for d in client.get(LIST, headers=auth.admin).json["departments"]]
    assert names == ["A test", "Test", "a test"]


def test_10_text_matches_the_whole_text_as_a_substring(client, auth):
    wanted = create_department(client, auth.admin, name="A test 123")
    other = create_department(client, auth.admin, name="a test 456")
    response = client.get(LIST, query_string={"count": 2, "offset": 0, "text": "A test 123"}, headers=auth.admin)
    assert response.status_code == 200
    ids = [d["_id"] for d in response.json["departments"]]
    assert ids == [wanted["_id"]]
    assert other["_id"] not in ids


# ---------------------------------------------------------------------------
# POST livechat/department (§5 #11–#18, §2.2, docs/compatibility.md §D.3)
# ---------------------------------------------------------------------------


def test_11_create_is_forbidden_without_manage_livechat_departments(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    response = client.post(LIST, json={"department": department_fields()}, headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY
    set_permission(client, auth.admin, "manage-livechat-departments", ["admin"])
    assert client.get(LIST, headers=auth.admin).json["total"] == 0


def test_12_create_with_an_empty_department_is_invalid_params(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", ["admin"])
    response = client.post(LIST, json={"department": {}}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must have required property 'name' [invalid-params]",
        "errorType": "invalid-params",
    }


@pytest.mark.parametrize("missing", ["name", "email", "enabled", "showOnRegistration"])
def test_create_requires_name_email_enabled_and_show_on_registration(client, auth, missing):
    # docs/compatibility.md §D.3: these four are required on create.
    fields = department_fields()
    del fields[missing]
    response = client.post(LIST, json={"department": fields}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": f"must have required property '{missing}' [invalid-params]",
        "errorType": "invalid-params",
    }


def test_create_without_show_on_offline_form_succeeds(client, auth):
    # docs/compatibility.md §D.3 overrides §2.2: showOnOfflineForm is optional (the seed document omits it).
    fields = department_fields()
    del fields["showOnOfflineForm"]
    response = client.post(LIST, json={"department": fields}, headers=auth.admin)
    assert response.status_code == 200, response.json
    assert "showOnOfflineForm" not in response.json["department"]


def test_create_without_department_key_is_invalid_params(client, auth):
    response = client.post(LIST, json={"agents": []}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must have required property 'department' [invalid-params]",
        "errorType": "invalid-params",
    }


def test_create_with_an_unknown_top_level_key_is_invalid_params(client, auth):
    # §2.2: top level additionalProperties false.
    response = client.post(LIST, json={"department": department_fields(), "foo": 1}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "must NOT have additional properties [invalid-params]",
        "errorType": "invalid-params",
    }


def test_create_coerces_string_booleans_like_ajv(client, auth):
    # §2.2 / §2.4: the body that PUT rejects passes on POST, coerced.
    response = client.post(LIST, json={"department": department_fields(enabled="true")}, headers=auth.admin)
    assert response.status_code == 200, response.json
    assert response.json["department"]["enabled"] is True
    department_id = response.json["department"]["_id"]
    assert get_department(client, auth.admin, department_id)["department"]["enabled"] is True


def test_13_require_tag_without_closing_tags_is_refused(client, auth):
    body = {"department": department_fields(requestTagBeforeClosingChat=True)}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == CLOSING_TAGS_REQUIRED


def test_require_tag_with_empty_closing_tags_is_refused(client, auth):
    # §2.4a row 8: "missing or empty".
    body = {"department": department_fields(requestTagBeforeClosingChat=True, chatClosingTags=[])}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == CLOSING_TAGS_REQUIRED
    assert client.get(LIST, headers=auth.admin).json["total"] == 0


def test_14_closing_tags_that_are_not_an_array_are_refused(client, auth):
    body = {"department": department_fields(requestTagBeforeClosingChat=True, chatClosingTags="not an array")}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 400
    # §2.2: ajv never coerces a string into an array.
    assert response.json == {"success": False, "error": "must be array [invalid-params]", "errorType": "invalid-params"}


def test_15_require_tag_with_closing_tags_is_saved(client, auth):
    body = {"department": department_fields(requestTagBeforeClosingChat=True, chatClosingTags=["tagA", "tagB"])}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 200
    department = response.json["department"]
    assert department["requestTagBeforeClosingChat"] is True
    assert department["chatClosingTags"] == ["tagA", "tagB"]


def test_16_unknown_fallback_department_is_refused(client, auth):
    body = {"department": department_fields(fallbackForwardDepartment="not a department id")}
    for _ in range(2):  # the e2e test appears twice
        response = client.post(LIST, json=body, headers=auth.admin)
        assert response.status_code == 400
        assert response.json == FALLBACK_NOT_FOUND
    assert client.get(LIST, headers=auth.admin).json["total"] == 0


def test_fallback_department_may_be_an_existing_department_or_empty(client, auth):
    # §1.1: an existing id is accepted; '' skips the existence check and is stored as is.
    other = create_department(client, auth.admin, name="other")
    linked = create_department(client, auth.admin, name="linked", fallbackForwardDepartment=other["_id"])
    assert linked["fallbackForwardDepartment"] == other["_id"]
    empty = create_department(client, auth.admin, name="empty", fallbackForwardDepartment="")
    assert empty["fallbackForwardDepartment"] == ""


def test_17_create_echoes_the_five_fields(client, auth):
    response = client.post(LIST, json={"department": department_fields()}, headers=auth.admin)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert body["success"] is True
    department = body["department"]
    assert department["_id"]
    assert {k: department[k] for k in ("name", "enabled", "showOnOfflineForm", "showOnRegistration", "email")} == {
        "name": "Test",
        "enabled": True,
        "showOnOfflineForm": True,
        "showOnRegistration": True,
        "email": "bla@bla",
    }


def test_18_create_disabled_department(client, auth):
    response = client.post(
        LIST, json={"department": department_fields(name="disabled one", email="x@y", enabled=False)}, headers=auth.admin
    )
    assert response.status_code == 200
    assert response.json["department"]["enabled"] is False


def test_create_response_shows_num_agents_after_the_agents_were_written(client, auth):
    # docs/compatibility.md §D.5 overrides the §1.4 QUIRK: numAgents is current in the POST response.
    one, two = auth.create_user("one.agent"), auth.create_user("two.agent")
    body = {"department": department_fields(), "agents": [{"agentId": one["_id"]}, {"agentId": two["_id"]}]}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["department"]["numAgents"] == 2
    assert sorted(link["agentId"] for link in response.json["agents"]) == sorted([one["_id"], two["_id"]])


def test_create_accepts_username_in_agent_items_and_ignores_it(client, auth):
    # docs/compatibility.md §D.3 overrides §2.2 (POST would reject `username`): the link's username comes from the user.
    user = auth.create_user("real.name")
    body = {"department": department_fields(), "agents": [{"agentId": user["_id"], "username": "bogus"}]}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 200, response.json
    assert [link["username"] for link in response.json["agents"]] == ["real.name"]


def test_unknown_agent_ids_are_skipped_and_the_response_tells_the_truth(client, auth):
    # §1.3 + docs/compatibility.md §D.11: skipped without error; the response agents list is the truth.
    user = auth.create_user("known")
    body = {"department": department_fields(), "agents": [{"agentId": "no-such-user"}, {"agentId": user["_id"]}]}
    response = client.post(LIST, json=body, headers=auth.admin)
    assert response.status_code == 200
    assert [link["agentId"] for link in response.json["agents"]] == [user["_id"]]
    assert response.json["department"]["numAgents"] == 1


def test_extra_primitive_keys_are_kept_and_returned(client, auth):
    # §1.1 custom fields rule; docs/compatibility.md §D.12 keeps them.
    extra = {"maxNumberSimultaneousChat": 5, "visitorInactivityTimeoutInSeconds": 30, "customFlag": True, "note": "hi"}
    department = create_department(client, auth.admin, **extra)
    for key, value in extra.items():
        assert department[key] == value
    stored = get_department(client, auth.admin, department["_id"])["department"]
    assert {key: stored[key] for key in extra} == extra


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], None, 1.5])
def test_extra_keys_that_are_not_primitives_are_refused(client, auth, value):
    # §1.1 QUIRK: arrays, objects, null and non-integer numbers in unknown keys fail check (400).
    response = client.post(LIST, json={"department": department_fields(custom=value)}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json["success"] is False and isinstance(response.json["error"], str)
    assert client.get(LIST, headers=auth.admin).json["total"] == 0


def test_server_maintained_fields_sent_by_a_client_are_ignored_on_create(client, auth):
    # docs/compatibility.md §D.12: _id, _updatedAt, numAgents, archived, type sent by a client never overwrite.
    fields = {
        "_id": "client-chosen-id",
        "_updatedAt": "2000-01-01T00:00:00.000Z",
        "numAgents": 99,
        "archived": True,
        "type": "u",
    }
    department = create_department(client, auth.admin, **fields)
    assert department["_id"] != "client-chosen-id"
    assert department["_updatedAt"] != "2000-01-01T00:00:00.000Z"
    assert department.get("numAgents") in (None, 0)
    assert department.get("archived") is not True
    assert department.get("type") != "u"
    assert client.get(url("client-chosen-id"), headers=auth.admin).json["department"] is None
    listed = client.get(LIST, headers=auth.admin).json["departments"]  # not archived, so listed
    assert [d["_id"] for d in listed] == [department["_id"]]
    assert client.get(ARCHIVED, headers=auth.admin).json["departments"] == []


def test_server_maintained_fields_sent_by_a_client_are_ignored_on_update(client, auth):
    user = auth.create_user("the.agent")
    department = create_department(client, auth.admin, agents=[{"agentId": user["_id"]}])
    assert client.post(url(department["_id"], "/archive"), headers=auth.admin).status_code == 200
    fields = {"_id": "other-id", "numAgents": 42, "archived": False, "type": "u", "_updatedAt": "2000-01-01T00:00:00.000Z"}
    response = client.put(
        url(department["_id"]), json={"department": department_fields(enabled=False, **fields)}, headers=auth.admin
    )
    assert response.status_code == 200, response.json
    after = get_department(client, auth.admin, department["_id"])["department"]
    assert after["_id"] == department["_id"]
    assert after["numAgents"] == 1
    assert after["archived"] is True
    assert after.get("type") != "u"
    assert after["_updatedAt"] != "2000-01-01T00:00:00.000Z"
    assert client.get(url("other-id"), headers=auth.admin).json["department"] is None


def test_wire_format_dates_ids_and_absent_keys(client, auth):
    # §3.1 / docs/compatibility.md §D.1: `…:19.109Z`, opaque string ids, absent keys omitted (not null).
    response = client.post(LIST, json={"department": department_fields()}, headers=auth.admin)
    department = response.json["department"]
    assert RC_DATE.match(department["_updatedAt"])
    assert isinstance(department["_id"], str)
    assert None not in department.values()
    for key in ("description", "chatClosingTags", "fallbackForwardDepartment", "archived", "requestTagBeforeClosingChat"):
        assert key not in department
    stored = get_department(client, auth.admin, department["_id"])["department"]
    assert None not in stored.values()
    assert "description" not in stored


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("get", "/livechat/department", None, 200),
        ("post", "/livechat/department", {"department": {}}, 400),
        ("get", "/livechat/department/unknown-id", None, 200),
        ("delete", "/livechat/department/unknown-id", None, 400),
        ("get", "/livechat/department.autocomplete", None, 400),
        ("post", "/livechat/department/unknown-id/archive", None, 400),
    ],
)
def test_every_response_is_exactly_application_json(client, auth, method, path, body, status):
    # §3.1: exactly `application/json`, no charset; also for errors and 401/403.
    kwargs = {"json": body} if body is not None else {}
    response = getattr(client, method)(API + path, headers=auth.admin, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    unauthenticated = getattr(client, method)(API + path, **kwargs)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["Content-Type"] == "application/json"
    assert unauthenticated.json == UNAUTHORIZED_BODY


# ---------------------------------------------------------------------------
# GET livechat/department/:_id (§5 #19–#24, §2.3)
# ---------------------------------------------------------------------------


def test_19_get_one_is_forbidden_without_either_view_permission(client, auth):
    remove_view_permissions(client, auth.admin)
    response = client.get(url("testetetetstetete"), headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_20_get_one_with_unknown_id_is_200_with_null_department(client, auth):
    response = client.get(url("testesteteste"), headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"department": None, "agents": [], "success": True}


def test_21_get_one_returns_the_created_values(client, auth):
    created = create_department(client, auth.admin, name="Fetched", email="f@f", enabled=False)
    response = client.get(url(created["_id"]), headers=auth.admin)
    assert response.status_code == 200 and response.json["success"] is True
    department = response.json["department"]
    assert department["_id"] == created["_id"]
    assert {k: department[k] for k in ("name", "enabled", "showOnOfflineForm", "showOnRegistration", "email")} == {
        "name": "Fetched",
        "enabled": False,
        "showOnOfflineForm": True,
        "showOnRegistration": True,
        "email": "f@f",
    }


def test_22_caller_with_only_view_l_room_never_sees_agents(client, auth):
    user = auth.create_user("linked")
    created = create_department(client, auth.admin, agents=[{"agentId": user["_id"]}])
    headers = auth.user_headers("room.viewer", ["livechat-agent"])  # view-l-room only, by default
    for query in ({}, {"includeAgents": "true"}):
        response = client.get(url(created["_id"]), query_string=query, headers=headers)
        assert response.status_code == 200
        assert response.json["department"]["_id"] == created["_id"]
        assert "agents" not in response.json


@pytest.mark.parametrize("value", ["false", "", "TRUE"])
def test_23_include_agents_other_than_true_leaves_agents_out(client, auth, value):
    user = auth.create_user("linked")
    created = create_department(client, auth.admin, agents=[{"agentId": user["_id"]}])
    response = client.get(url(created["_id"]), query_string={"includeAgents": value}, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["department"]["_id"] == created["_id"]
    assert "agents" not in response.json


@pytest.mark.parametrize("query", [{}, {"includeAgents": "true"}])
def test_24_caller_with_view_livechat_departments_sees_agents(client, auth, query):
    user = auth.create_user("linked")
    created = create_department(client, auth.admin, agents=[{"agentId": user["_id"]}])
    response = client.get(url(created["_id"]), query_string=query, headers=auth.admin)
    assert response.status_code == 200
    agents = response.json["agents"]
    assert [(a["agentId"], a["departmentId"], a["username"]) for a in agents] == [(user["_id"], created["_id"], "linked")]


def test_get_one_with_only_my_departments_for_an_agent_is_limited_to_their_departments(client, auth):
    # docs/compatibility.md §D.17: onlyMyDepartments=true without view-livechat-departments = "departments I am an agent of".
    agent = make_agent(client, auth, "mine")
    mine = create_department(client, auth.admin, name="mine", agents=[{"agentId": agent["_id"]}])
    other = create_department(client, auth.admin, name="other")
    headers = auth.login("mine", "pass-word-1")
    query = {"onlyMyDepartments": "true"}
    assert client.get(url(mine["_id"]), query_string=query, headers=headers).json["department"]["_id"] == mine["_id"]
    assert client.get(url(other["_id"]), query_string=query, headers=headers).json["department"] is None
    # without the flag, and for a caller with view-livechat-departments, no filter
    assert client.get(url(other["_id"]), headers=headers).json["department"]["_id"] == other["_id"]
    admin_view = client.get(url(other["_id"]), query_string=query, headers=auth.admin)
    assert admin_view.json["department"]["_id"] == other["_id"]


# ---------------------------------------------------------------------------
# PUT livechat/department/:_id (§5 #25–#28, §2.4, docs/compatibility.md §D.4 merge)
# ---------------------------------------------------------------------------


def test_25_fallback_department_that_is_the_department_itself_is_circular(client, auth):
    created = create_department(client, auth.admin)
    body = {"department": department_fields(fallbackForwardDepartment=created["_id"])}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == FALLBACK_CIRCULAR
    assert "fallbackForwardDepartment" not in get_department(client, auth.admin, created["_id"])["department"]


def test_update_with_unknown_fallback_department_is_refused(client, auth):
    created = create_department(client, auth.admin)
    body = {"department": department_fields(fallbackForwardDepartment="nope")}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == FALLBACK_NOT_FOUND


def test_26_agents_that_are_not_an_array_are_refused(client, auth):
    created = create_department(client, auth.admin)
    body = {"department": department_fields(name="changed"), "agents": "not an array"}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    # The spec (§2.4 step 1) quotes "Failed Match.OneOf…" here, but Meteor's match.js, the final
    # word, unwraps Optional/Maybe inside object patterns and tests the inner `Array` pattern.
    assert response.json == {"success": False, "error": "Match error: Expected Array in field agents"}
    assert get_department(client, auth.admin, created["_id"])["department"]["name"] == "Test"


def test_27_agent_item_without_agent_id_is_refused_and_nothing_changes(client, auth):
    set_permission(client, auth.admin, "add-livechat-department-agents", ["admin"])
    created = create_department(client, auth.admin)
    body = {"department": department_fields(name="changed"), "agents": [{"notAValidKey": "string"}]}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    # §2.4 step 3: PUT's agents become {upsert: agents}, checked as in §2.11.
    assert response.json == {"success": False, "error": "Match error: Missing key 'agentId' in field upsert[0]"}
    # docs/compatibility.md §D.6 overrides the §2.4 non-atomic QUIRK: the department is unchanged.
    assert get_department(client, auth.admin, created["_id"])["department"]["name"] == "Test"


def test_28_nested_upsert_item_in_agents_is_refused_and_nothing_changes(client, auth):
    created = create_department(client, auth.admin)
    body = {"department": department_fields(name="changed"), "agents": [{"upsert": [{"notAValidKey": "string"}]}]}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Missing key 'agentId' in field upsert[0]"}
    assert get_department(client, auth.admin, created["_id"])["department"]["name"] == "Test"


def test_update_without_department_key_is_a_match_error(client, auth):
    created = create_department(client, auth.admin)
    response = client.put(url(created["_id"]), json={"agents": []}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Missing key 'department'"}


def test_update_with_unknown_top_level_key_is_a_match_error(client, auth):
    created = create_department(client, auth.admin)
    response = client.put(url(created["_id"]), json={"department": department_fields(), "foo": 1}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Unknown key in field foo"}


def test_update_does_not_coerce_string_booleans(client, auth):
    created = create_department(client, auth.admin, enabled=False)
    response = client.put(url(created["_id"]), json={"department": department_fields(enabled="true")}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Expected boolean, got string in field enabled"}
    assert get_department(client, auth.admin, created["_id"])["department"]["enabled"] is False


def test_update_is_a_merge_of_the_fields_sent(client, auth):
    # docs/compatibility.md §D.4: only the fields sent are validated and changed.
    created = create_department(client, auth.admin, description="kept", chatClosingTags=["t"], custom="x")
    response = client.put(url(created["_id"]), json={"department": {"name": "renamed"}}, headers=auth.admin)
    assert response.status_code == 200, response.json
    department = get_department(client, auth.admin, created["_id"])["department"]
    assert department["name"] == "renamed"
    for key in ("email", "enabled", "showOnOfflineForm", "showOnRegistration", "description", "chatClosingTags", "custom"):
        assert department[key] == created[key], key
    assert response.json["department"] == department


def test_update_of_unknown_department_is_not_found(client, auth):
    response = client.put(url("no-such-department"), json={"department": department_fields()}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == DEPARTMENT_NOT_FOUND_SAVE
    assert client.get(LIST, headers=auth.admin).json["total"] == 0


def test_update_response_shows_the_department_and_its_links_after_the_write(client, auth):
    one, two = auth.create_user("one.agent"), auth.create_user("two.agent")
    created = create_department(client, auth.admin, agents=[{"agentId": one["_id"]}])
    body = {"department": department_fields(name="new"), "agents": [{"agentId": two["_id"], "count": 2, "order": 3}]}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["department"]["name"] == "new"
    assert response.json["department"]["numAgents"] == 2
    links = {link["agentId"]: link for link in response.json["agents"]}
    assert set(links) == {one["_id"], two["_id"]}  # PUT upserts, it never unlinks (§2.4 step 3)
    assert (links[two["_id"]]["count"], links[two["_id"]]["order"]) == (2, 3)
    assert RC_DATE.match(response.json["department"]["_updatedAt"])
    assert response.json["department"]["_updatedAt"] >= created["_updatedAt"]


def test_update_with_only_add_department_agents_permission_is_not_allowed(client, auth):
    # §2.4 step 2: passes the route check (hasAny) but can never succeed.
    set_permission(client, auth.admin, "add-livechat-department-agents", ["livechat-agent"])
    headers = auth.user_headers("agent.adder", ["livechat-agent"])
    created = create_department(client, auth.admin)
    response = client.put(url(created["_id"]), json={"department": department_fields(name="nope")}, headers=headers)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "error-not-allowed"}
    assert get_department(client, auth.admin, created["_id"])["department"]["name"] == "Test"


def test_update_drops_agents_when_caller_lacks_add_department_agents(client, auth):
    # §2.4 step 3: agents are silently dropped, the department is saved.
    set_permission(client, auth.admin, "add-livechat-department-agents", ["livechat-manager"])
    user = auth.create_user("would.be")
    created = create_department(client, auth.admin)
    body = {"department": department_fields(name="saved"), "agents": [{"agentId": user["_id"]}]}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 200, response.json
    assert response.json["department"]["name"] == "saved"
    assert response.json["agents"] == []
    assert links_of(client, auth.admin, created["_id"]) == []


def test_update_with_require_tag_and_no_closing_tags_is_refused(client, auth):
    created = create_department(client, auth.admin)
    body = {"department": department_fields(requestTagBeforeClosingChat=True)}
    response = client.put(url(created["_id"]), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == CLOSING_TAGS_REQUIRED


# ---------------------------------------------------------------------------
# DELETE livechat/department/:_id (§5 #29–#32, §2.5, §1.7)
# ---------------------------------------------------------------------------


def test_29_delete_when_removal_is_disabled(client, auth):
    created = create_department(client, auth.admin)
    set_setting(client, auth.admin, "Omnichannel_enable_department_removal", False)
    response = client.delete(url(created["_id"]), headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "error-department-removal-disabled"}
    assert get_department(client, auth.admin, created["_id"])["department"]["_id"] == created["_id"]


def test_30_delete_is_forbidden_without_manage_or_remove_permission(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    set_permission(client, auth.admin, "remove-livechat-department", [])
    response = client.delete(url("testetetetstetete"), headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_delete_is_allowed_with_remove_livechat_department_alone(client, auth):
    created = create_department(client, auth.admin)
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    response = client.delete(url(created["_id"]), headers=auth.admin)
    assert response.status_code == 200 and response.json == {"success": True}


def test_31_delete_unknown_department(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", ["admin"])
    response = client.delete(url("testesteteste"), headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "error-department-not-found"}


def test_32_delete_existing_department_works_by_default(client, auth):
    # docs/compatibility.md §D.8: Omnichannel_enable_department_removal defaults to true.
    created = create_department(client, auth.admin)
    response = client.delete(url(created["_id"]), headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"success": True}
    assert get_department(client, auth.admin, created["_id"])["department"] is None


def test_delete_cleans_up_links_and_references_in_other_departments(client, auth):
    # docs/compatibility.md §D.9 "Delete cleans up references" (fixes the §1.7 fallback QUIRK).
    agent = auth.create_user("linked.agent")
    gone = create_department(client, auth.admin, name="gone", agents=[{"agentId": agent["_id"]}])
    kept = create_department(client, auth.admin, name="kept")
    falls_back = create_department(client, auth.admin, name="falls back", fallbackForwardDepartment=gone["_id"])
    forwards = create_department(client, auth.admin, name="forwards", departmentsAllowedToForward=[gone["_id"], kept["_id"]])
    assert client.delete(url(gone["_id"]), headers=auth.admin).status_code == 200

    assert links_of(client, auth.admin, gone["_id"]) == []
    mine = client.get(f"{API}/livechat/agents/{agent['_id']}/departments", headers=auth.admin).json["departments"]
    assert mine == []
    fallback = get_department(client, auth.admin, falls_back["_id"])["department"]
    assert "fallbackForwardDepartment" not in fallback
    assert get_department(client, auth.admin, forwards["_id"])["department"]["departmentsAllowedToForward"] == [kept["_id"]]
    # a later full save of the referring department works (no dangling fallback, §1.7)
    resave = client.put(url(falls_back["_id"]), json={"department": fallback}, headers=auth.admin)
    assert resave.status_code == 200, resave.json


# ---------------------------------------------------------------------------
# GET livechat/department.autocomplete (§5 #35–#41, §2.9, docs/compatibility.md §D.10)
# ---------------------------------------------------------------------------


def autocomplete(client, headers, selector: str, **query: str):
    return client.get(AUTOCOMPLETE, query_string={"selector": selector, **query}, headers=headers)


def test_35_autocomplete_is_forbidden_without_either_view_permission(client, auth):
    remove_view_permissions(client, auth.admin)
    response = autocomplete(client, auth.admin, '{"term":"test"}')
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_36_autocomplete_without_selector(client, auth):
    response = client.get(AUTOCOMPLETE, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "The 'selector' param is required"}


def test_37_autocomplete_with_empty_selector(client, auth):
    response = autocomplete(client, auth.admin, "")
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "The 'selector' param is required"}


def test_38_autocomplete_with_object_selector(client, auth):
    response = client.get(f"{AUTOCOMPLETE}?selector[name]=test", headers=auth.admin)
    assert response.status_code == 400
    assert response.json["success"] is False and isinstance(response.json["error"], str) and response.json["error"]


def test_39_autocomplete_with_invalid_json_selector(client, auth):
    response = autocomplete(client, auth.admin, '{name: "test"')
    assert response.status_code == 400
    assert response.json["success"] is False and isinstance(response.json["error"], str) and response.json["error"]


def test_40_autocomplete_term_finds_the_department(client, auth):
    created = create_department(client, auth.admin, name="test")
    create_department(client, auth.admin, name="other")
    response = autocomplete(client, auth.admin, '{"term":"test"}')
    assert response.status_code == 200 and response.json["success"] is True
    items = response.json["items"]
    assert len(items) >= 1
    assert items[0] == {"_id": created["_id"], "name": "test"}  # exactly {_id, name}
    assert [item["name"] for item in items] == ["test"]


def test_41_autocomplete_exceptions_are_left_out(client, auth):
    first = create_department(client, auth.admin, name="dep1")
    second = create_department(client, auth.admin, name="dep2")
    response = autocomplete(client, auth.admin, f'{{"exceptions":["{first["_id"]}"]}}')
    assert response.status_code == 200
    items = response.json["items"]
    assert len(items) >= 1
    assert all(set(item) == {"_id", "name"} for item in items)
    assert first["_id"] not in [item["_id"] for item in items]
    assert second["_id"] in [item["_id"] for item in items]


def test_autocomplete_term_is_a_case_insensitive_literal_prefix(client, auth):
    for name in ("Sales", "sales team", "Presales", "S.*", "S%x"):
        create_department(client, auth.admin, name=name)
    names = lambda term: [i["name"] for i in autocomplete(client, auth.admin, f'{{"term":"{term}"}}').json["items"]]  # noqa: E731
    assert names("sal") == ["Sales", "sales team"]
    assert names("SALES T") == ["sales team"]
    assert names("S.*") == ["S.*"]
    assert names("S%") == ["S%x"]
    assert names("ales") == []
    assert len(names("")) == 5  # a missing or empty term matches everything


def test_autocomplete_hides_archived_unless_show_archived(client, auth):
    active = create_department(client, auth.admin, name="active")
    archived = create_department(client, auth.admin, name="archived")
    assert client.post(url(archived["_id"], "/archive"), headers=auth.admin).status_code == 200
    default = [i["_id"] for i in autocomplete(client, auth.admin, "{}").json["items"]]
    assert default == [active["_id"]]
    shown = [i["_id"] for i in autocomplete(client, auth.admin, "{}", showArchived="true").json["items"]]
    assert set(shown) == {active["_id"], archived["_id"]}


def test_autocomplete_conditions_support_equality_and_id_in_nin(client, auth):
    on = create_department(client, auth.admin, name="on")
    off = create_department(client, auth.admin, name="off", enabled=False)
    third = create_department(client, auth.admin, name="third")

    def ids(selector: str) -> list[str]:
        response = autocomplete(client, auth.admin, selector)
        assert response.status_code == 200, response.json
        return sorted(item["_id"] for item in response.json["items"])

    assert ids('{"conditions":{"enabled":false}}') == [off["_id"]]
    assert ids(f'{{"conditions":{{"_id":"{on["_id"]}"}}}}') == [on["_id"]]
    assert ids(f'{{"conditions":{{"_id":{{"$in":["{on["_id"]}","{third["_id"]}"]}}}}}}') == sorted([on["_id"], third["_id"]])
    assert ids(f'{{"conditions":{{"_id":{{"$nin":["{on["_id"]}"]}}}}}}') == sorted([off["_id"], third["_id"]])


@pytest.mark.parametrize(
    "conditions",
    [
        '{"$where":"true"}',
        '{"name":{"$regex":"."}}',
        '{"$or":[{"enabled":true}]}',
        '{"enabled":{"$ne":true}}',
        '{"_id":{"$gt":""}}',
        '{"noSuchField":1}',
    ],
)
def test_autocomplete_conditions_beyond_the_safe_subset_are_refused(client, auth, conditions):
    # docs/compatibility.md §D.10: never a raw database filter; anything else is a 400.
    create_department(client, auth.admin)
    response = autocomplete(client, auth.admin, f'{{"conditions":{conditions}}}')
    assert response.status_code == 400
    assert response.json["success"] is False and isinstance(response.json["error"], str)


# ---------------------------------------------------------------------------
# GET livechat/department.listByIds (§5 #42–#44, §2.12)
# ---------------------------------------------------------------------------


def test_42_list_by_ids_is_forbidden_without_either_view_permission(client, auth):
    remove_view_permissions(client, auth.admin)
    response = client.get(f"{LIST_BY_IDS}?ids[]=a", headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_43_list_by_ids_without_ids(client, auth):
    response = client.get(LIST_BY_IDS, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "The 'ids' param is required"}


def test_44_list_by_ids_with_a_scalar_ids(client, auth):
    response = client.get(f"{LIST_BY_IDS}?ids=test", headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "The 'ids' param must be an array"}


@pytest.mark.parametrize("form", ["ids[]={a}&ids[]={b}", "ids={a}&ids={b}", "ids[0]={a}&ids[1]={b}"])
def test_list_by_ids_accepts_the_qs_array_forms(client, auth, form):
    a = create_department(client, auth.admin, name="a", description="full doc")
    b = create_department(client, auth.admin, name="b")
    create_department(client, auth.admin, name="c")
    response = client.get(f"{LIST_BY_IDS}?{form.format(a=a['_id'], b=b['_id'])}", headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True
    departments = {d["_id"]: d for d in response.json["departments"]}
    assert set(departments) == {a["_id"], b["_id"]}
    assert departments[a["_id"]]["description"] == "full doc"  # full documents


def test_list_by_ids_skips_unknown_ids_and_does_not_filter_archived(client, auth):
    archived = create_department(client, auth.admin, name="archived")
    assert client.post(url(archived["_id"], "/archive"), headers=auth.admin).status_code == 200
    response = client.get(f"{LIST_BY_IDS}?ids[]={archived['_id']}&ids[]=unknown", headers=auth.admin)
    assert response.status_code == 200
    assert [d["_id"] for d in response.json["departments"]] == [archived["_id"]]


# ---------------------------------------------------------------------------
# GET livechat/department/:_id/agents (§5 #45–#48, §2.10)
# ---------------------------------------------------------------------------


def test_45_department_agents_are_forbidden_without_either_view_permission(client, auth):
    remove_view_permissions(client, auth.admin)
    response = client.get(url("test", "/agents"), headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_46_agents_of_unknown_department_is_an_empty_list(client, auth):
    set_permission(client, auth.admin, "view-livechat-departments", ["admin"])
    set_permission(client, auth.admin, "view-l-room", ["admin", "livechat-agent"])
    response = client.get(url("test", "/agents"), headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True
    assert response.json["agents"] == [] and response.json["total"] == 0


def test_47_agents_of_department_without_agents_is_an_empty_list(client, auth):
    created = create_department(client, auth.admin)
    response = client.get(url(created["_id"], "/agents"), headers=auth.admin)
    assert response.status_code == 200
    assert response.json["agents"] == [] and response.json["total"] == 0


def test_48_agents_of_department_list_its_links(client, auth):
    response = client.post(f"{API}/livechat/users/agent", json={"username": "admin"}, headers=auth.admin)
    assert response.status_code == 200
    agent_id = response.json["user"]["_id"]
    created = create_department(client, auth.admin, agents=[{"agentId": agent_id}])
    response = client.get(url(created["_id"], "/agents"), headers=auth.admin)
    assert response.status_code == 200
    agents = response.json["agents"]
    assert len(agents) == 1
    assert agents[0]["_id"]
    assert agents[0]["departmentId"] == created["_id"]
    assert agents[0]["departmentEnabled"] is True
    assert agents[0]["agentId"] == agent_id and agents[0]["username"] == "admin"
    assert response.json["count"] == 1


# ---------------------------------------------------------------------------
# POST livechat/department/:_id/agents (§5 #49–#53, §2.11, §1.3–§1.4)
# ---------------------------------------------------------------------------


def test_49_saving_department_agents_is_forbidden_without_permissions(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    set_permission(client, auth.admin, "add-livechat-department-agents", [])
    response = client.post(url("test", "/agents"), headers=auth.admin)  # no body: no ajv here, so 403 first
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_50_saving_agents_of_unknown_department(client, auth):
    response = client.post(url("test", "/agents"), json={"upsert": [], "remove": []}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {
        "success": False,
        "error": "Department not found [error-department-not-found]",
        "errorType": "error-department-not-found",
    }


def test_51_saving_agents_without_body(client, auth):
    created = create_department(client, auth.admin)
    response = client.post(url(created["_id"], "/agents"), headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Missing key 'upsert'"}


def test_52_saving_agents_with_item_without_agent_id(client, auth):
    created = create_department(client, auth.admin)
    response = client.post(url(created["_id"], "/agents"), json={"upsert": [{}], "remove": []}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "Match error: Missing key 'agentId' in field upsert[0]"}


def test_53_saving_agents_links_the_agent(client, auth):
    agent = make_agent(client, auth, "new.agent")
    created = create_department(client, auth.admin)
    body = {"upsert": [{"agentId": agent["_id"], "username": "new.agent"}], "remove": []}
    response = client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"success": True}
    assert [link["agentId"] for link in links_of(client, auth.admin, created["_id"])] == [agent["_id"]]
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 1


@pytest.mark.parametrize(
    "body, error",
    [
        ({"upsert": []}, "Match error: Missing key 'remove'"),
        ({"upsert": "x", "remove": []}, "Match error: Expected Array in field upsert"),
        ({"upsert": [], "remove": [], "foo": 1}, "Match error: Unknown key in field foo"),
    ],
)
def test_saving_agents_body_errors(client, auth, body, error):
    created = create_department(client, auth.admin)
    response = client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": error}


@pytest.mark.parametrize("item", [{"count": 1.5}, {"order": 1.5}, {"count": -1}, {"order": -1}, {"count": "5"}])
def test_saving_agents_with_bad_count_or_order_is_refused(client, auth, item):
    # §2.11 Match.Integer; docs/compatibility.md §D.13: count/order must be integers >= 0.
    agent = auth.create_user("an.agent")
    created = create_department(client, auth.admin)
    body = {"upsert": [{"agentId": agent["_id"], **item}], "remove": []}
    response = client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin)
    assert response.status_code == 400
    assert response.json["success"] is False
    assert links_of(client, auth.admin, created["_id"]) == []


def test_num_agents_follows_upserts_and_removals(client, auth):
    # §1.4: removals first, then upserts; numAgents = number of links.
    a, b, c = (auth.create_user(name) for name in ("agent.a", "agent.b", "agent.c"))
    created = create_department(client, auth.admin, agents=[{"agentId": a["_id"]}, {"agentId": b["_id"]}])
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 2
    body = {"upsert": [{"agentId": c["_id"]}], "remove": [{"agentId": a["_id"]}, {"agentId": "never-linked"}]}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 2
    assert sorted(link["agentId"] for link in links_of(client, auth.admin, created["_id"])) == sorted([b["_id"], c["_id"]])
    body = {"upsert": [], "remove": [{"agentId": b["_id"]}, {"agentId": c["_id"]}]}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 0


def test_removing_then_upserting_the_same_agent_keeps_the_link(client, auth):
    # §1.4: removals run first, so an agent in both lists ends up linked.
    a = auth.create_user("agent.a")
    created = create_department(client, auth.admin, agents=[{"agentId": a["_id"]}])
    body = {"upsert": [{"agentId": a["_id"]}], "remove": [{"agentId": a["_id"]}]}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    assert [link["agentId"] for link in links_of(client, auth.admin, created["_id"])] == [a["_id"]]
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 1


def test_links_copy_username_from_the_user_and_count_order_default_to_zero(client, auth):
    # §1.3: username from the user record; count/order = request value or 0 on every upsert.
    a = auth.create_user("true.name")
    created = create_department(client, auth.admin)
    body = {"upsert": [{"agentId": a["_id"], "username": "fake", "count": 4, "order": 2}], "remove": []}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    [link] = links_of(client, auth.admin, created["_id"])
    assert (link["username"], link["count"], link["order"]) == ("true.name", 4, 2)
    assert RC_DATE.match(link["_updatedAt"])
    body = {"upsert": [{"agentId": a["_id"]}], "remove": []}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    [again] = links_of(client, auth.admin, created["_id"])
    assert (again["_id"], again["count"], again["order"]) == (link["_id"], 0, 0)


def test_unknown_agent_ids_are_skipped_when_saving_agents(client, auth):
    created = create_department(client, auth.admin)
    body = {"upsert": [{"agentId": "no-such-user"}], "remove": []}
    response = client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin)
    assert response.status_code == 200
    assert links_of(client, auth.admin, created["_id"]) == []


def test_removing_the_agent_role_unlinks_the_agent_and_fixes_num_agents(client, auth):
    # §1.4 / §4.5: DELETE livechat/users/agent/:_id runs the afterAgentRemoved clean-up.
    a, b = make_agent(client, auth, "agent.a"), make_agent(client, auth, "agent.b")
    both = create_department(client, auth.admin, name="both", agents=[{"agentId": a["_id"]}, {"agentId": b["_id"]}])
    only_a = create_department(client, auth.admin, name="only a", agents=[{"agentId": a["_id"]}])
    response = client.delete(f"{API}/livechat/users/agent/{a['_id']}", headers=auth.admin)
    assert response.status_code == 200 and response.json == {"success": True}
    assert get_department(client, auth.admin, both["_id"])["department"]["numAgents"] == 1
    assert [link["agentId"] for link in links_of(client, auth.admin, both["_id"])] == [b["_id"]]
    assert get_department(client, auth.admin, only_a["_id"])["department"]["numAgents"] == 0
    assert links_of(client, auth.admin, only_a["_id"]) == []
    assert client.get(f"{API}/livechat/agents/{a['_id']}/departments", headers=auth.admin).json["departments"] == []


# ---------------------------------------------------------------------------
# Archiving (§5 #54–#59, §2.6–§2.8, §1.5–§1.6)
# ---------------------------------------------------------------------------


def test_54_archive_without_credentials(client):
    response = client.post(url("123", "/archive"))
    assert response.status_code == 401
    assert response.json == UNAUTHORIZED_BODY


def test_55_archive_is_forbidden_without_manage_livechat_departments(client, auth):
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    response = client.post(url("123", "/archive"), headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_56_archive_unknown_department(client, auth):
    response = client.post(url("123", "/archive"), headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "department-not-found"}


def test_57_archive_disables_the_department_and_its_links(client, auth):
    agent = auth.create_user("linked")
    created = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}])
    response = client.post(url(created["_id"], "/archive"), headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"success": True}
    department = get_department(client, auth.admin, created["_id"])["department"]
    assert department["archived"] is True and department["enabled"] is False  # §1.6
    assert [link["departmentEnabled"] for link in links_of(client, auth.admin, created["_id"])] == [False]
    again = client.post(url(created["_id"], "/archive"), headers=auth.admin)  # archiving twice: 200, no-op
    assert again.status_code == 200 and again.json == {"success": True}


def test_58_archived_list_holds_the_archived_department(client, auth):
    created = create_department(client, auth.admin, name="to archive")
    create_department(client, auth.admin, name="stays")
    assert client.post(url(created["_id"], "/archive"), headers=auth.admin).status_code == 200
    response = client.get(ARCHIVED, headers=auth.admin)
    assert response.status_code == 200
    assert response.json["success"] is True
    departments = response.json["departments"]
    assert isinstance(departments, list) and len(departments) == 1
    assert departments[0]["_id"] == created["_id"]


def test_59_unarchive_keeps_the_department_disabled_but_enables_its_links(client, auth):
    agent = auth.create_user("linked")
    created = create_department(client, auth.admin, agents=[{"agentId": agent["_id"]}])
    assert client.post(url(created["_id"], "/archive"), headers=auth.admin).status_code == 200
    response = client.post(url(created["_id"], "/unarchive"), headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"success": True}
    department = get_department(client, auth.admin, created["_id"])["department"]
    assert department["archived"] is False
    assert department["enabled"] is False  # §1.6: enabled is not restored
    assert [link["departmentEnabled"] for link in links_of(client, auth.admin, created["_id"])] == [True]
    assert client.get(ARCHIVED, headers=auth.admin).json["departments"] == []
    assert [d["_id"] for d in client.get(LIST, headers=auth.admin).json["departments"]] == [created["_id"]]


def test_unarchive_unknown_department(client, auth):
    response = client.post(url("123", "/unarchive"), headers=auth.admin)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": "[department-not-found]", "errorType": "department-not-found"}


def test_unarchive_is_forbidden_without_manage_livechat_departments(client, auth):
    created = create_department(client, auth.admin)
    set_permission(client, auth.admin, "manage-livechat-departments", [])
    response = client.post(url(created["_id"], "/unarchive"), headers=auth.admin)
    assert response.status_code == 403 and response.json == FORBIDDEN_BODY


def test_archived_department_cannot_be_enabled_but_can_be_edited(client, auth):
    created = create_department(client, auth.admin)
    assert client.post(url(created["_id"], "/archive"), headers=auth.admin).status_code == 200
    response = client.put(url(created["_id"]), json={"department": department_fields(enabled=True)}, headers=auth.admin)
    assert response.status_code == 400
    assert response.json == ARCHIVED_CANT_BE_ENABLED
    edited = client.put(
        url(created["_id"]), json={"department": department_fields(enabled=False, name="edited")}, headers=auth.admin
    )
    assert edited.status_code == 200, edited.json
    department = get_department(client, auth.admin, created["_id"])["department"]
    assert (department["name"], department["enabled"], department["archived"]) == ("edited", False, True)


def test_department_enabled_on_links_follows_the_department(client, auth):
    # §1.5: links copy `enabled` on upsert and follow every change of it.
    a, b = auth.create_user("agent.a"), auth.create_user("agent.b")
    created = create_department(client, auth.admin, enabled=True, agents=[{"agentId": a["_id"]}])

    def flags() -> dict[str, bool]:
        return {link["username"]: link["departmentEnabled"] for link in links_of(client, auth.admin, created["_id"])}

    assert flags() == {"agent.a": True}
    assert client.put(url(created["_id"]), json={"department": {"enabled": False}}, headers=auth.admin).status_code == 200
    assert flags() == {"agent.a": False}
    body = {"upsert": [{"agentId": b["_id"]}], "remove": []}
    assert client.post(url(created["_id"], "/agents"), json=body, headers=auth.admin).status_code == 200
    assert flags() == {"agent.a": False, "agent.b": False}  # a new link copies the stored value
    assert client.put(url(created["_id"]), json={"department": {"enabled": True}}, headers=auth.admin).status_code == 200
    assert flags() == {"agent.a": True, "agent.b": True}
    assert client.post(url(created["_id"], "/archive"), headers=auth.admin).status_code == 200
    assert flags() == {"agent.a": False, "agent.b": False}
    assert client.post(url(created["_id"], "/unarchive"), headers=auth.admin).status_code == 200
    assert flags() == {"agent.a": True, "agent.b": True}
    assert get_department(client, auth.admin, created["_id"])["department"]["enabled"] is False
    # once unarchived, it may be enabled again
    assert client.put(url(created["_id"]), json={"department": {"enabled": True}}, headers=auth.admin).status_code == 200
    assert get_department(client, auth.admin, created["_id"])["department"]["enabled"] is True


def test_created_disabled_department_has_disabled_links(client, auth):
    a = auth.create_user("agent.a")
    response = client.post(
        LIST, json={"department": department_fields(enabled=False), "agents": [{"agentId": a["_id"]}]}, headers=auth.admin
    )
    assert response.status_code == 200
    assert [link["departmentEnabled"] for link in response.json["agents"]] == [False]


# ---------------------------------------------------------------------------
# GET livechat/agents/:agentId/departments (§5 #61–#64, §4.6)
# ---------------------------------------------------------------------------


def test_61_agent_departments_are_forbidden_without_view_l_room(client, auth):
    set_permission(client, auth.admin, "view-l-room", [])
    response = client.get(f"{API}/livechat/agents/whatever/departments", headers=auth.admin)
    assert response.status_code == 403
    assert response.json == FORBIDDEN_BODY


def test_62_departments_of_unknown_agent_is_an_empty_list(client, auth):
    response = client.get(f"{API}/livechat/agents/invalid-id/departments", headers=auth.admin)
    assert response.status_code == 200
    assert response.json == {"departments": [], "success": True}


def test_63_departments_of_an_agent_in_two_departments(client, auth):
    agent = make_agent(client, auth, "two.deps")
    create_department(client, auth.admin, name="enabled dep", agents=[{"agentId": agent["_id"]}])
    create_department(client, auth.admin, name="disabled dep", enabled=False, agents=[{"agentId": agent["_id"]}])
    response = client.get(f"{API}/livechat/agents/{agent['_id']}/departments", headers=auth.admin)
    assert response.status_code == 200
    departments = response.json["departments"]
    assert len(departments) == 2
    assert all(item["agentId"] == agent["_id"] for item in departments)
    assert all(isinstance(item["departmentName"], str) for item in departments)
    assert sorted(item["departmentName"] for item in departments) == ["disabled dep", "enabled dep"]


def test_64_enabled_departments_only(client, auth):
    agent = make_agent(client, auth, "two.deps")
    enabled = create_department(client, auth.admin, name="enabled dep", agents=[{"agentId": agent["_id"]}])
    create_department(client, auth.admin, name="disabled dep", enabled=False, agents=[{"agentId": agent["_id"]}])
    response = client.get(
        f"{API}/livechat/agents/{agent['_id']}/departments",
        query_string={"enabledDepartmentsOnly": "true"},
        headers=auth.admin,
    )
    assert response.status_code == 200
    departments = response.json["departments"]
    assert len(departments) == 1
    assert departments[0]["departmentEnabled"] is True
    assert departments[0]["departmentId"] == enabled["_id"]


def test_deleting_a_user_unlinks_them_and_fixes_num_agents(client, auth):
    # numAgents is the number of links (docs/compatibility.md §D.5, §1.4), also after users.delete (§4.4).
    a, b = auth.create_user("agent.a"), auth.create_user("agent.b")
    created = create_department(client, auth.admin, agents=[{"agentId": a["_id"]}, {"agentId": b["_id"]}])
    assert get_department(client, auth.admin, created["_id"])["department"]["numAgents"] == 2  # read (and cached) first
    response = client.post(f"{API}/users.delete", json={"userId": a["_id"]}, headers=auth.admin)
    assert response.status_code == 200, response.json
    after = get_department(client, auth.admin, created["_id"])
    assert after["department"]["numAgents"] == 1
    assert [link["agentId"] for link in after["agents"]] == [b["_id"]]


def test_get_one_unknown_id_without_view_livechat_departments_has_no_agents_key(client, auth):
    headers = auth.user_headers("room.viewer", ["livechat-agent"])
    response = client.get(url("unknown-id"), headers=headers)
    assert response.status_code == 200
    assert response.json == {"department": None, "success": True}


def test_autocomplete_only_my_departments_for_an_agent(client, auth):
    # docs/compatibility.md §D.17: onlyMyDepartments=true means "departments I am an agent of" without view-livechat-departments.
    agent = make_agent(client, auth, "auto.agent")
    mine = create_department(client, auth.admin, name="mine", agents=[{"agentId": agent["_id"]}])
    create_department(client, auth.admin, name="other")
    headers = auth.login("auto.agent", "pass-word-1")
    items = autocomplete(client, headers, "{}", onlyMyDepartments="true").json["items"]
    assert items == [{"_id": mine["_id"], "name": "mine"}]
    assert len(autocomplete(client, headers, "{}").json["items"]) == 2


def test_department_unit_is_accepted_and_ignored(client, auth):
    # docs/compatibility.md §D.17 "Not in scope": `departmentUnit` is accepted and ignored.
    response = client.post(
        LIST, json={"department": department_fields(), "departmentUnit": {"_id": "some-unit"}}, headers=auth.admin
    )
    assert response.status_code == 200, response.json
    department_id = response.json["department"]["_id"]
    for unit in ({}, {"_id": "other-unit"}):
        put = client.put(url(department_id), json={"department": {"name": "x"}, "departmentUnit": unit}, headers=auth.admin)
        assert put.status_code == 200, put.json
    assert "parentId" not in get_department(client, auth.admin, department_id)["department"]


# ---------------------------------------------------------------------------
# Hostile input is answered with a JSON 2xx/4xx, never a 500 (docs/compatibility.md §D.14)
# ---------------------------------------------------------------------------


def test_name_with_a_nul_character_is_stored_or_refused_never_a_server_error(client, auth):
    response = client.post(LIST, json={"department": department_fields(name="a\x00b")}, headers=auth.admin)
    assert response.status_code in (200, 400), response.json
    assert response.headers["Content-Type"] == "application/json"
    if response.status_code == 200:
        assert get_department(client, auth.admin, response.json["department"]["_id"])["department"]["name"] == "a\x00b"
    else:
        assert client.get(LIST, headers=auth.admin).json["total"] == 0


@pytest.mark.parametrize(
    "path, query",
    [
        ("/livechat/department", {"text": "a\x00b"}),
        ("/livechat/departments/archived", {"text": "a\x00b"}),
        ("/livechat/department/a\x00b", {}),
        ("/livechat/department/a\x00b/agents", {}),
        ("/livechat/department.autocomplete", {"selector": '{"term":"a\\u0000b"}'}),
        ("/livechat/agents/a\x00b/departments", {}),
    ],
)
def test_reads_with_a_nul_character_are_never_a_server_error(client, auth, path, query):
    create_department(client, auth.admin)
    response = client.get(API + path, query_string=query, headers=auth.admin)
    assert response.status_code in (200, 400), response.json
    assert response.headers["Content-Type"] == "application/json"
    assert response.json["success"] is (response.status_code == 200)
