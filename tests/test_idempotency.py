"""Idempotency-Key on POST livechat/department, POST …/:_id/agents and users.create
(docs/etags-and-idempotency.md), in-process on both databases; the runs through real gunicorn
workers and across a restart are in tests/test_etags_gunicorn.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import API, department_fields

import idempotency

CREATE = f"{API}/livechat/department"


def count_departments(app) -> int:
    with app.extensions["db.engine"].connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM departments")).scalar()


def test_a_repeat_gets_the_first_answer_and_creates_nothing(app, client, auth):
    headers = {**auth.admin, "Idempotency-Key": "create-sales-1"}
    body = {"department": department_fields(name="Sales")}
    first = client.post(CREATE, json=body, headers=headers)
    assert first.status_code == 200, first.json
    assert "Idempotent-Replayed" not in first.headers
    again = client.post(CREATE, json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert count_departments(app) == 1
    # the draft's quoted form names the same key
    quoted = client.post(CREATE, json=body, headers={**auth.admin, "Idempotency-Key": '"create-sales-1"'})
    assert quoted.json == first.json


def test_the_same_key_with_another_body_or_route_is_422(app, client, auth):
    headers = {**auth.admin, "Idempotency-Key": "k1"}
    assert client.post(CREATE, json={"department": department_fields(name="A")}, headers=headers).status_code == 200
    other = client.post(CREATE, json={"department": department_fields(name="B")}, headers=headers)
    assert other.status_code == 422
    assert other.json["error"] == "error-idempotency-key-reused"
    user = client.post(
        f"{API}/users.create", json={"username": "u1", "email": "u1@example.com", "name": "u1", "password": "pass-word-1"},
        headers=headers,
    )
    assert user.status_code == 422
    assert count_departments(app) == 1


def test_keys_are_per_caller(app, client, auth):
    manager = auth.user_headers("idem.manager", roles=["livechat-manager"])
    body = {"department": department_fields(name="Mine")}
    for headers in (auth.admin, manager):
        response = client.post(CREATE, json=body, headers={**headers, "Idempotency-Key": "shared"})
        assert response.status_code == 200, response.json
        assert "Idempotent-Replayed" not in response.headers
    assert count_departments(app) == 2


def test_a_refused_request_is_not_stored(app, client, auth):
    headers = {**auth.admin, "Idempotency-Key": "bad-then-good"}
    body = {"department": department_fields(name="Sales", requestTagBeforeClosingChat=True)}
    assert client.post(CREATE, json=body, headers=headers).status_code == 400
    with app.extensions["db.engine"].connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM idempotency_keys")).scalar() == 0
    assert client.post(CREATE, json=body, headers=headers).status_code == 400  # run again, not replayed


def test_agents_and_users_create_replay_too(app, client, auth):
    agent = auth.create_user("idem.agent", roles=["livechat-agent"])
    department = client.post(CREATE, json={"department": department_fields()}, headers=auth.admin).json["department"]
    url = f"{CREATE}/{department['_id']}/agents"
    headers = {**auth.admin, "Idempotency-Key": "agents-1"}
    body = {"upsert": [{"agentId": agent["_id"]}], "remove": []}
    assert client.post(url, json=body, headers=headers).status_code == 200
    replay = client.post(url, json=body, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"

    user_body = {"username": "once", "email": "once@example.com", "name": "Once", "password": "pass-word-1"}
    user_headers = {**auth.admin, "Idempotency-Key": "user-once"}
    created = client.post(f"{API}/users.create", json=user_body, headers=user_headers)
    assert created.status_code == 200, created.json
    replayed = client.post(f"{API}/users.create", json=user_body, headers=user_headers)
    assert replayed.status_code == 200, replayed.json  # not "username already in use"
    assert replayed.json == created.json


@pytest.mark.parametrize("value", ["", "x" * 256, '"' + "x" * 256 + '"', "clé", "tab\there"])
def test_bad_keys_are_400(app, client, auth, value):
    headers = {**auth.admin, "Idempotency-Key": value}
    response = client.post(CREATE, json={"department": department_fields()}, headers=headers)
    assert response.status_code == 400
    assert response.json["success"] is False
    assert response.json["error"] == "error-invalid-idempotency-key"
    assert count_departments(app) == 0


def test_a_key_of_255_characters_is_fine(client, auth):
    headers = {**auth.admin, "Idempotency-Key": "k" * 255}
    assert client.post(CREATE, json={"department": department_fields()}, headers=headers).status_code == 200


def test_expired_keys_run_again_and_are_pruned(make_app):
    from conftest import Auth

    app = make_app(IDEMPOTENCY_KEY_TTL_SECONDS=0)
    client = app.test_client()
    auth = Auth(client)
    headers = {**auth.admin, "Idempotency-Key": "short-lived"}
    body = {"department": department_fields(name="Again")}
    for _ in range(2):
        response = client.post(CREATE, json=body, headers=headers)
        assert response.status_code == 200
        assert "Idempotent-Replayed" not in response.headers
    assert count_departments(app) == 2
    with app.app_context(), app.extensions["db.engine"].begin() as conn:
        assert idempotency.prune(conn, datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert conn.execute(sa.text("SELECT count(*) FROM idempotency_keys")).scalar() == 0


def test_a_repeat_while_the_first_runs_is_409(app, client, auth, backend):
    """PostgreSQL: the first request's transaction holds the key (a claim of the service's own,
    uncommitted, on another connection). SQLite serialises writers, so there a repeat waits for
    the first one and gets its answer (test_etags_gunicorn.py's concurrent run)."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises write transactions: a repeat never overlaps the first")
    user_id = auth.admin["X-User-Id"]
    body = {"department": department_fields(name="Slow")}
    with app.test_request_context(CREATE, method="POST", json=body):
        fingerprint = idempotency._fingerprint()
    now = datetime.now(UTC)
    with app.extensions["db.engine"].connect() as first:
        params = idempotency.claim_parameters(user_id, "slow", fingerprint, now, now + timedelta(hours=1), {"type": "test"})
        assert idempotency.CLAIM_POSTGRESQL.execute(first, params)
        response = client.post(CREATE, json=body, headers={**auth.admin, "Idempotency-Key": "slow"})
        assert response.status_code == 409
        assert response.json["error"] == "error-idempotency-key-in-use"
        first.rollback()
    response = client.post(CREATE, json=body, headers={**auth.admin, "Idempotency-Key": "slow"})
    assert response.status_code == 200


def test_the_change_log_names_the_writer_of_a_request_with_a_key(app, client, auth):
    """On PostgreSQL the claim statement sets the change log's actor itself (idempotency.py)."""
    headers = {**auth.admin, "Idempotency-Key": "logged"}
    department = client.post(CREATE, json={"department": department_fields(name="Logged")}, headers=headers).json["department"]
    with app.extensions["db.engine"].connect() as conn:
        actors = conn.execute(
            sa.text("SELECT actor FROM department_changes WHERE department_id = :id"), {"id": department["_id"]}
        ).scalars().all()
    assert actors and all(json.loads(actor)["userId"] == auth.admin["X-User-Id"] for actor in actors)


def test_the_answer_and_the_writes_commit_together_or_not_at_all(app, client, auth, monkeypatch):
    """The view commits inside db.commit_held, which only flushes there: when storing the answer
    fails, the department the view wrote is not committed either, and the key stays free."""
    monkeypatch.setattr(idempotency, "STORE", sa.text("UPDATE no_such_table SET x = :the_body"))
    headers = {**auth.admin, "Idempotency-Key": "half-way"}
    body = {"department": department_fields(name="Never")}
    failed = client.post(CREATE, json=body, headers=headers)
    assert failed.status_code >= 500
    assert failed.json["success"] is False
    assert count_departments(app) == 0
    monkeypatch.undo()
    again = client.post(CREATE, json=body, headers=headers)
    assert again.status_code == 200, again.json
    assert "Idempotent-Replayed" not in again.headers
    assert count_departments(app) == 1
