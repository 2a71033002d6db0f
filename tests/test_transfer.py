"""export / import and import-rocketchat (data_transfer.py): round trips, idempotence, atomicity,
and Rocket.Chat's mongoexport files (tests/fixtures/rocketchat/, written by hand in its shape)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import (
    ADMIN_PASSWORD,
    API,
    CHEAP_HASHING,
    DATA_TABLES,
    Auth,
    create_department,
    set_permission,
    set_setting,
)
from flask import Flask
from flask.testing import FlaskClient

import account_service
import data_transfer
import db
import rocketchat_import
from app import create_app

RC_FIXTURES = Path(__file__).parent / "fixtures" / "rocketchat"
RC_SUPPORT = "64181a0728384134ed600dcc"
RC_SALES = "iTfLCX3qqwKgf5uqg"
RC_UNIT = "6418198f28384134ed600db1"
RC_MARIA = "aobEdbYhXfu5hkeqG"
RC_MARIA_PASSWORD = "maria-rc-secret"  # users.json holds bcrypt(sha256(this)), as Rocket.Chat stores it


def table_dump(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every data table, in a stable order: equal dumps mean nothing changed."""
    dump = {}
    with app.extensions["db.engine"].connect() as conn:
        for table in DATA_TABLES:
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
            dump[table] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def build_sample(client: FlaskClient, auth: Auth) -> dict[str, str]:
    """Users with roles, departments with custom fields and agents, an archived one, one
    without agents, and a changed setting and permission."""
    admin = auth.admin
    agent1 = auth.create_user("agent1", roles=["livechat-agent"])
    agent2 = auth.create_user("agent2", roles=["livechat-agent", "user"])
    auth.create_user("manager", roles=["livechat-manager"])
    support = create_department(
        client, admin, name="Support", description="First line", maxNumberSimultaneousChat=3, priority="high",
        agents=[{"agentId": agent1["_id"], "count": 2, "order": 1}, {"agentId": agent2["_id"]}],
    )
    sales = create_department(client, admin, name="Sales", agents=[{"agentId": agent2["_id"]}])
    assert client.post(f"{API}/livechat/department/{sales['_id']}/archive", headers=admin).status_code == 200
    empty = create_department(client, admin, name="Empty", showOnOfflineForm=False)
    set_setting(client, admin, "Livechat_Routing_Method", "Manual_Selection")
    set_permission(client, admin, "remove-livechat-department", ["admin"])
    return {"support": support["_id"], "sales": sales["_id"], "empty": empty["_id"], "agent1": agent1["_id"]}


def api_snapshot(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    """What clients see: every list and every department, its agents, users, permissions, settings."""
    def get(path: str) -> Any:
        response = client.get(f"{API}/{path}", headers=headers)
        assert response.status_code == 200, (path, response.json)
        return response.json

    snapshot = {
        "departments": get("livechat/department?showArchived=true&count=0"),
        "archived": get("livechat/departments/archived?count=0"),
        "users": get("users.list?count=0"),
        "agents": get("livechat/users/agent?count=0"),
        "managers": get("livechat/users/manager?count=0"),
        "permissions": get("permissions.listAll"),
    }
    for department in snapshot["departments"]["departments"]:
        snapshot[department["_id"]] = get(f"livechat/department/{department['_id']}")
        snapshot[department["_id"] + "/agents"] = get(f"livechat/department/{department['_id']}/agents?count=0")
    for setting in ("Livechat_Routing_Method", "API_Default_Count", "DEPARTMENT_LIMIT"):
        snapshot[setting] = get(f"settings/{setting}")
    return snapshot


@contextmanager
def fresh_app(template: Any, directory: Path) -> Iterator[Flask]:
    """Another application on a freshly migrated database with its own admin, as on a new server.
    (On PostgreSQL the test schema is emptied and reseeded: dispose the first app before.)"""
    directory.mkdir()
    app = create_app(
        {"TESTING": True, "DATABASE_URL": template.fresh_url(directory), "ADMIN_PASS": ADMIN_PASSWORD, **CHEAP_HASHING}
    )
    with app.app_context(), app.extensions["db.sessionmaker"]() as session:
        account_service.bootstrap_admin(session, "admin", ADMIN_PASSWORD, "admin@example.com")
    try:
        yield app
    finally:
        db.dispose(app)


def export(runner: Any, path: Path, *options: str) -> dict[str, Any]:
    result = runner.invoke(args=["export", str(path), *options])
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


def invoke_import(runner: Any, path: Path) -> Any:
    return runner.invoke(args=["import", str(path)])


# ---------------------------------------------------------------------------
# export / import
# ---------------------------------------------------------------------------


def test_export_then_import_into_a_fresh_database_gives_identical_responses(app, client, auth, runner, template, tmp_path):
    build_sample(client, auth)
    before = api_snapshot(client, auth.admin)
    path = tmp_path / "export.json"
    document = export(runner, path, "--with-password-hashes")
    assert document["format"] == "livechat-departments" and document["version"] == 1
    db.dispose(app)

    with fresh_app(template, tmp_path / "fresh") as fresh:
        result = invoke_import(fresh.test_cli_runner(), path)
        assert result.exit_code == 0, result.output
        assert "departments: 3 new" in result.output
        # The new server's own admin gave way to the exported one (same username, other id).
        assert "local users replaced" in result.output
        fresh_client = fresh.test_client()
        after = api_snapshot(fresh_client, Auth(fresh_client).admin)
    assert after == before


def test_export_holds_every_column_custom_fields_and_roles_but_no_hashes_by_default(client, auth, runner, tmp_path):
    ids = build_sample(client, auth)
    document = export(runner, tmp_path / "export.json")
    departments = {row["id"]: row for row in document["departments"]}
    support, sales, empty = departments[ids["support"]], departments[ids["sales"]], departments[ids["empty"]]
    assert support["extra"] == {"maxNumberSimultaneousChat": 3, "priority": "high"}
    assert support["num_agents"] == 2 and sales["num_agents"] == 1 and empty["num_agents"] is None
    assert sales["archived"] is True and sales["enabled"] is False
    assert datetime.fromisoformat(support["updated_at"]).tzinfo is not None
    assert "name_folded" not in support
    users = {row["username"]: row for row in document["users"]}
    assert users["agent2"]["roles"] == ["livechat-agent", "user"]
    assert all("password_hash" not in row for row in document["users"])
    assert document["passwordHashes"] is False
    links = [row for row in document["department_agents"] if row["agent_id"] == ids["agent1"]]
    assert [(row["count"], row["order"]) for row in links] == [(2, 1)]
    assert {row["id"] for row in document["settings"]} >= {"Livechat_Routing_Method", "DEPARTMENT_LIMIT"}
    assert {"id": "remove-livechat-department", "roles": ["admin"]}.items() <= next(
        row for row in document["permissions"] if row["id"] == "remove-livechat-department"
    ).items()

    with_hashes = export(runner, tmp_path / "with.json", "--with-password-hashes")
    assert all(row["password_hash"].startswith("$argon2id$") for row in with_hashes["users"])


def test_export_to_stdout(client, auth, runner):
    build_sample(client, auth)
    result = runner.invoke(args=["export"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["departments"]) == 3
    assert "exported 3 departments" in result.stderr


def test_import_restores_exported_rows_and_twice_changes_nothing(app, client, auth, runner, tmp_path):
    ids = build_sample(client, auth)
    path = tmp_path / "export.json"
    export(runner, path, "--with-password-hashes")
    exported = table_dump(app)
    headers = auth.admin
    # Change things after the export: a rename, a removed agent link, a new department.
    support_url = f"{API}/livechat/department/{ids['support']}"
    response = client.put(support_url, json={"department": {"name": "Renamed"}}, headers=headers)
    assert response.status_code == 200, response.json
    response = client.post(f"{support_url}/agents", json={"upsert": [], "remove": [{"agentId": ids["agent1"]}]}, headers=headers)
    assert response.status_code == 200, response.json
    create_department(client, headers, name="Created later")

    first = invoke_import(runner, path)
    assert first.exit_code == 0, first.output
    assert "departments: 1 updated, 2 unchanged" in first.output
    assert "agent links: 1 new, 2 unchanged" in first.output
    support = client.get(f"{API}/livechat/department/{ids['support']}", headers=headers).json
    assert support["department"]["name"] == "Support" and support["department"]["numAgents"] == 2
    assert len(support["agents"]) == 2
    names = [d["name"] for d in client.get(f"{API}/livechat/department?count=0", headers=headers).json["departments"]]
    assert "Created later" in names  # an import adds and updates; it deletes nothing

    after_first = table_dump(app)
    second = invoke_import(runner, path)
    assert second.exit_code == 0, second.output
    assert table_dump(app) == after_first
    assert "departments: 3 unchanged" in second.output and "users: 4 unchanged" in second.output
    assert "new" not in second.output and "updated" not in second.output
    # The exported rows are back exactly as they were (tokens of this test's logins aside).
    for table in ("users", "user_roles", "permissions", "settings"):
        assert after_first[table] == exported[table]


def test_import_of_a_file_without_hashes_keeps_local_passwords(client, auth, runner, tmp_path):
    build_sample(client, auth)
    path = tmp_path / "export.json"
    export(runner, path)
    assert invoke_import(runner, path).exit_code == 0
    auth.login("agent1", "pass-word-1")
    auth.login("admin", ADMIN_PASSWORD)


def test_broken_import_changes_nothing(app, client, auth, runner, tmp_path):
    ids = build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    before = table_dump(app)

    def attempt(broken: dict[str, Any]) -> str:
        path.write_text(json.dumps(broken))
        result = invoke_import(runner, path)
        assert result.exit_code == 1, result.output
        assert table_dump(app) == before
        assert "Traceback" not in result.output
        return result.output

    # A link to a user that exists neither in the file nor here, beside valid changes.
    broken = json.loads(json.dumps(document))
    broken["departments"][0]["name"] = "Changed"
    broken["department_agents"].append({**broken["department_agents"][0], "id": "new-link", "agent_id": "nobody"})
    assert "unknown user 'nobody'" in attempt(broken)
    # A link to an unknown department.
    broken = json.loads(json.dumps(document))
    broken["department_agents"][0]["department_id"] = "no-such-department"
    assert "unknown department 'no-such-department'" in attempt(broken)
    # Wrong types, unknown fields, duplicate ids: each listed, nothing written.
    broken = json.loads(json.dumps(document))
    broken["departments"][0]["enabled"] = "yes"
    broken["departments"][1]["colour"] = "red"
    broken["users"].append(broken["users"][0])
    output = attempt(broken)
    assert "enabled must be true or false" in output and "unknown field(s) colour" in output
    assert "the id appears twice" in output
    # An unknown role.
    broken = json.loads(json.dumps(document))
    broken["users"][0]["roles"] = ["wizard"]
    assert "unknown role(s) wizard" in attempt(broken)
    # Not an export, another version, not JSON.
    assert "not an export of this service" in attempt({"departments": []})
    assert "unsupported export format version 99" in attempt({**document, "version": 99})
    path.write_text("{not json")
    result = invoke_import(runner, path)
    assert result.exit_code == 1 and "is not valid JSON" in result.output
    assert table_dump(app) == before
    assert ids  # the sample exists


def test_import_failing_in_the_database_half_way_changes_nothing(app, client, auth, runner, tmp_path):
    """Passes validation, writes settings, then trips the unique index on usernames: all rolled back."""
    build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    before = table_dump(app)
    users = {row["username"]: row for row in document["users"]}
    users["agent1"]["username"], users["agent2"]["username"] = "agent2", "agent1"  # a swap
    routing = next(row for row in document["settings"] if row["id"] == "Livechat_Routing_Method")
    routing["value"] = "External"
    path.write_text(json.dumps(document))
    result = invoke_import(runner, path)
    assert result.exit_code == 1, result.output
    assert "the database refused the import, nothing was changed" in result.output
    assert table_dump(app) == before


def test_import_dry_run_reports_and_writes_nothing(app, client, auth, runner, tmp_path):
    build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    document["departments"][0]["name"] = "Changed"
    path.write_text(json.dumps(document))
    before = table_dump(app)
    result = runner.invoke(args=["import", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "departments: 1 updated, 2 unchanged" in result.output and "dry run: nothing was written" in result.output
    assert table_dump(app) == before


def test_import_recomputes_num_agents_from_the_links(client, auth, runner, tmp_path):
    ids = build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    support = next(row for row in document["departments"] if row["id"] == ids["support"])
    support["num_agents"] = 40
    path.write_text(json.dumps(document))
    result = invoke_import(runner, path)
    assert result.exit_code == 0, result.output
    assert "numAgents of the input differs from their links" in result.output
    body = client.get(f"{API}/livechat/department/{ids['support']}", headers=auth.admin).json
    assert body["department"]["numAgents"] == 2


# ---------------------------------------------------------------------------
# Rocket.Chat (mongoexport) import
# ---------------------------------------------------------------------------


def import_rc(runner: Any, directory: Path = RC_FIXTURES) -> Any:
    return runner.invoke(args=["import-rocketchat", str(directory)])


def password_hash(app: Flask, username: str) -> str:
    with app.extensions["db.engine"].connect() as conn:
        return conn.execute(sa.text("SELECT password_hash FROM users WHERE username = :u"), {"u": username}).scalar_one()


def test_rocketchat_import_keeps_ids_fields_and_links(client, auth, runner):
    result = import_rc(runner)
    assert result.exit_code == 0, result.output
    headers = auth.admin
    body = client.get(f"{API}/livechat/department/{RC_SUPPORT}", headers=headers).json
    department = body["department"]
    assert department["_id"] == RC_SUPPORT and department["name"] == "Support"
    assert department["_updatedAt"] == "2023-10-13T13:03:58.406Z"
    assert department["numAgents"] == 2 and department["type"] == "d"
    assert department["chatClosingTags"] == ["solved", "escalated"] and department["fallbackForwardDepartment"] == ""
    # Custom (primitive) fields are kept; arrays and dates that are not ours are skipped.
    assert department["maxNumberSimultaneousChat"] == 3 and department["priority"] == "high"
    assert department["parentId"] == RC_UNIT and "ancestors" not in department and "_createdAt" not in department
    agents = {agent["agentId"]: agent for agent in body["agents"]}
    assert agents[RC_MARIA]["_id"] == "6418200a28384134ed600e01"
    assert (agents[RC_MARIA]["count"], agents[RC_MARIA]["order"], agents[RC_MARIA]["username"]) == (5, 1, "maria.agent")

    archived = client.get(f"{API}/livechat/departments/archived", headers=headers).json["departments"]
    assert [(d["_id"], d["numAgents"], d["_updatedAt"]) for d in archived] == [
        (RC_SALES, 1, "2016-12-13T17:22:19.109Z")  # {"$date": {"$numberLong": …}}; the ghost's link skipped
    ]
    assert "description" not in archived[0]  # null in Rocket.Chat: absent here

    # Units are not departments here: skipped and reported.
    assert client.get(f"{API}/livechat/department/{RC_UNIT}", headers=headers).json["department"] is None
    assert 'units (type "u") skipped' in result.output and "'North unit'" in result.output
    assert "field 'ancestors' (list)" in result.output
    assert "agent links skipped: unknown user (1): qh7Jb8ZsvTYwiCw3s" in result.output
    assert "departments: 2 new, 1 skipped" in result.output and "agent links: 3 new, 1 skipped" in result.output


def test_rocketchat_import_maps_users_and_keeps_only_known_roles(client, auth, runner):
    result = import_rc(runner)
    assert result.exit_code == 0, result.output
    users = {
        u["username"]: u for u in client.get(f"{API}/users.list?count=0", headers=auth.admin).json["users"]
    }
    maria, joao, cat = users["maria.agent"], users["joao.manager"], users["rocket.cat"]
    assert maria["_id"] == RC_MARIA and maria["emails"] == [{"address": "maria@example.com", "verified": True}]
    assert maria["roles"] == ["livechat-agent", "user"] and maria["statusLivechat"] == "available"
    assert maria["createdAt"] == "2020-01-02T03:04:05.678Z"
    assert joao["name"] == "João Manager" and joao["roles"] == ["livechat-manager", "user"]
    assert joao["createdAt"] == "2020-09-13T12:26:40.000Z"  # {"$date": {"$numberLong": "1600000000000"}}
    assert cat["_id"] == "rocket.cat" and cat["roles"] == [] and "emails" not in cat
    assert "role 'custom-role' does not exist here, dropped (1): joao.manager" in result.output
    assert "role 'bot' does not exist here, dropped (1): rocket.cat" in result.output


def test_rocketchat_user_logs_in_with_the_original_password_then_has_argon2id(app, client, runner):
    assert import_rc(runner).exit_code == 0
    stored = password_hash(app, "maria.agent")
    assert stored.startswith("rcbcrypt$$2b$10$")
    assert client.post(f"{API}/login", json={"user": "maria.agent", "password": "wrong"}).status_code == 401
    assert password_hash(app, "maria.agent") == stored

    response = client.post(f"{API}/login", json={"user": "maria.agent", "password": RC_MARIA_PASSWORD})
    assert response.status_code == 200, response.json
    assert response.json["data"]["userId"] == RC_MARIA
    assert password_hash(app, "maria.agent").startswith("$argon2id$")
    # And again, now against the argon2id hash; by email too.
    assert client.post(f"{API}/login", json={"user": "maria@example.com", "password": RC_MARIA_PASSWORD}).status_code == 200
    # A re-import keeps the password the user has here.
    assert import_rc(runner).exit_code == 0
    assert password_hash(app, "maria.agent").startswith("$argon2id$")


def test_rocketchat_user_logs_in_with_meteors_digest_form(app, client, runner):
    assert import_rc(runner).exit_code == 0
    digest = hashlib.sha256(RC_MARIA_PASSWORD.encode()).hexdigest()
    response = client.post(
        f"{API}/login", json={"user": "maria.agent", "password": {"digest": digest, "algorithm": "sha-256"}}
    )
    assert response.status_code == 200, response.json
    # argon2id needs the password itself: the Rocket.Chat hash stays until a plain login.
    assert password_hash(app, "maria.agent").startswith("rcbcrypt$")


def test_rocketchat_import_twice_changes_nothing(app, runner):
    first = import_rc(runner)
    assert first.exit_code == 0, first.output
    after_first = table_dump(app)
    second = import_rc(runner)
    assert second.exit_code == 0, second.output
    assert table_dump(app) == after_first
    assert "departments: 2 unchanged, 1 skipped" in second.output
    assert "users: 3 unchanged" in second.output and "agent links: 3 unchanged, 1 skipped" in second.output


def test_broken_rocketchat_import_changes_nothing(app, runner, tmp_path):
    directory = tmp_path / "rc"
    shutil.copytree(RC_FIXTURES, directory)
    with (directory / "users.json").open("a") as handle:
        handle.write('{"_id": "x", "username": \n')
    before = table_dump(app)
    result = import_rc(runner, directory)
    assert result.exit_code == 1
    assert "users.json:4: not a JSON document" in result.output
    assert table_dump(app) == before

    (directory / "users.json").unlink()
    (directory / "rocketchat_livechat_department.json").unlink()
    result = import_rc(runner, directory)
    assert result.exit_code == 1 and "rocketchat_livechat_department.json not found" in result.output


def test_rocketchat_import_failing_after_writes_changes_nothing(app, runner, tmp_path, monkeypatch):
    """Any failure after writes began (here: forced in the final check) rolls everything back."""
    before = table_dump(app)

    def fail(*_args: Any) -> None:
        raise data_transfer.TransferError("forced failure after the writes")

    monkeypatch.setattr(data_transfer, "_verify_agent_counts", fail)
    result = import_rc(runner)
    assert result.exit_code == 1 and "forced failure after the writes" in result.output
    assert table_dump(app) == before


def test_extended_json_values():
    assert rocketchat_import.from_extended_json({"$date": "2016-12-13T17:22:19.109Z"}) == datetime(
        2016, 12, 13, 17, 22, 19, 109000, tzinfo=UTC
    )
    assert rocketchat_import.from_extended_json({"$date": {"$numberLong": "1481649739109"}}) == datetime(
        2016, 12, 13, 17, 22, 19, 109000, tzinfo=UTC
    )
    assert rocketchat_import.from_extended_json({"a": [{"$oid": "6418198f28384134ed600db1"}, {"$numberLong": "7"}]}) == {
        "a": ["6418198f28384134ed600db1", 7]
    }
    assert rocketchat_import.from_extended_json({"$date": "garbage"}) == {"$date": "garbage"}


@pytest.mark.parametrize("command", ["export", "import", "import-rocketchat"])
def test_transfer_commands_have_help(runner, command):
    result = runner.invoke(args=[command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_import_fields_missing_from_a_row_keep_their_value(client, auth, runner, tmp_path):
    ids = build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    support = next(row for row in document["departments"] if row["id"] == ids["support"])
    document["departments"] = [{"id": support["id"], "name": "Support 2", "email": support["email"],
                                "enabled": True, "show_on_registration": True}]
    document["department_agents"] = document["users"] = []
    path.write_text(json.dumps(document))
    result = invoke_import(runner, path)
    assert result.exit_code == 0, result.output
    department = client.get(f"{API}/livechat/department/{ids['support']}", headers=auth.admin).json["department"]
    assert department["name"] == "Support 2" and department["description"] == "First line"
    assert department["maxNumberSimultaneousChat"] == 3 and department["numAgents"] == 2
    del document["departments"][0]["email"]
    path.write_text(json.dumps(document))
    result = invoke_import(runner, path)
    assert result.exit_code == 1 and "missing field email" in result.output


def test_import_without_hashes_into_a_fresh_database(app, client, auth, runner, template, tmp_path):
    """The new server's admin is replaced by the exported one but keeps its local password;
    imported users have none until set-password gives them one."""
    build_sample(client, auth)
    path = tmp_path / "export.json"
    document = export(runner, path)
    exported_admin = next(row["id"] for row in document["users"] if row["username"] == "admin")
    db.dispose(app)

    with fresh_app(template, tmp_path / "fresh") as fresh:
        fresh_runner, fresh_client = fresh.test_cli_runner(), fresh.test_client()
        result = invoke_import(fresh_runner, path)
        assert result.exit_code == 0, result.output
        assert "users: 4 new, 1 replaced" in result.output
        response = fresh_client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD})
        assert response.status_code == 200 and response.json["data"]["userId"] == exported_admin
        assert fresh_client.post(f"{API}/login", json={"user": "agent1", "password": "pass-word-1"}).status_code == 401
        result = fresh_runner.invoke(args=["set-password", "agent1", "--password-stdin"], input="new-one\n")
        assert result.exit_code == 0, result.output
        assert fresh_client.post(f"{API}/login", json={"user": "agent1", "password": "new-one"}).status_code == 200


def test_import_matches_usernames_and_emails_regardless_of_case(app, client, auth, runner, template, tmp_path):
    """Usernames and emails are unique regardless of case (migration 0010): an incoming "ADMIN"
    takes the place of a local "admin", and a file holding "Bob" and "bob" is refused."""
    auth.create_user("bob")
    path = tmp_path / "export.json"
    document = export(runner, path, "--with-password-hashes")
    db.dispose(app)
    for user in document["users"]:
        user["username"] = user["username"].upper()
        user["email"] = user["email"].upper()
    path.write_text(json.dumps(document))
    with fresh_app(template, tmp_path / "fresh") as fresh:
        result = invoke_import(fresh.test_cli_runner(), path)
        assert result.exit_code == 0, result.output
        assert "local users replaced" in result.output and "'admin' (local id" in result.output
        usernames = [u["username"] for u in fresh.test_client().get(f"{API}/users.list", headers=Auth(fresh.test_client()).admin).json["users"]]
        assert sorted(usernames) == ["ADMIN", "BOB"]

    clash = dict(document, users=[*document["users"], {**document["users"][-1], "id": "another-id", "username": "bob"}])
    path.write_text(json.dumps(clash))
    with fresh_app(template, tmp_path / "fresh2") as fresh:
        result = invoke_import(fresh.test_cli_runner(), path)
        assert result.exit_code != 0
        assert "users: username 'bob' appears 2 times" in result.output
