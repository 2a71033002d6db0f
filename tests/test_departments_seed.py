"""The user's own API document (its examples, docs/compatibility.md §6.1), replayed literally.

docs/compatibility.md §D.2: "its examples must work exactly as written". The bodies below are the document's
text, byte for byte, with two substitutions we cannot avoid: the agent id "SQafHvoFPuB57NmBD"
becomes the id of the user we created (ids are the server's), and the department id
"iTfLCX3qqwKgf5uqg" becomes the id of the department the POST created. The curl's
X-Auth-Token / X-User-Id are replaced by a real admin login.

Each response is compared field by field with the documented result, ids and timestamps aside.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import API

DOC_AGENT_ID = "SQafHvoFPuB57NmBD"
DOC_DEPARTMENT_ID = "iTfLCX3qqwKgf5uqg"
RC_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# "Register a new department" — Example payload (note the duplicated "showOnRegistration" key: sent as is).
POST_PAYLOAD = (
    '{"department": {"enabled": false,"showOnRegistration": true,"email": "email@email.com",'
    '"showOnRegistration": true,"name": "new from api","description": "created from api"},'
    '"agents": [{"agentId": "SQafHvoFPuB57NmBD","username": "john.doe","count": 0,"order": 0}]}'
)
POST_RESULT = (
    '{"department": {"_id": "iTfLCX3qqwKgf5uqg","enabled": false,"name": "new from api","description": null,'
    '"numAgents": 1,"showOnRegistration": true,"_updatedAt": "2016-12-13T17:22:19.109Z"},'
    '"agents": [{"_id": "DDjZbhTF74n3NBuWK","agentId": "SQafHvoFPuB57NmBD","departmentId": "iTfLCX3qqwKgf5uqg",'
    '"username": "john.doe","count": 0,"order": 0,"_updatedAt": "2016-12-13T17:22:19.169Z"}],"success": true}'
)
# "Update a department" — Example payload.
PUT_PAYLOAD = (
    '{"department": {"enabled": true,"showOnRegistration": true,"name": "new from api - live"},'
    '"agents": [{"agentId": "SQafHvoFPuB57NmBD","username": "john.doe","count": 0,"order": 0}]}'
)
# "Update a department" — Example Call (the curl's -d body).
CURL_BODY = (
    '{"department": {"enabled": true, "name": "new from api - live", "showOnRegistration": true}, '
    '"agents": [{"agentId": "SQafHvoFPuB57NmBD", "username": "john.doe"}] }'
)
PUT_RESULT = (
    '{"department": {"_id": "iTfLCX3qqwKgf5uqg","enabled": true,"name": "new from api - live","description": null,'
    '"numAgents": 1,"showOnRegistration": true,"_updatedAt": "2016-12-13T17:30:02.643Z"},'
    '"agents": [{"_id": "DDjZbhTF74n3NBuWK","agentId": "SQafHvoFPuB57NmBD","departmentId": "iTfLCX3qqwKgf5uqg",'
    '"username": "john.doe","count": 0,"order": 0,"_updatedAt": "2016-12-13T17:30:02.656Z"}],"success": true}'
)
# "GET /api/v1/livechat/department (list; example result)"
LIST_RESULT = (
    '{"departments": [{"_id": "4swtja84kmn5WCdwL","enabled": true,"name": "My Department",'
    '"description": "I have no description for this department","numAgents": 1,"showOnRegistration": true,'
    '"_updatedAt": "2016-12-06T17:19:18.138Z"}],"success": true}'
)

IDS_AND_TIMES = {"_id", "agentId", "departmentId", "_updatedAt"}


def documented(text: str) -> dict[str, Any]:
    return json.loads(text)


def compare(actual: dict[str, Any], doc: dict[str, Any], *, skip: set[str] = frozenset()) -> None:
    """Every documented key is present in `actual` with the documented value (ids/timestamps aside)."""
    for key, value in doc.items():
        assert key in actual, f"missing {key!r}"
        if key in IDS_AND_TIMES:
            assert isinstance(actual[key], str) and actual[key], key
            if key == "_updatedAt":
                assert RC_DATE.match(actual[key]), actual[key]
        elif key not in skip:
            assert actual[key] == value, (key, actual[key], value)


@pytest.fixture
def john(client, auth) -> dict[str, Any]:
    """The document's agent john.doe; his id is the server's, not "SQafHvoFPuB57NmBD"."""
    user = auth.create_user("john.doe")
    response = client.post(f"{API}/livechat/users/agent", json={"username": "john.doe"}, headers=auth.admin)
    assert response.status_code == 200, response.json
    return user


def post_documented(client, auth, john) -> Any:
    return client.post(
        f"{API}/livechat/department",
        data=POST_PAYLOAD.replace(DOC_AGENT_ID, john["_id"]),
        headers={**auth.admin, "Content-Type": "application/json"},
    )


def test_documented_create_request_gives_the_documented_result(client, auth, john):
    response = post_documented(client, auth, john)
    assert response.status_code == 200, response.json
    assert response.headers["Content-Type"] == "application/json"
    body, doc = response.json, documented(POST_RESULT)
    assert body["success"] is True
    department, agents = body["department"], body["agents"]

    # The documented result shows `description: null` although the request sent "created from api":
    # those are old docs (Rocket.Chat stores exactly what was sent, docs/compatibility.md §1.1). We assert that our
    # value equals what was sent, not the documented null.
    compare(department, doc["department"], skip={"description"})
    assert department["description"] == "created from api"
    assert department["numAgents"] == 1  # current after the agents were written (docs/compatibility.md §D.5)
    # Sent but not shown by the document's result: kept as sent.
    assert department["email"] == "email@email.com"

    assert len(agents) == len(doc["agents"]) == 1
    compare(agents[0], doc["agents"][0])
    assert agents[0]["agentId"] == john["_id"]
    assert agents[0]["departmentId"] == department["_id"]
    # Our link items may also carry departmentEnabled (docs/compatibility.md §1.3); the department is disabled.
    assert set(agents[0]) - set(doc["agents"][0]) <= {"departmentEnabled"}
    assert agents[0].get("departmentEnabled", False) is False


@pytest.mark.parametrize("put_body", [PUT_PAYLOAD, CURL_BODY], ids=["example-payload", "curl-example-call"])
def test_documented_update_request_gives_the_documented_result(client, auth, john, put_body):
    created = post_documented(client, auth, john)
    assert created.status_code == 200, created.json
    department_id = created.json["department"]["_id"]
    link_id = created.json["agents"][0]["_id"]

    # curl -H "X-Auth-Token: …" -H "X-User-Id: …" -X PUT -H "Content-type:application/json" …/department/<id> -d '…'
    response = client.put(
        f"{API}/livechat/department/{DOC_DEPARTMENT_ID}".replace(DOC_DEPARTMENT_ID, department_id),
        data=put_body.replace(DOC_AGENT_ID, john["_id"]),
        headers={"X-Auth-Token": auth.admin["X-Auth-Token"], "X-User-Id": auth.admin["X-User-Id"],
                 "Content-type": "application/json"},
    )
    # docs/compatibility.md §D.4: PUT is a merge, so this body without email/showOnOfflineForm must succeed.
    assert response.status_code == 200, response.json
    assert response.headers["Content-Type"] == "application/json"
    body, doc = response.json, documented(PUT_RESULT)
    assert body["success"] is True
    department, agents = body["department"], body["agents"]

    assert department["_id"] == department_id
    # Old docs again show `description: null`; the PUT did not send a description, so the merge keeps
    # what the POST sent.
    compare(department, doc["department"], skip={"description"})
    assert department["description"] == "created from api"
    assert department["email"] == "email@email.com"  # kept: the PUT did not mention it
    assert department["_updatedAt"] >= created.json["department"]["_updatedAt"]

    assert len(agents) == len(doc["agents"]) == 1
    compare(agents[0], doc["agents"][0])
    # The document shows the same link _id ("DDjZbhTF74n3NBuWK") before and after: the link is upserted.
    assert agents[0]["_id"] == link_id
    assert (agents[0]["agentId"], agents[0]["departmentId"]) == (john["_id"], department_id)
    assert set(agents[0]) - set(doc["agents"][0]) <= {"departmentEnabled"}
    assert agents[0].get("departmentEnabled", True) is True  # the department is now enabled

    # And the stored department says the same.
    stored = client.get(f"{API}/livechat/department/{department_id}", headers=auth.admin).json["department"]
    assert stored == department


def test_the_two_documented_updates_in_sequence(client, auth, john):
    created = post_documented(client, auth, john)
    department_id = created.json["department"]["_id"]
    for body in (PUT_PAYLOAD, CURL_BODY):
        response = client.put(
            f"{API}/livechat/department/{department_id}",
            data=body.replace(DOC_AGENT_ID, john["_id"]),
            headers={**auth.admin, "Content-type": "application/json"},
        )
        assert response.status_code == 200, response.json
        assert response.json["department"]["numAgents"] == 1
        assert [a["username"] for a in response.json["agents"]] == ["john.doe"]


def test_documented_list_result_shape(client, auth, john):
    created = post_documented(client, auth, john)
    assert created.status_code == 200
    # Give it the documented list item's values (a description, enabled) through the documented PUT style.
    response = client.put(
        f"{API}/livechat/department/{created.json['department']['_id']}",
        json={"department": {"enabled": True, "name": "My Department",
                             "description": "I have no description for this department"}},
        headers=auth.admin,
    )
    assert response.status_code == 200, response.json
    listed = client.get(f"{API}/livechat/department", headers=auth.admin)
    assert listed.status_code == 200
    body, doc = listed.json, documented(LIST_RESULT)
    assert body["success"] is True
    assert len(body["departments"]) == len(doc["departments"]) == 1
    compare(body["departments"][0], doc["departments"][0])
    # 2.2.0 "Added support to pagination": the envelope also has count/offset/total (docs/compatibility.md §2.1).
    assert (body["count"], body["offset"], body["total"]) == (1, 0, 1)
