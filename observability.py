"""Operations: request ids, logging, Prometheus metrics and health checks.

- Every request has an id: a safe incoming `X-Request-ID` (at most 64 of `[A-Za-z0-9._-]`, as
  nginx's `$request_id` or a load balancer sends) or a new one; it is echoed in the response's
  `X-Request-ID` and carried by every log record written while the request runs, and by
  gunicorn's access line (read from that response header).
- Logs are one line per record: text for people (`LOG_FORMAT=text`, the default) or one JSON
  object (`LOG_FORMAT=json`, for production). `logging_config()` is the one dictConfig, shared by
  the app and gunicorn's `logconfig_dict`, so gunicorn's own and access lines look the same.
- `GET /metrics` (METRICS=on; `Authorization: Bearer $METRICS_TOKEN` when that is set): request
  counts by route template, method and status, latency histograms, and the departments by state
  and agent links counted at scrape time. Under gunicorn the counters live in
  PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py), so the figures add up across workers.
- `GET /healthz` answers 200 without touching the database (liveness); `GET /readyz` answers
  200 when the database answers and its Alembic revision is the code's head, else 503 with the
  reason (readiness). Neither needs a login.
"""

from __future__ import annotations

import hmac
import logging
import logging.config
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import func, inspect, select, text

from errors import ApiError
from openapi import doc

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# --- request ids ---


def request_id() -> str:
    """The current request's id: the caller's safe `X-Request-ID`, or a new one (made once)."""
    known = g.get("request_id")
    if known is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        known = g.request_id = incoming if SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    return known


def _assign_request_id() -> None:
    request_id()  # before_request: early, so that every log line of the request carries it


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


# --- logging ---

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(request_id)s %(message)s"
# gunicorn's access line (gunicorn.conf.py): client, request line, status, bytes, duration in
# milliseconds, request id (the response header set above) and user agent.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s "%(a)s"'
# The same access fields as JSON keys (LOG_FORMAT=json), from gunicorn's atoms.
ACCESS_FIELDS = {"remote_addr": "h", "method": "m", "path": "U", "status": "s", "bytes": "B", "duration_ms": "M"}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record: the current request's, the one in a gunicorn access
    line's response headers, or "-" outside requests. On access records it also adds the access
    fields, which the JSON format shows as keys of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            atoms = record.args  # gunicorn's SafeAtoms: "-" for anything missing
            record.request_id = atoms["{x-request-id}o"]
            for field, atom in ACCESS_FIELDS.items():
                setattr(record, field, atoms[atom])
        elif not hasattr(record, "request_id"):
            record.request_id = request_id() if has_request_context() else "-"
        return True


def logging_config(log_format: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The dictConfig of the app and of gunicorn (`logconfig_dict`): one handler on stderr, with
    the request id filter; gunicorn's error and access loggers write through it too."""
    log_format = log_format.lower()
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "timestamp": "time",  # ISO 8601, UTC
            "rename_fields": {"levelname": "level", "name": "logger"},
        }
    elif log_format == "text":
        formatter = {"()": "logging.Formatter", "fmt": TEXT_FORMAT, "defaults": {"request_id": "-"}}
    else:
        raise ValueError(f"LOG_FORMAT must be 'json' or 'text', not {log_format!r}")
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["default"], "propagate": False},
            # gunicorn logs access lines at INFO whatever LOG_LEVEL says
            "gunicorn.access": {"level": "INFO", "handlers": ["default"], "propagate": False},
        },
    }


def configure_logging(app: Flask) -> None:
    """Set up logging unless someone already did: under gunicorn its `logconfig_dict` (the same
    configuration) is in place, and under pytest its capture handlers are."""
    config = logging_config(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])  # checks LOG_FORMAT always
    if not logging.getLogger().handlers:
        logging.config.dictConfig(config)


# --- metrics ---

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """One application's request metrics. In multi-process mode (PROMETHEUS_MULTIPROC_DIR set
    before prometheus_client is imported, as gunicorn.conf.py does) every worker writes its
    figures to that directory and a scrape reads them all; otherwise they live in `registry`.

    prometheus_client chooses its mode when first imported, so it is imported here, when the
    first app with METRICS on is built, never when gunicorn.conf.py imports this module."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # no `*_created` series (multi-process mode has none either)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request, by route template and method",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def start(self) -> None:
        g.metrics_started = time.perf_counter()

    def record(self, response: Response) -> Response:
        started = g.pop("metrics_started", None)
        # The URL rule, not the path: `/api/v1/livechat/department/<department_id>` for every id.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        self.requests.labels(route, method, str(response.status_code)).inc()
        if started is not None:
            self.latency.labels(route, method).observe(time.perf_counter() - started)
        return response

    def exposition(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        data = generate_latest(registry) + generate_latest(DatabaseCollector())  # type: ignore[arg-type]
        return Response(data, headers={"Content-Type": CONTENT_TYPE_LATEST})


class DatabaseCollector:
    """Gauges counted from the database at scrape time (one query each), so every worker
    reports the same truth and nothing needs to be summed."""

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        import db
        from models import Department, DepartmentAgent

        session = db.session()
        states = {"enabled": 0, "disabled": 0, "archived": 0}
        rows = session.execute(
            select(Department.enabled, Department.archived, func.count())
            .group_by(Department.enabled, Department.archived)
        )
        for enabled, archived, count in rows:
            states["archived" if archived else "enabled" if enabled else "disabled"] += count
        departments = GaugeMetricFamily(
            "livechat_departments",
            "Departments by state (archived ones are counted as archived only)",
            labels=["state"],
        )
        for state, count in states.items():
            departments.add_metric([state], count)
        yield departments
        links = session.scalar(select(func.count()).select_from(DepartmentAgent)) or 0
        yield GaugeMetricFamily("livechat_department_agents", "Agent links (an agent in a department)", value=links)


@doc(public=True, errors=(401,), media_type="text/plain")
def serve_metrics() -> Response:
    """Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise ApiError("Unauthorized", 401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    metrics: Metrics = current_app.extensions["metrics"]
    return metrics.exposition()


# --- health ---

health = Blueprint("health", __name__)


@health.get("/healthz")
@doc(public=True, errors=())
def healthz() -> Any:
    """Liveness: the process answers (the database is not touched)."""
    return {"success": True, "status": "ok"}


@health.get("/readyz")
@doc(public=True, errors=(503,))
def readyz() -> Any:
    """Readiness: the database answers and its schema is at the migrations' head."""
    import db

    try:
        with db.engine().connect() as connection:
            current: set[str] = set()
            if inspect(connection).has_table("alembic_version"):  # Alembic's own bookkeeping
                current = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception as error:  # any failure to reach the database means "not ready", never a 500
        log.warning("not ready: database unreachable: %s", error)
        raise ApiError("database unreachable", 503, extra={"status": "unavailable"}) from error
    expected = set(_migration_heads())
    if current != expected:
        found = ", ".join(sorted(current)) or "none"
        reason = f"database schema at revision {found}, expected {', '.join(sorted(expected))}"
        log.warning("not ready: %s", reason)
        raise ApiError(reason, 503, extra={"status": "unavailable"})
    return {"success": True, "status": "ready", "revision": ", ".join(sorted(current))}


def _migration_heads() -> tuple[str, ...]:
    """The head revision(s) of migrations/, read once per process (the code does not change)."""
    heads = current_app.extensions.get("migration_heads")
    if heads is None:
        from alembic.script import ScriptDirectory

        heads = current_app.extensions["migration_heads"] = tuple(ScriptDirectory(str(MIGRATIONS)).get_heads())
    return heads


# --- wiring ---


def init_app(app: Flask) -> None:
    """Request ids, metrics (when METRICS is on) and the health routes. Call after any
    before_request that must come first (security's CORS preflight): ours go in front of it."""
    before = app.before_request_funcs.setdefault(None, [])
    before.insert(0, _assign_request_id)
    app.after_request(_echo_request_id)
    if app.config["METRICS"]:
        metrics = app.extensions["metrics"] = Metrics()
        before.insert(0, metrics.start)
        app.after_request(metrics.record)
        app.add_url_rule("/metrics", "metrics", serve_metrics)
    app.register_blueprint(health)
