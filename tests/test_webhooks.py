"""Signed webhooks (issue 15): endpoints registered by an admin receive department events signed
as Standard Webhooks say (checked with the `standardwebhooks` package), at least once, retried,
logged, and delivered by gunicorn's workers alone; a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from conftest import ADMIN_PASSWORD, API, FORBIDDEN_BODY, create_department
from servers import Server, login, server_url
from standardwebhooks.webhooks import Webhook

import webhooks
from models import EventState

HOOKS = "/api/ext/v1/webhooks"
LOOPBACK = "127.0.0.0/8"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers the statuses queued
    in `answers` (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.connections: set[tuple[str, int]] = set()
        self.answers: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a batch's deliveries share a connection

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.connections.add(self.client_address)
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.received.append({"headers": dict(self.headers), "body": body, "status": status, "at": time.time()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(item["body"]) for item in self.received]

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} deliveries arrived"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def hook_app(make_app):
    return make_app(WEBHOOK_ALLOWED_NETWORKS=LOOPBACK, WEBHOOK_RETRY_SCHEDULE=[0, 0])


@pytest.fixture
def hook_client(hook_app):
    return hook_app.test_client()


def _register(client, headers, url: str, kinds: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    response = client.post(HOOKS, json={"url": url, "kinds": kinds or list(webhooks.events.KINDS), **extra}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def _deliverer(app, **config: Any) -> webhooks.Deliverer:
    return webhooks.Deliverer(app.extensions["db.engine"], {**app.config, **config}, app.extensions["db.version_reader"])


def _deliver(app) -> int:
    return _deliverer(app).run_once()


def _verified(secret: str, item: dict[str, Any]) -> dict[str, Any]:
    return Webhook(secret).verify(item["body"], item["headers"])


def _admin(client) -> dict[str, str]:
    response = client.post(f"{API}/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    return {"X-User-Id": response.json["data"]["userId"], "X-Auth-Token": response.json["data"]["authToken"]}


def test_a_registered_endpoint_receives_each_event_signed_and_the_log_shows_it(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    registered = _register(hook_client, admin, receiver.url)
    secret = registered["secret"]
    assert secret.startswith("whsec_") and registered["webhook"]["enabled"] is True
    listed = hook_client.get(HOOKS, headers=admin).json["webhooks"]
    assert [hook["_id"] for hook in listed] == [registered["webhook"]["_id"]]
    assert secret not in json.dumps(listed)  # shown once only

    department = create_department(hook_client, admin, name="Signed")
    assert hook_client.post(f"{API}/livechat/department/{department['_id']}/archive", headers=admin).status_code == 200
    assert _deliver(hook_app) == 2
    assert len(receiver.received) == 2 and len(receiver.connections) == 1  # one kept-alive connection
    created, archived = (_verified(secret, item) for item in receiver.received)
    assert created["type"] == "department.created" and created["data"]["after"]["name"] == "Signed"
    assert archived["type"] == "department.archived" and archived["data"]["departmentId"] == department["_id"]
    assert receiver.received[0]["headers"]["webhook-id"] != receiver.received[1]["headers"]["webhook-id"]
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks.new_secret()).verify(receiver.received[0]["body"], receiver.received[0]["headers"])

    log = hook_client.get(f"{HOOKS}/{registered['webhook']['_id']}/deliveries", headers=admin).json
    assert log["total"] == 2 and [d["status"] for d in log["deliveries"]] == ["delivered", "delivered"]
    attempt = log["deliveries"][0]["attempts"][0]
    assert attempt["statusCode"] == 200 and attempt["error"] is None and attempt["durationMs"] >= 0
    assert _deliver(hook_app) == 0 and len(receiver.received) == 2  # nothing sent twice


def test_events_before_the_first_endpoint_are_not_sent_and_filters_select_kinds_and_departments(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    before = create_department(hook_client, admin, name="Before")
    watched = create_department(hook_client, admin, name="Watched")
    _register(hook_client, admin, receiver.url, kinds=["archived", "unarchived"], departmentIds=[watched["_id"]])
    for department in (before, watched):
        hook_client.put(f"{API}/livechat/department/{department['_id']}", json={"department": {"name": "Renamed", "enabled": True, "showOnRegistration": True, "email": "a@b"}}, headers=admin)
        hook_client.post(f"{API}/livechat/department/{department['_id']}/archive", headers=admin)
    _deliver(hook_app)
    assert [(body["type"], body["data"]["departmentId"]) for body in receiver.bodies()] == [("department.archived", watched["_id"])]


def test_a_failing_receiver_gets_the_same_message_again_until_it_accepts(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    registered = _register(hook_client, admin, receiver.url)
    receiver.answers = [500, 503]
    create_department(hook_client, admin, name="Retried")
    _deliver(hook_app)
    assert [item["status"] for item in receiver.received] == [500, 503, 200]
    assert len({item["headers"]["webhook-id"] for item in receiver.received}) == 1
    for item in receiver.received:
        _verified(registered["secret"], item)
    (delivery,) = hook_client.get(f"{HOOKS}/{registered['webhook']['_id']}/deliveries", headers=admin).json["deliveries"]
    assert delivery["status"] == "delivered"
    assert [(a["statusCode"], a["error"]) for a in delivery["attempts"]] == [(500, "HTTP 500"), (503, "HTTP 503"), (200, None)]


def test_an_endpoint_that_keeps_failing_is_disabled_with_its_reason_and_can_be_redelivered(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    registered = _register(hook_client, admin, receiver.url)
    hook_id = registered["webhook"]["_id"]
    receiver.answers = [500, 500, 500]
    create_department(hook_client, admin, name="Failing")
    _deliver(hook_app)
    assert len(receiver.received) == 3  # the first attempt and the schedule's two retries
    (hook,) = hook_client.get(HOOKS, headers=admin).json["webhooks"]
    assert hook["enabled"] is False and "failed 3 times" in hook["disabledReason"] and "HTTP 500" in hook["disabledReason"]
    (delivery,) = hook_client.get(f"{HOOKS}/{hook_id}/deliveries", headers=admin).json["deliveries"]
    assert delivery["status"] == "failed"

    create_department(hook_client, admin, name="While disabled")  # a disabled endpoint gets nothing new
    response = hook_client.post(f"{HOOKS}/{hook_id}/deliveries/{delivery['_id']}/redeliver", headers=admin)
    assert response.status_code == 200, response.json
    assert _deliver(hook_app) == 0  # still disabled
    response = hook_client.put(f"{HOOKS}/{hook_id}", json={"enabled": True}, headers=admin)
    assert response.status_code == 200 and response.json["webhook"]["disabledReason"] is None
    _deliver(hook_app)
    assert receiver.received[-1]["headers"]["webhook-id"] == receiver.received[0]["headers"]["webhook-id"]
    assert receiver.received[-1]["status"] == 200 and len(receiver.received) == 4


def test_the_address_is_checked_again_when_delivering_not_only_at_registration(hook_app, hook_client, receiver):
    """SSRF: an endpoint registered while its network was allowed gets nothing once it no longer is
    (a name may also come to resolve elsewhere). The check is made once per batch of deliveries
    (webhooks.Connections.destination): every delivery of the batch is refused and logged."""
    admin = _admin(hook_client)
    hook_id = _register(hook_client, admin, receiver.url)["webhook"]["_id"]
    for k in range(3):
        create_department(hook_client, admin, name=f"Refused {k}")
    assert _deliverer(hook_app, WEBHOOK_ALLOWED_NETWORKS="", WEBHOOK_RETRY_SCHEDULE=[60]).run_once() == 3
    assert receiver.received == []
    deliveries = hook_client.get(f"{HOOKS}/{hook_id}/deliveries", headers=admin).json["deliveries"]
    assert [delivery["status"] for delivery in deliveries] == ["pending"] * 3
    assert all(
        [attempt["error"].split(":")[0] for attempt in delivery["attempts"]] == ["error-webhook-url-not-allowed"]
        for delivery in deliveries
    )
    for delivery in deliveries:  # due now again, and the network allowed: delivered
        response = hook_client.post(f"{HOOKS}/{hook_id}/deliveries/{delivery['_id']}/redeliver", headers=admin)
        assert response.status_code == 200, response.json
    _deliver(hook_app)
    assert len(receiver.received) == 3


@pytest.mark.parametrize(
    "body, message",
    [
        ({"url": "ftp://127.0.0.1/x", "kinds": ["created"]}, "error-invalid-webhook-url"),
        ({"url": "not a url", "kinds": ["created"]}, "error-invalid-webhook-url"),
        ({"url": "http://user:pw@127.0.0.1/x", "kinds": ["created"]}, "error-invalid-webhook-url"),
        ({"url": "http://10.1.2.3/x", "kinds": ["created"]}, "error-webhook-url-not-allowed"),
        ({"url": "http://169.254.169.254/latest", "kinds": ["created"]}, "error-webhook-url-not-allowed"),
        ({"url": "http://[::1]:9/x", "kinds": ["created"]}, "error-webhook-url-not-allowed"),
        ({"url": "http://127.0.0.1:9/x", "kinds": ["renamed"]}, "must be equal to one of the allowed values"),
        ({"url": "http://127.0.0.1:9/x", "kinds": []}, "must have between"),
        ({"url": "http://127.0.0.1:9/x", "kinds": "created"}, "Not a valid list"),
        ({"url": "http://127.0.0.1:9/x", "kinds": ["created"], "departmentIds": ["d"] * 101}, "must have between"),
        ({"url": "http://127.0.0.1:9/x", "kinds": ["created"], "departmentIds": ["x" * 65]}, "must NOT have more than"),
        ({"url": "http://127.0.0.1:9/" + "x" * 2000, "kinds": ["created"]}, "must NOT have more than"),
        ({"url": "http://127.0.0.1:9/x"}, "must have required property 'kinds'"),
        ({"url": "http://127.0.0.1:9/x", "kinds": ["created"], "secret": "mine"}, "must NOT have additional properties"),
    ],
)
def test_bad_endpoints_are_refused_with_400(hook_client, body, message):
    response = hook_client.post(HOOKS, json=body, headers=_admin(hook_client))
    assert response.status_code == 400, response.json
    assert response.json["success"] is False and message in response.json["error"]


def test_loopback_is_refused_unless_the_setting_allows_it(client, auth, receiver):
    response = client.post(HOOKS, json={"url": receiver.url, "kinds": ["created"]}, headers=auth.admin)
    assert response.status_code == 400 and "error-webhook-url-not-allowed" in response.json["error"]


def test_only_callers_with_the_webhook_permission_see_or_change_endpoints(hook_client, auth, receiver):
    admin = _admin(hook_client)
    hook_id = _register(hook_client, admin, receiver.url)["webhook"]["_id"]
    manager = auth.user_headers("manager.hooks", ["livechat-manager"])
    for method, url, body in [("post", HOOKS, {"url": receiver.url, "kinds": ["created"]}), ("get", HOOKS, None),
                              ("put", f"{HOOKS}/{hook_id}", {"enabled": False}), ("delete", f"{HOOKS}/{hook_id}", None),
                              ("get", f"{HOOKS}/{hook_id}/deliveries", None), ("post", f"{HOOKS}/{hook_id}/deliveries/1/redeliver", None)]:
        response = getattr(hook_client, method)(url, json=body, headers=manager)
        assert (response.status_code, response.json) == (403, FORBIDDEN_BODY), url
    assert hook_client.put(f"{HOOKS}/{hook_id}", json={"enabled": "yes"}, headers=admin).status_code == 400
    assert hook_client.get(f"{HOOKS}/nope/deliveries", headers=admin).status_code == 400
    assert hook_client.delete(f"{HOOKS}/{hook_id}", headers=admin).status_code == 200
    assert hook_client.get(HOOKS, headers=admin).json["webhooks"] == []
    with hook_client.application.extensions["db.engine"].connect() as connection:  # nobody listens: the outbox stops
        assert connection.scalar(sa.select(EventState.dispatched)) is None


def test_the_command_line_registers_and_lists_endpoints(hook_app, receiver):
    runner = hook_app.test_cli_runner()
    result = runner.invoke(args=["add-webhook", receiver.url, "--kind", "created", "--kind", "deleted"])
    assert result.exit_code == 0, result.output
    assert "secret (shown once): whsec_" in result.output
    listed = runner.invoke(args=["list-webhooks"])
    assert "enabled\tcreated,deleted\t" + receiver.url in listed.output
    refused = runner.invoke(args=["add-webhook", "http://10.0.0.1/", "--kind", "created"])
    assert refused.exit_code == 1 and "error-webhook-url-not-allowed" in refused.output


# --- a real gunicorn -----------------------------------------------------------------------------


def _kill_everything(server: Server) -> None:
    """SIGKILL the master and its workers at once: nothing gets to finish."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in [pid, *map(int, children)]:
        os.kill(child, signal.SIGKILL)
    server.process.wait(timeout=10)
    server.process = None


def test_events_committed_before_a_sigkill_are_delivered_once_by_the_next_server(empty_database_url, tmp_path, receiver):
    """Killed between commit and delivery (the workers' deliverers wait 10 minutes before their
    first round), the server loses nothing: the next one, two workers, sends each event once."""
    server = Server(server_url(empty_database_url), tmp_path / "gunicorn.log", ADMIN_PASSWORD)
    server.env.update(WEBHOOK_ALLOWED_NETWORKS=LOOPBACK, WEBHOOK_POLL_MS="600000")
    with server:
        headers = login(server.base, ADMIN_PASSWORD)
        response = requests.post(f"{server.base}{HOOKS}", json={"url": receiver.url, "kinds": ["created"]}, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        secret = response.json()["secret"]
        ids = []
        for k in range(6):
            body = {"department": {"name": f"Killed {k}", "enabled": True, "showOnRegistration": True, "email": "a@b"}}
            answer = requests.post(f"{server.base}{API}/livechat/department", json=body, headers=headers, timeout=10)
            ids.append(answer.json()["department"]["_id"])
        _kill_everything(server)
        assert receiver.received == []

        server.env["WEBHOOK_POLL_MS"] = "50"
        server.start()
        receiver.wait_for(len(ids))
        time.sleep(1)  # time for a doubled attempt to show, if any
    assert sorted(_verified(secret, item)["data"]["departmentId"] for item in receiver.received) == sorted(ids)
    assert len({item["headers"]["webhook-id"] for item in receiver.received}) == len(receiver.received) == len(ids)


def _statements(app) -> list[str]:
    """The statements the app's engine runs from now on (the version reader's own connection aside)."""
    seen: list[str] = []
    sa.event.listen(app.extensions["db.engine"], "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_an_idle_deliverer_reads_the_data_version_and_nothing_else(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    _register(hook_client, admin, receiver.url)
    create_department(hook_client, admin, name="Before")
    deliverer = _deliverer(hook_app, WEBHOOK_POLL_MS=0)  # no pacing: every round may dispatch
    assert deliverer.run_once(flush=False, paced=True) == 1
    deliverer.run_once(flush=False, paced=True)  # nothing new: the batch written down, caught up
    seen = _statements(hook_app)
    deliverer.retries_checked_at = float("-inf")  # the retry check runs at most once a second
    deliverer.run_once(flush=False, paced=True)
    assert seen == [seen[0]] and "webhook_deliveries" in seen[0]  # the retry check alone
    seen.clear()
    deliverer.run_once(flush=False, paced=True)
    assert seen == []

    create_department(hook_client, admin, name="After")  # a write moves the version: dispatched again
    assert deliverer.run_once(paced=True) == 1
    assert [body["data"]["after"]["name"] for body in receiver.bodies()] == ["Before", "After"]


def test_workers_of_a_host_dispatch_once_a_poll_interval_and_write_their_attempts_down(hook_app, hook_client, receiver):
    admin = _admin(hook_client)
    hook_id = _register(hook_client, admin, receiver.url)["webhook"]["_id"]
    first, second = _deliverer(hook_app, WEBHOOK_POLL_MS=60_000), _deliverer(hook_app, WEBHOOK_POLL_MS=60_000)
    assert first.lock_path == second.lock_path
    Path(first.lock_path).touch()
    os.utime(first.lock_path, (0, 0))  # no worker of this host dispatched lately
    create_department(hook_client, admin, name="One")
    assert first.run_once(flush=False, paced=True) == 1  # dispatched and sent; its attempt not written yet
    create_department(hook_client, admin, name="Two")
    assert second.run_once(flush=False, paced=True) == 0  # the host dispatched less than a minute ago
    assert first.run_once(flush=False, paced=True) == 0  # nor does the first again, but it writes down
    deliveries = hook_client.get(f"{HOOKS}/{hook_id}/deliveries", headers=admin).json["deliveries"]
    assert [delivery["status"] for delivery in deliveries] == ["delivered"]
    assert second.run_once(flush=False, paced=False) == 1  # unpaced (an explicit round): dispatched now
    assert [body["data"]["after"]["name"] for body in receiver.bodies()] == ["One", "Two"]
