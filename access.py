"""Who is calling, and what they may do: the checks every protected route runs.

Pipeline (docs/compatibility.md §3.3): authenticate (401) → validate parameters (400) → check
permissions (403) → handler. `authenticate` runs before every /api route that is not
marked `public`; views validate first, then call `require_any`/`require_all`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app, g, request

import account_service
import db
from cache import caches
from errors import ApiError
from observability import request_id
from request_input import holds_nul

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a view as reachable without logging in."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user with the roles and permissions they hold, cached per version of
    the accounts (cache.py).

    Revoking a token (logout, password change, user deleted or deactivated) and changing a role
    or a permission are committed writes, which empty that cache; expiry is not, so it is kept
    here and checked on every use.
    """

    id: str
    username: str
    roles: frozenset[str]
    permissions: frozenset[str]
    expires_at: datetime | None = None

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= account_service.now()


def authenticate() -> None:
    """before_request: resolve X-User-Id + X-Auth-Token into `g.caller`, or answer 401. A request
    that may write names its caller to the change log (db.record_actor)."""
    if request.routing_exception is not None or not request.path.startswith("/api/"):
        return  # unknown routes answer 404/405; health checks and docs are public
    if request.method == "OPTIONS":
        return  # CORS preflights carry no credentials (security.py); the answer is only `Allow`
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "is_public", False):
        return
    user_id = request.headers.get("X-User-Id", "")
    token = request.headers.get("X-Auth-Token", "")
    if holds_nul(user_id + token):
        raise ApiError.unauthorized()
    caller = None
    if user_id and token:
        caller = caches().callers.get_or_build((user_id, token), lambda: _find_caller(user_id, token))
    if caller is None or caller.expired():
        raise ApiError.unauthorized()
    g.caller = caller
    g.auth_token = token
    if request.method not in db.SAFE_METHODS:
        g.actor = {"type": "user", "userId": caller.id, "username": caller.username, "requestId": request_id()}
        # A view may name the writer itself in a statement it runs anyway (idempotency.py: one round trip less).
        records_actor = getattr(view, "records_actor", None)
        if records_actor is None or not records_actor():
            db.record_actor(db.session(), g.actor)


def _find_caller(user_id: str, token: str) -> Caller | None:
    found = account_service.authenticated_caller(db.session(), user_id, token, token_ttl())
    if found is None:
        return None
    return Caller(found.id, found.username, found.roles, found.permissions, found.expires_at)


def token_ttl() -> timedelta | None:
    """How long a login token lives (LOGIN_TOKEN_TTL_DAYS; 0: for ever)."""
    days = current_app.config["LOGIN_TOKEN_TTL_DAYS"]
    return timedelta(days=days) if days > 0 else None


def login_throttle() -> account_service.LoginThrottle:
    config = current_app.config
    return account_service.LoginThrottle(
        config["LOGIN_MAX_FAILURES"],
        timedelta(seconds=config["LOGIN_FAILURE_WINDOW_SECONDS"]),
        config["LOGIN_ACCOUNT_MAX_FAILURES"],
    )


def current_user() -> Caller:
    return g.caller


def granted(*permissions: str) -> set[str]:
    """Which of `permissions` the caller's roles grant."""
    held = current_user().permissions
    return {permission for permission in permissions if permission in held}


def require_any(*permissions: str) -> None:
    """403 unless the caller has at least one of `permissions` (Rocket.Chat's hasAny)."""
    if not granted(*permissions):
        raise ApiError.forbidden()


def require_all(*permissions: str) -> None:
    """403 unless the caller has every one of `permissions` (Rocket.Chat's hasAll)."""
    if granted(*permissions) != set(permissions):
        raise ApiError.forbidden()

