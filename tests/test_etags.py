"""ETag, If-None-Match and If-Match on the department routes (docs/etags-and-idempotency.md),
in-process on both databases; tests/test_etags_gunicorn.py has the runs through real workers."""

from __future__ import annotations

from conftest import API, create_department, raw_connection

ONE = f"{API}/livechat/department/{{}}"


def etag_of(client, url, headers):
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.json
    return response.headers["ETag"]


def test_a_read_answers_304_to_its_own_etag_and_200_after_a_change(client, auth):
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    first = client.get(url, headers=auth.admin)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = client.get(url, headers={**auth.admin, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    weak_and_listed = client.get(url, headers={**auth.admin, "If-None-Match": f'"other", W/{etag}'})
    assert weak_and_listed.status_code == 304

    assert client.put(url, json={"department": {"name": "Sales 2"}}, headers=auth.admin).status_code == 200
    changed = client.get(url, headers={**auth.admin, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json["department"]["name"] == "Sales 2"
    assert changed.headers["ETag"] != etag


def test_each_representation_has_its_own_etag(client, auth):
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    tags = {
        etag_of(client, url, auth.admin),
        etag_of(client, url + "?includeAgents=false", auth.admin),
        etag_of(client, url + "/agents", auth.admin),
        etag_of(client, f"{API}/livechat/department", auth.admin),
        etag_of(client, f"{API}/livechat/departments/archived", auth.admin),
    }
    assert len(tags) == 5
    # the same URL twice: the same tag (cached or not)
    assert etag_of(client, url, auth.admin) == etag_of(client, url + "?includeAgents=true", auth.admin)


def test_the_list_etag_covers_the_whole_page_and_its_total(client, auth):
    create_department(client, auth.admin, name="A")
    page = f"{API}/livechat/department?count=1&sort=" + '{"name":1}'
    before = etag_of(client, page, auth.admin)
    create_department(client, auth.admin, name="Z")  # not on the page, but the total moves
    response = client.get(page, headers={**auth.admin, "If-None-Match": before})
    assert response.status_code == 200
    assert response.json["total"] == 2


def test_the_etag_changes_after_an_agent_loses_its_role_elsewhere(client, auth):
    agent = auth.create_user("etag.agent", roles=["livechat-agent"])
    department = create_department(client, auth.admin, name="Sales", agents=[{"agentId": agent["_id"]}])
    url = ONE.format(department["_id"])
    etags = {path: etag_of(client, path, auth.admin) for path in (url, url + "/agents")}

    removed = client.delete(f"{API}/livechat/users/agent/{agent['_id']}", headers=auth.admin)
    assert removed.status_code == 200, removed.json
    for path, etag in etags.items():
        response = client.get(path, headers={**auth.admin, "If-None-Match": etag})
        assert response.status_code == 200, path
        assert response.headers["ETag"] != etag


def test_a_hand_edit_changes_the_etag(client, auth, database_url):
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    etag = etag_of(client, url, auth.admin)
    connection = raw_connection(database_url)
    try:
        connection.execute("UPDATE departments SET description = 'by hand' WHERE id = '%s'" % department["_id"])
        connection.commit()
    finally:
        connection.close()
    response = client.get(url, headers={**auth.admin, "If-None-Match": etag})
    assert response.status_code == 200
    assert response.json["department"]["description"] == "by hand"


def test_if_match_lets_the_current_etag_through_and_refuses_a_stale_one(client, auth):
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    etag = etag_of(client, url, auth.admin)
    first = client.put(url, json={"department": {"name": "First"}}, headers={**auth.admin, "If-Match": etag})
    assert first.status_code == 200, first.json

    second = client.put(url, json={"department": {"name": "Second"}}, headers={**auth.admin, "If-Match": etag})
    assert second.status_code == 412
    assert second.json["success"] is False
    assert second.json["error"] == "error-precondition-failed"
    assert second.headers["ETag"] == etag_of(client, url, auth.admin)
    assert client.get(url, headers=auth.admin).json["department"]["name"] == "First"

    # the tag of the representation without agents is the department's too; `*` matches any
    without_agents = etag_of(client, url + "?includeAgents=false", auth.admin)
    assert client.post(f"{url}/archive", headers={**auth.admin, "If-Match": without_agents}).status_code == 200
    assert client.post(f"{url}/unarchive", headers={**auth.admin, "If-Match": "*"}).status_code == 200
    # a weak tag never matches (strong comparison)
    weak = "W/" + etag_of(client, url, auth.admin)
    assert client.post(f"{url}/archive", headers={**auth.admin, "If-Match": weak}).status_code == 412


def test_adding_agents_also_accepts_the_etag_of_the_agent_list_it_was_read_from(client, auth):
    agent = auth.create_user("agent.listed", ["livechat-agent"])
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    listed = etag_of(client, f"{url}/agents", auth.admin)
    paged = etag_of(client, f"{url}/agents?offset=1", auth.admin)  # another page: not the list's tag
    add = {"upsert": [{"agentId": agent["_id"]}], "remove": []}

    assert client.post(f"{url}/agents", json=add, headers={**auth.admin, "If-Match": paged}).status_code == 412
    first = client.post(f"{url}/agents", json=add, headers={**auth.admin, "If-Match": listed})
    assert first.status_code == 200, first.json
    assert etag_of(client, f"{url}/agents", auth.admin) != listed
    again = client.post(f"{url}/agents", json={"upsert": [], "remove": [{"agentId": agent["_id"]}]},
                        headers={**auth.admin, "If-Match": listed})
    assert again.status_code == 412  # the list changed since that tag was read
    assert client.get(f"{url}/agents", headers=auth.admin).json["total"] == 1
    # the department's other write routes take only the department's own tags
    current = etag_of(client, f"{url}/agents", auth.admin)
    assert client.post(f"{url}/archive", headers={**auth.admin, "If-Match": current}).status_code == 412


def test_every_write_route_checks_if_match(client, auth):
    department = create_department(client, auth.admin, name="Sales")
    url = ONE.format(department["_id"])
    stale = {**auth.admin, "If-Match": '"stale"'}
    before = client.get(url, headers=auth.admin).json
    assert client.put(url, json={"department": {"name": "X"}}, headers=stale).status_code == 412
    assert client.post(f"{url}/agents", json={"upsert": [], "remove": []}, headers=stale).status_code == 412
    assert client.post(f"{url}/archive", headers=stale).status_code == 412
    assert client.post(f"{url}/unarchive", headers=stale).status_code == 412
    assert client.delete(url, headers=stale).status_code == 412
    assert client.get(url, headers=auth.admin).json == before


def test_without_if_match_nothing_changes_unless_the_setting_requires_it(make_app):
    from conftest import Auth

    for required, expected in ((False, 200), (True, 428)):
        app = make_app(REQUIRE_IF_MATCH=required)
        client = app.test_client()
        auth = Auth(client)
        department = create_department(client, auth.admin, name=f"Sales {required}")
        url = ONE.format(department["_id"])
        response = client.put(url, json={"department": {"name": "Changed"}}, headers=auth.admin)
        assert response.status_code == expected, response.json
        if required:
            assert response.json["error"] == "error-precondition-required"
            etag = etag_of(client, url, auth.admin)
            with_tag = client.put(url, json={"department": {"name": "Changed"}}, headers={**auth.admin, "If-Match": etag})
            assert with_tag.status_code == 200
            assert client.post(f"{url}/archive", headers=auth.admin).status_code == 428
        # creating is not a conditional request: no If-Match needed
        create_department(client, auth.admin, name=f"Other {required}")
