"""The command line: create-user, set-password, list-users, backup (export/import: test_transfer.py)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import API, create_department, department_fields


def login(client, username: str, password: str):
    return client.post(f"{API}/login", json={"user": username, "password": password})


@pytest.mark.parametrize(
    "command", ["create-user", "set-password", "list-users", "upgrade-db", "backup", "export", "import", "import-rocketchat"]
)
def test_every_command_has_help(runner, command):
    result = runner.invoke(args=[command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and "--help" in result.output


# ---------------------------------------------------------------------------
# create-user
# ---------------------------------------------------------------------------


def test_create_user_with_hidden_prompt_and_confirmation(client, runner):
    result = runner.invoke(
        args=["create-user", "maria", "Maria@Example.com", "Maria Silva", "--role", "livechat-agent", "--role", "user"],
        input="s3cret-pass\ns3cret-pass\n",
    )
    assert result.exit_code == 0, result.output
    assert "created user 'maria'" in result.output and "livechat-agent, user" in result.output
    assert "s3cret-pass" not in result.output  # the prompt does not echo
    response = login(client, "maria@example.com", "s3cret-pass")
    assert response.status_code == 200
    me = response.json["data"]["me"]
    assert me["name"] == "Maria Silva" and me["roles"] == ["livechat-agent", "user"]


def test_create_user_password_from_stdin(client, runner):
    result = runner.invoke(args=["create-user", "bob", "bob@example.com", "--password-stdin"], input="from-stdin\n")
    assert result.exit_code == 0, result.output
    response = login(client, "bob", "from-stdin")
    assert response.status_code == 200
    assert response.json["data"]["me"]["roles"] == ["user"] and response.json["data"]["me"]["name"] == "bob"


def test_create_user_refuses_mismatched_confirmation_and_empty_stdin(client, runner):
    result = runner.invoke(args=["create-user", "bob", "bob@example.com"], input="one\ntwo\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    result = runner.invoke(args=["create-user", "bob", "bob@example.com", "--password-stdin"], input="")
    assert result.exit_code == 1 and "no password on standard input" in result.output
    assert login(client, "bob", "one").status_code == 401


def test_create_user_clear_errors(runner):
    ok = runner.invoke(args=["create-user", "bob", "bob@example.com", "--password-stdin"], input="pw\n")
    assert ok.exit_code == 0, ok.output
    cases = [
        (["create-user", "bob", "other@example.com", "--password-stdin"], "username 'bob' is already in use"),
        (["create-user", "carl", "BOB@example.com", "--password-stdin"], "email 'bob@example.com' is already in use"),
        (["create-user", "carl", "carl@example.com", "--role", "wizard"], "unknown role(s) wizard (known: admin"),
        (["create-user", "bad name", "x@example.com", "n" * 300], "invalid user: name: must NOT have more than 256"),
        (["create-user", "bad name", "x@example.com"], 'username: must match pattern "^[0-9a-zA-Z_.@-]+$"'),
        (["create-user", "carl"], "Missing argument 'EMAIL'"),
    ]
    for args, message in cases:
        result = runner.invoke(args=args, input="pw\n")
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output and "Password" not in result.output  # failed before asking


# ---------------------------------------------------------------------------
# set-password
# ---------------------------------------------------------------------------


def test_set_password_changes_it_and_revokes_login_tokens(client, auth, runner):
    auth.create_user("agent", roles=["livechat-agent"])
    headers = auth.login("agent", "pass-word-1")
    other_session = auth.login("agent", "pass-word-1")
    assert client.get(f"{API}/me", headers=headers).status_code == 200  # cached as a valid caller

    result = runner.invoke(args=["set-password", "agent"], input="brand-new\nbrand-new\n")
    assert result.exit_code == 0, result.output
    assert "2 login token(s) revoked" in result.output
    for session in (headers, other_session):
        assert client.get(f"{API}/me", headers=session).status_code == 401
    assert login(client, "agent", "pass-word-1").status_code == 401
    assert login(client, "agent", "brand-new").status_code == 200
    # The admin's session is untouched.
    assert client.get(f"{API}/me", headers=auth.admin).status_code == 200


def test_set_password_from_stdin_and_unknown_user(client, auth, runner):
    auth.create_user("agent")
    result = runner.invoke(args=["set-password", "agent", "--password-stdin"], input="piped\n")
    assert result.exit_code == 0, result.output
    assert login(client, "agent", "piped").status_code == 200
    result = runner.invoke(args=["set-password", "ghost", "--password-stdin"], input="piped\n")
    assert result.exit_code == 1 and "no user named 'ghost'" in result.output


# ---------------------------------------------------------------------------
# list-users
# ---------------------------------------------------------------------------


def test_list_users_as_table_and_json(auth, runner):
    auth.create_user("zoe", roles=["livechat-manager", "user"])
    table = runner.invoke(args=["list-users"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["ID", "USERNAME", "NAME", "EMAIL", "ROLES", "ACTIVE"]
    assert any(line.split()[1:] == ["zoe", "zoe", "zoe@example.com", "livechat-manager,user", "yes"] for line in lines)

    as_json = runner.invoke(args=["list-users", "--json"])
    assert as_json.exit_code == 0, as_json.output
    users = {user["username"]: user for user in json.loads(as_json.output)}
    assert set(users) == {"admin", "zoe"}
    assert users["zoe"]["roles"] == ["livechat-manager", "user"]
    assert "password" not in as_json.output.lower()


# ---------------------------------------------------------------------------
# backup
# ---------------------------------------------------------------------------


def test_backup_while_writes_happen_is_consistent(app, client, auth, runner, backend, tmp_path):
    if backend != "sqlite":
        pytest.skip("backup copies SQLite files; on PostgreSQL it points to pg_dump (test_backup_on_postgresql_…)")
    headers = auth.admin
    for i in range(20):
        create_department(client, headers, name=f"before {i}")
    written: list[str] = []
    failures: list[object] = []
    stop = threading.Event()

    def writer() -> None:
        writer_client = app.test_client()
        try:
            while not stop.is_set():
                body = {"department": department_fields(name=f"during {len(written)}")}
                response = writer_client.post(f"{API}/livechat/department", json=body, headers=headers)
                if response.status_code == 200:
                    written.append(response.json["department"]["_id"])
                else:
                    failures.append(response.json)
        except Exception as error:  # reported below, not lost in the thread
            failures.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(written) < 5 and time.monotonic() < deadline and not failures:
            time.sleep(0.01)
        started_with = len(written)
        dest = tmp_path / "backup.db"
        result = runner.invoke(args=["backup", str(dest)])
        finished_with = len(written)
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert result.exit_code == 0, result.output
    assert "integrity ok" in result.output
    print("writes before/after the backup:", started_with, finished_with)
    assert started_with >= 5

    with sqlite3.connect(dest) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
        before = copy.execute("SELECT count(*) FROM departments WHERE name LIKE 'before %'").fetchone()[0]
        during = copy.execute("SELECT count(*) FROM departments WHERE name LIKE 'during %'").fetchone()[0]
        links_ok = copy.execute("PRAGMA foreign_key_check").fetchall()
    assert before == 20
    assert started_with <= during <= finished_with + 1
    assert links_ok == []
    assert not Path(f"{dest}-wal").exists()

    # The copy is a working database of the service.
    import db
    from app import create_app

    restored = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{dest}"})
    try:
        with restored.extensions["db.engine"].connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM departments")).scalar_one() == 20 + during
    finally:
        db.dispose(restored)


def test_backup_refuses_to_overwrite_without_force(backend, runner, tmp_path):
    if backend != "sqlite":
        pytest.skip("backup copies SQLite files only")
    dest = tmp_path / "backup.db"
    dest.write_text("keep me")
    result = runner.invoke(args=["backup", str(dest)])
    assert result.exit_code == 1 and "already exists (use --force" in result.output
    assert dest.read_text() == "keep me"
    result = runner.invoke(args=["backup", str(dest), "--force"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(dest) as copy:
        assert copy.execute("SELECT username FROM users").fetchall() == [("admin",)]
    result = runner.invoke(args=["backup", str(tmp_path / "missing-dir" / "b.db")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_backup_on_postgresql_points_to_pg_dump(backend, runner, tmp_path):
    if backend != "postgresql":
        pytest.skip("the PostgreSQL message is tested on PostgreSQL")
    result = runner.invoke(args=["backup", str(tmp_path / "backup.db")])
    assert result.exit_code == 1
    assert "pg_dump" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "backup.db").exists()
