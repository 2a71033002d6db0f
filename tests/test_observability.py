"""Operations: request ids, logs, metrics, health checks, the docs page and path prefixes.

In process on both databases, plus one real gunicorn run (two workers) for what only a real
server shows: gunicorn's access lines and metrics that add up across workers.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory
from conftest import API, department_fields
from gunicorn.glogging import SafeAtoms
from pythonjsonlogger.json import JsonFormatter
from servers import Server, login

import observability
from app import create_app

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the root logger writes through the service's JSON handler during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(observability.RequestIdFilter())
    config = observability.logging_config("json")["formatters"]["default"]
    handler.setFormatter(JsonFormatter(config["fmt"], timestamp=config["timestamp"], rename_fields=config["rename_fields"]))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- request ids ---


def test_every_response_carries_a_request_id(client, auth):
    made = client.get("/api/info")
    assert HEX_ID.fullmatch(made.headers["X-Request-ID"])
    assert client.get("/api/info").headers["X-Request-ID"] != made.headers["X-Request-ID"]
    # errors too: 401 from authentication, 404 from routing, 405
    for response in (client.get(f"{API}/me"), client.get("/nope"), client.delete("/api/info")):
        assert response.status_code in (401, 404, 405)
        assert HEX_ID.fullmatch(response.headers["X-Request-ID"])


@pytest.mark.parametrize("incoming", ["abc", "nginx-1.2_3", "A" * 64, "0123456789abcdef0123456789abcdef"])
def test_a_safe_incoming_request_id_is_kept(client, incoming):
    assert client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["", "A" * 65, "has space", "semi;colon", "ünïcode", "a/b", "x\ty"])
def test_an_unsafe_incoming_request_id_is_replaced(client, incoming):
    answered = client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert HEX_ID.fullmatch(answered)


def test_log_records_written_during_a_request_carry_its_id(client, auth, log_lines):
    # Creating a department with an unknown agent id logs the skip (README, compatibility notes).
    body = {"department": department_fields(), "agents": [{"agentId": "no-such-user"}]}
    response = client.post(f"{API}/livechat/department", json=body, headers={**auth.admin, "X-Request-ID": "trace-42"})
    assert response.status_code == 200
    skipped = [r for r in records(log_lines) if "skipped unknown agent ids" in r["message"]]
    assert len(skipped) == 1
    assert skipped[0]["request_id"] == "trace-42" == response.headers["X-Request-ID"]
    assert skipped[0]["level"] == "INFO" and skipped[0]["logger"] == "department_service"
    logging.getLogger("outside").warning("not in a request")
    assert records(log_lines)[-1]["request_id"] == "-"


# --- logging configuration ---


def test_json_format_is_one_object_per_line_with_the_fields():
    stream = io.StringIO()
    config = observability.logging_config("json", "debug")
    config["handlers"]["default"]["stream"] = stream
    logging_state = _save_logging()
    try:
        logging.config.dictConfig(config)
        logging.getLogger("some.module").info("hello %s", "world", extra={"department": "d1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("some.module").exception("failed")
    finally:
        _restore_logging(logging_state)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world" and first["level"] == "INFO" and first["logger"] == "some.module"
    assert first["request_id"] == "-" and first["department"] == "d1" and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc_info"]


def test_text_format_and_gunicorn_access_records():
    stream = io.StringIO()
    config = observability.logging_config("text")
    config["handlers"]["default"]["stream"] = stream
    logging_state = _save_logging()
    try:
        logging.config.dictConfig(config)
        access = logging.getLogger("gunicorn.access")
        # what gunicorn's Logger.access() logs: the format, with the request's atoms as arguments
        atoms = SafeAtoms({
            "h": "10.0.0.1", "r": "GET /api/info HTTP/1.1", "s": "200", "b": "35", "B": 35, "M": 7, "m": "GET",
            "U": "/api/info", "a": "curl/8", "{x-request-id}o": "abc-1",
        })
        access.info(observability.ACCESS_LOG_FORMAT, atoms)
    finally:
        _restore_logging(logging_state)
    line = stream.getvalue().strip()
    assert line.endswith('gunicorn.access [abc-1] 10.0.0.1 "GET /api/info HTTP/1.1" 200 35 7ms request_id=abc-1 "curl/8"'), line


def test_an_unknown_log_format_is_refused(database_url):
    with pytest.raises(ValueError, match="LOG_FORMAT must be 'json' or 'text'"):
        create_app({"DATABASE_URL": database_url, "LOG_FORMAT": "yaml"})


def _save_logging() -> dict:
    names = ("", "gunicorn.error", "gunicorn.access")
    return {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}


def _restore_logging(state: dict) -> None:
    for name, (handlers, level, propagate) in state.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


# --- metrics ---


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition (None when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if not line.startswith("#") and _normalised(sample) == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return None


def _normalised(sample: str) -> str:
    name, brace, rest = sample.partition("{")
    if not brace:
        return name
    pairs = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_metrics_count_requests_by_route_and_the_departments(make_app):
    app = make_app(METRICS=True)
    client = app.test_client()
    from conftest import Auth

    auth = Auth(client)
    agent = auth.create_user("metrics.agent")
    enabled = client.post(f"{API}/livechat/department", headers=auth.admin, json={
        "department": department_fields(name="On"), "agents": [{"agentId": agent["_id"]}],
    }).json["department"]
    client.post(f"{API}/livechat/department", headers=auth.admin, json={"department": department_fields(name="Off", enabled=False)})
    archived = client.post(f"{API}/livechat/department", headers=auth.admin, json={"department": department_fields(name="Old")})
    assert client.post(f"{API}/livechat/department/{archived.json['department']['_id']}/archive", headers=auth.admin).status_code == 200
    for department_id in (enabled["_id"], "no-such-id"):
        assert client.get(f"{API}/livechat/department/{department_id}", headers=auth.admin).status_code == 200
    client.get("/no/such/path")

    text = client.get("/metrics").get_data(as_text=True)
    by_id = {"route": "/api/v1/livechat/department/<department_id>", "method": "GET", "status": "200"}
    assert metric(text, "http_requests_total", **by_id) == 2  # one series for every id
    assert metric(text, "http_requests_total", route="/api/v1/livechat/department", method="POST", status="200") == 3
    assert metric(text, "http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert metric(text, "http_request_duration_seconds_count", route="/api/v1/livechat/department", method="POST") == 3
    assert metric(text, "http_request_duration_seconds_bucket", route="/api/v1/livechat/department", method="POST", le="+Inf") == 3
    assert metric(text, "livechat_departments", state="enabled") == 1
    assert metric(text, "livechat_departments", state="disabled") == 1
    assert metric(text, "livechat_departments", state="archived") == 1
    assert metric(text, "livechat_department_agents") == 1
    assert "no-such-id" not in text


def test_metrics_token(make_app):
    client = make_app(METRICS=True, METRICS_TOKEN="s3cret").test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.json == {"success": False, "error": "Unauthorized"}
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and allowed.content_type.startswith("text/plain")
    assert "# TYPE livechat_departments gauge" in allowed.get_data(as_text=True)


# --- health ---


def test_healthz_and_readyz_on_a_migrated_database(client):
    assert client.get("/healthz").json == {"success": True, "status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready" and ready.json["success"] is True
    assert ready.json["revision"] == ScriptDirectory(str(observability.MIGRATIONS)).get_current_head()


def test_readyz_reports_a_database_that_is_not_migrated(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["success"] is False and response.json["status"] == "unavailable"
    assert re.fullmatch(r"database schema at revision none, expected \w+", response.json["error"])


def test_healthz_does_not_need_the_database_and_readyz_says_it_is_gone():
    app = create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})  # nothing listens on port 1
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"success": False, "error": "database unreachable", "status": "unavailable"}


# --- docs page ---


def test_docs_page_is_public_and_uses_relative_urls_only(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.content_type == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    references = re.findall(r'(?:src|href|data-spec-url)="([^"]+)"', html)
    assert references and "openapi.json" in references
    assert all(not ref.startswith(("/", "http:", "https:", "//")) for ref in references), references
    assert "<script>" not in html and "style=" not in html  # nothing inline
    for reference in references:
        if reference.startswith("docs/"):
            with client.get(f"/api/{reference}") as asset:  # a file response: closed when done
                assert asset.status_code == 200, reference
    with client.get("/api/docs/swagger-ui-bundle.js") as bundle:
        assert bundle.content_type.startswith("text/javascript")
    initializer = client.get("/api/docs/swagger-initializer.js").get_data(as_text=True)
    assert "validatorUrl: null" in initializer


@pytest.mark.parametrize("name", ["nope.js", "../app.py", "LICENSE", "oauth2-redirect.html", "swagger-ui.js.map"])
def test_docs_serve_only_swagger_ui_files(client, name):
    response = client.get(f"/api/docs/{name}")
    assert response.status_code == 404 and response.json == {"success": False, "error": "Resource not found"}


# --- path prefixes ---


def test_openapi_servers_follow_the_mount_point(client, make_app):
    assert client.get("/api/openapi.json").json["servers"] == [{"url": "/"}]
    # SCRIPT_NAME, as gunicorn sets it from the environment
    assert client.get("/api/openapi.json", base_url="http://h/chat-api").json["servers"] == [{"url": "/chat-api"}]
    # X-Forwarded-Prefix counts only from a trusted proxy
    forwarded = {"X-Forwarded-Prefix": "/chat-api"}
    assert client.get("/api/openapi.json", headers=forwarded).json["servers"] == [{"url": "/"}]
    proxied = make_app(TRUSTED_PROXY_HOPS=1).test_client()
    assert proxied.get("/api/openapi.json", headers=forwarded).json["servers"] == [{"url": "/chat-api"}]


# --- a real gunicorn ---


@pytest.mark.e2e
def test_gunicorn_json_logs_and_metrics_add_up_across_workers(tmp_path):
    metrics_dir = tmp_path / "prometheus"  # given, and not there yet: gunicorn.conf.py makes it
    log = tmp_path / "gunicorn.log"

    def start() -> Server:
        server = Server(f"sqlite:///{tmp_path / 'metrics.db'}", log, "metrics-admin-pass")
        server.env.pop("GUNICORN_CMD_ARGS", None)  # gunicorn.conf.py's access log format
        server.env.update(METRICS="on", LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        return server

    with start() as server:
        # Eight clients at once, a new connection per request: while one sync worker is busy the
        # other accepts, so both answer some (one client alone may be served by one worker only).
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.get(f"{server.base}{API}/me", timeout=10).status_code, range(80)))
        assert statuses == [401] * 80
        traced = requests.get(f"{server.base}/readyz", headers={"X-Request-ID": "trace-e2e"}, timeout=10)
        assert traced.headers["X-Request-ID"] == "trace-e2e"
        headers = login(server.base, "metrics-admin-pass")
        body = {"department": department_fields(), "agents": [{"agentId": "no-such-user"}]}
        created = requests.post(f"{server.base}{API}/livechat/department", json=body, headers=headers, timeout=10)
        assert created.status_code == 200
        scrapes = []
        for _ in range(20):  # until both workers have answered a scrape (four at once, as above)
            with ThreadPoolExecutor(4) as pool:
                scrapes += pool.map(lambda _: requests.get(f"{server.base}/metrics", timeout=10).text, range(4))
            if len(set(re.findall(r'"process": (\d+), [^\n]*"GET /metrics ', server.output()))) == 2:
                break

    lines = [json.loads(line) for line in server.output().splitlines()]  # every line is one JSON object
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    me_pids = {line["process"] for line in access if line["path"] == f"{API}/me"}
    assert len(me_pids) == 2, "one worker answered every request"
    # whichever worker answers the scrape, the figures are the sum over both
    for text in scrapes:
        assert metric(text, "http_requests_total", route=f"{API}/me", method="GET", status="401") == 80
        assert metric(text, "livechat_departments", state="enabled") == 1
    assert {line["process"] for line in access if line["path"] == "/metrics"} == me_pids

    traced_line = next(line for line in access if line["path"] == "/readyz")
    assert traced_line["request_id"] == "trace-e2e" and traced_line["status"] == "200"
    assert "request_id=trace-e2e" in traced_line["message"] and isinstance(traced_line["duration_ms"], int)
    skipped = next(line for line in lines if "skipped unknown agent ids" in line["message"])
    assert skipped["request_id"] == created.headers["X-Request-ID"]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)

    # a new run starts from zero: the figures of the last one were cleared at start
    with start() as server:
        text = requests.get(f"{server.base}/metrics", timeout=10).text
    assert metric(text, "http_requests_total", route=f"{API}/me", method="GET", status="401") is None
    assert Path(metrics_dir).is_dir()
