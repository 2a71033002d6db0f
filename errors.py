"""The one error path: every failure becomes Rocket.Chat's `{"success": false, "error": …}`.

Rocket.Chat's error bodies come in a few shapes (docs/compatibility.md §3.5), and clients compare
the strings, so each shape has a named constructor here and views never build error JSON.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import psycopg
from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

NOT_LOGGED_IN = "You must be logged in to do this."
FORBIDDEN = "User does not have the permissions required for this action [error-unauthorized]"
UNAVAILABLE = "Service unavailable: database error"


class ApiError(Exception):
    """An error answered with a Rocket.Chat body. `error_type`/`details` only when Rocket.Chat sends them."""

    def __init__(
        self,
        error: str | None,
        status: int = 400,
        *,
        error_type: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.error_type = error_type
        self.details = details
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": False}
        if self.error is not None:
            body["error"] = self.error
        if self.error_type is not None:
            body["errorType"] = self.error_type
        if self.details:
            body["details"] = self.details
        body.update(self.extra)
        return body

    # --- named constructors, one per Rocket.Chat error shape ---

    @classmethod
    def meteor(cls, code: str, reason: str | None = None, *, method: str | None = None) -> ApiError:
        """A Meteor.Error: `"<reason> [<code>]"` with `errorType` (docs/compatibility.md §3.5)."""
        message = f"{reason} [{code}]" if reason else f"[{code}]"
        details = {"method": method} if method else None
        return cls(message, error_type=code, details=details)

    @classmethod
    def plain(cls, message: str | None, status: int = 400) -> ApiError:
        """A plain Error or `API.v1.failure('text')`: just the string, no errorType."""
        return cls(message, status)

    @classmethod
    def invalid_params(cls, message: str) -> ApiError:
        """An ajv validation failure: `"<message> [invalid-params]"`."""
        return cls(f"{message} [invalid-params]", error_type="invalid-params")

    @classmethod
    def unauthorized(cls) -> ApiError:
        # Rocket.Chat 6.x/7.x body; `status`/`message` are the Restivus-era keys old clients read.
        return cls(
            NOT_LOGGED_IN,
            401,
            extra={"status": "error", "message": NOT_LOGGED_IN},
        )

    @classmethod
    def unauthorized_login(cls) -> ApiError:
        # The same answer for an unknown user and a wrong password (no account probing).
        return cls("Unauthorized", 401, extra={"status": "error", "message": "Unauthorized"})

    @classmethod
    def forbidden(cls) -> ApiError:
        return cls(FORBIDDEN, 403)

    @classmethod
    def unavailable(cls) -> ApiError:
        return cls(UNAVAILABLE, 503)

    @classmethod
    def too_many_requests(cls, seconds: int) -> ApiError:
        # Rocket.Chat's REST rate limiter (ApiClass.enforceRateLimit): a Meteor error answered as
        # 429 `{"success": false, "error": e.message}`, i.e. "<reason> [<code>]" with no errorType.
        reason = (
            "Error, too many requests. Please slow down. "
            f"You must wait {seconds} seconds before trying this endpoint again."
        )
        return cls(f"{reason} [error-too-many-requests]", 429, headers={"Retry-After": str(seconds)})

    # --- the extensions' errors (docs/etags-and-idempotency.md), in the plain shape ---

    @classmethod
    def _extension(cls, code: str, status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
        return cls(code, status, headers=headers, extra={"message": message})

    @classmethod
    def precondition_failed(cls, current_etag: str) -> ApiError:
        message = "The department changed since the ETag in If-Match was read; read it again"
        return cls._extension("error-precondition-failed", 412, message, {"ETag": current_etag})

    @classmethod
    def precondition_required(cls) -> ApiError:
        message = "This server requires If-Match with the department's ETag on this request"
        return cls._extension("error-precondition-required", 428, message)

    @classmethod
    def invalid_idempotency_key(cls) -> ApiError:
        message = "Idempotency-Key must be 1 to 255 printable ASCII characters"
        return cls._extension("error-invalid-idempotency-key", 400, message)

    @classmethod
    def idempotency_key_reused(cls) -> ApiError:
        message = "This Idempotency-Key was already used for a different request"
        return cls._extension("error-idempotency-key-reused", 422, message)

    @classmethod
    def idempotency_key_in_use(cls) -> ApiError:
        message = "A request with this Idempotency-Key is still being processed; retry later"
        return cls._extension("error-idempotency-key-in-use", 409, message)


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_api_error(error: ApiError) -> Response:
    return _json(error.body(), error.status, error.headers)


def handle_validation_error(error: ValidationError) -> Response:
    """A schema that reached the view without its own translation: first message, plain."""
    return handle_api_error(ApiError.plain(first_message(error.messages)))


def handle_http_exception(error: HTTPException) -> Response:
    # Keep the exception's own headers (e.g. `Allow` on 405), but answer JSON, never HTML.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    status = error.code or 500
    messages = {
        404: "Resource not found",
        405: "Method not allowed",
        413: "Request body too large",
        415: "Unsupported Media Type: the body must be JSON (Content-Type: application/json)",
    }
    message = messages.get(status, error.description or error.name)
    return _json({"success": False, "error": message}, status, headers)


def handle_integrity_error(error: IntegrityError) -> Response:
    # A unique constraint caught a race that the service's own check could not see.
    log.info("integrity error answered as 400: %s", error.orig)
    return handle_api_error(ApiError.plain("error-duplicate-entry"))


def handle_data_error(error: DataError) -> Response:
    # A value the database cannot hold or compare: a NUL character on PostgreSQL, a number
    # out of range. The request is at fault, not the server (docs/compatibility.md §D.14: never a 500).
    log.info("data error answered as 400: %s", error.orig)
    return handle_api_error(ApiError.plain("Invalid parameter value"))


def handle_operational_error(error: Exception) -> Response:
    # Every OperationalError is the database's state, not the request's: unreachable, locked past
    # busy_timeout, read-only ("attempt to write a readonly database") or full ("database or disk
    # is full"). The transaction was rolled back, so nothing is half-written; 503 says "try later".
    log.error("database unavailable: %s", getattr(error, "orig", error))
    return _json({"success": False, "error": UNAVAILABLE}, 503)


def handle_interface_error(error: InterfaceError) -> Response:
    # psycopg's "the connection is closed" (a connection lost under the request) is the database's
    # state too; sqlite3's InterfaceError (a value it cannot bind) is our bug and stays a 500.
    if error.connection_invalidated or isinstance(error.orig, psycopg.InterfaceError):
        return handle_operational_error(error)
    return handle_unexpected(error)


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return _json({"success": False, "error": "Internal server error"}, 500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(IntegrityError, handle_integrity_error)
    app.register_error_handler(DataError, handle_data_error)
    app.register_error_handler(OperationalError, handle_operational_error)
    # The same failure straight from the driver, where code uses a raw DBAPI connection.
    app.register_error_handler(sqlite3.OperationalError, handle_operational_error)
    app.register_error_handler(psycopg.OperationalError, handle_operational_error)
    app.register_error_handler(InterfaceError, handle_interface_error)
    app.register_error_handler(Exception, handle_unexpected)


def first_message(messages: Any) -> str:
    """The first leaf message of a marshmallow error tree (validation stops at the first error, like ajv)."""
    while isinstance(messages, dict):
        if not messages:
            return "Invalid request"
        messages = next(iter(messages.values()))
    if isinstance(messages, list):
        return first_message(messages[0]) if messages else "Invalid request"
    return str(messages)
