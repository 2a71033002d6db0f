"""The departments service: a standalone, Rocket.Chat-compatible livechat departments API.

`create_app(config)` is the table of contents: configuration, logging, database, the
request pipeline, blueprints, errors and CLI. `app` is the WSGI object gunicorn serves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def config_from_env() -> dict[str, Any]:
    """Every setting read from the environment (the README has the same table)."""
    import db
    import webhooks

    return {
        **webhooks.config_from_env(dict(os.environ)),
        "DATABASE_URL": db.database_url_from_env(ROOT),
        "SQLITE_SYNCHRONOUS": os.environ.get("SQLITE_SYNCHRONOUS", "FULL").upper(),
        "SQLITE_BUSY_TIMEOUT_MS": _env_int("SQLITE_BUSY_TIMEOUT_MS", 5000),
        "MAX_CONTENT_LENGTH": _env_int("MAX_BODY_BYTES", 1024 * 1024),
        "ADMIN_USERNAME": os.environ.get("ADMIN_USERNAME", "admin"),
        "ADMIN_PASS": os.environ.get("ADMIN_PASS") or None,
        "ADMIN_EMAIL": os.environ.get("ADMIN_EMAIL", "admin@localhost"),
        "ARGON2_TIME_COST": _env_int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _env_int("ARGON2_MEMORY_KIB", 65536),
        "ARGON2_PARALLELISM": _env_int("ARGON2_PARALLELISM", 4),
        "DEPARTMENT_LIMIT": os.environ.get("DEPARTMENT_LIMIT") or None,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO").upper(),
        "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text").lower(),
        "METRICS": os.environ.get("METRICS", "off").lower() in ("1", "on", "true", "yes"),
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
        "READ_CACHE": os.environ.get("READ_CACHE", "on").lower() not in ("0", "off", "false", "no"),
        "LOGIN_MAX_FAILURES": _env_int("LOGIN_MAX_FAILURES", 10),
        "LOGIN_FAILURE_WINDOW_SECONDS": _env_int("LOGIN_FAILURE_WINDOW_SECONDS", 300),
        "LOGIN_ACCOUNT_MAX_FAILURES": _env_int("LOGIN_ACCOUNT_MAX_FAILURES", 100),
        "LOGIN_TOKEN_TTL_DAYS": float(os.environ.get("LOGIN_TOKEN_TTL_DAYS") or 90),
        "CORS_ORIGINS": os.environ.get("CORS_ORIGINS", ""),
        "TRUSTED_PROXY_HOPS": _env_int("TRUSTED_PROXY_HOPS", 0),
        "REQUESTS_PER_WORKER": _env_int("REQUESTS_PER_WORKER", 1),
        # docs/etags-and-idempotency.md
        "REQUIRE_IF_MATCH": os.environ.get("REQUIRE_IF_MATCH", "off").lower() in ("1", "on", "true", "yes"),
        "IDEMPOTENCY_KEY_TTL_SECONDS": _env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600),
        "EVENT_RETENTION_DAYS": float(os.environ.get("EVENT_RETENTION_DAYS") or 365),
    }


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; `config` overrides the environment (tests pass their database here)."""
    import access
    import account_service
    import admin_page_routes
    import auth_routes
    import cache
    import cli
    import db
    import department_routes
    import docs_routes
    import errors
    import event_routes
    import json_codec
    import observability
    import openapi
    import request_input
    import security
    import user_routes
    import webhook_routes
    import workspace_routes

    app = Flask(__name__)
    app.config.update(config_from_env())
    app.config.update(config or {})
    app.json = json_codec.JSONProvider(app)
    app.url_map.merge_slashes = False  # `a//b` is a JSON 404, not werkzeug's HTML redirect

    observability.configure_logging(app)
    account_service.configure_password_hashing(
        app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"], app.config["ARGON2_PARALLELISM"]
    )
    db.init_app(app)
    app.extensions["caches"] = cache.Caches(enabled=app.config["READ_CACHE"])

    security.init_app(app)
    observability.init_app(app)  # request ids, metrics, /healthz and /readyz
    request_input.init_app(app)  # the body read, then the worker's turn, before anything holds a connection or lock
    app.before_request(access.authenticate)
    app.before_request(request_input.reject_nul_characters)
    for blueprint in (
        auth_routes.bp,
        user_routes.bp,
        workspace_routes.bp,
        department_routes.bp,
        docs_routes.bp,
        event_routes.bp,
        webhook_routes.bp,
    ):
        app.register_blueprint(blueprint)
    app.register_blueprint(admin_page_routes.bp)  # the admin web page, /admin/
    app.add_url_rule("/api/openapi.json", view_func=access.public(openapi.serve_document))
    errors.register_error_handlers(app)
    cli.register(app)
    return app


def __getattr__(name: str) -> Flask:
    """`app`, the WSGI entry point (`gunicorn -c gunicorn.conf.py app:app`), built on first access
    so that importing this module (tests, tools) does not configure anything."""
    if name == "app":
        wsgi_app = create_app()
        globals()["app"] = wsgi_app
        return wsgi_app
    raise AttributeError(name)
