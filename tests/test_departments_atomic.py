"""Writes are atomic (docs/compatibility.md §D.6 "Writes are atomic"): a request with one bad agent item is
answered 400 and changes NOTHING, the department included.

This deliberately differs from Rocket.Chat, which writes the department before it validates the
agents and leaves a half-applied change (docs/compatibility.md §2.2, §2.4, §7 #14). The proof is a dump of
every row of every table, taken straight from the engine before and after the request.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from conftest import API, create_department, department_fields

LIST = f"{API}/livechat/department"

# Agent lists whose FIRST item is valid and whose second is not, so a non-atomic service
# would already have written something when it notices. (No string-typed values: POST's ajv
# would coerce "1" to 1 and 12 to "12", docs/compatibility.md §2.2.)
BAD_AGENT_LISTS = {
    "count-1.5": lambda good, other: [{"agentId": good}, {"agentId": other, "count": 1.5}],
    "count-minus-1": lambda good, other: [{"agentId": good}, {"agentId": other, "count": -1}],
    "order-minus-1": lambda good, other: [{"agentId": good}, {"agentId": other, "order": -1}],
    "missing-agentId": lambda good, other: [{"agentId": good}, {"count": 0}],
}


def dump(app) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database (reflected, so no table is forgotten)."""
    engine = app.extensions["db.engine"]
    metadata = sa.MetaData()
    metadata.reflect(bind=engine)
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(table.select().order_by(*table.primary_key.columns))]
            for name, table in sorted(metadata.tables.items())
        }


@pytest.fixture
def people(client, auth):
    """The admin's headers, and two users who can be linked as agents (created before any dump)."""
    headers = auth.admin
    good = auth.create_user("good.agent")
    other = auth.create_user("other.agent")
    return headers, good["_id"], other["_id"]


def assert_unchanged(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> None:
    assert set(before) == set(after)
    for table in before:
        assert after[table] == before[table], f"table {table} changed"
    assert repr(after) == repr(before)  # byte-for-byte, types included


def test_dump_sees_every_table_and_a_change(app, client, people):
    # The comparison can fail: a valid create does change the dump.
    headers, good, _other = people
    before = dump(app)
    assert {"departments", "department_agents", "users", "settings", "permissions"} <= set(before)
    create_department(client, headers, agents=[{"agentId": good}])
    after = dump(app)
    assert after["departments"] != before["departments"]
    assert after["department_agents"] != before["department_agents"]


@pytest.mark.parametrize("bad", BAD_AGENT_LISTS)
def test_create_with_a_bad_agent_item_changes_nothing(app, client, people, bad):
    headers, good, other = people
    create_department(client, headers, name="already there")  # a non-empty starting point
    before = dump(app)
    body = {"department": department_fields(name="half written?"), "agents": BAD_AGENT_LISTS[bad](good, other)}
    response = client.post(LIST, json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and isinstance(response.json["error"], str)
    assert_unchanged(before, dump(app))


@pytest.mark.parametrize("bad", BAD_AGENT_LISTS)
def test_update_with_a_bad_agent_item_changes_nothing(app, client, people, bad):
    headers, good, other = people
    # The department is enabled and `good` is linked with a non-zero count: a partial update would
    # rename it, flip `enabled` (and the links' departmentEnabled), and reset the count to 0.
    department = create_department(client, headers, name="original", agents=[{"agentId": good, "count": 3, "order": 2}])
    before = dump(app)
    body = {
        "department": department_fields(name="renamed", enabled=False, description="new"),
        "agents": BAD_AGENT_LISTS[bad](good, other),
    }
    response = client.put(f"{LIST}/{department['_id']}", json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and isinstance(response.json["error"], str)
    assert_unchanged(before, dump(app))


@pytest.mark.parametrize("bad", BAD_AGENT_LISTS)
def test_saving_department_agents_with_a_bad_item_changes_nothing(app, client, people, bad):
    headers, good, other = people
    third = client.post(
        f"{API}/users.create",
        json={"username": "third", "email": "third@example.com", "name": "third", "password": "pass-word-1"},
        headers=headers,
    ).json["user"]["_id"]
    department = create_department(client, headers, agents=[{"agentId": third, "count": 5}])
    before = dump(app)
    # removals run first in Rocket.Chat (§1.4): a non-atomic service would unlink `third` already.
    body = {"upsert": BAD_AGENT_LISTS[bad](good, other), "remove": [{"agentId": third}]}
    response = client.post(f"{LIST}/{department['_id']}/agents", json=body, headers=headers)
    assert response.status_code == 400, response.json
    assert response.json["success"] is False
    assert_unchanged(before, dump(app))
