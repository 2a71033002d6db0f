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
import workspace_service
from cache import cached, caches
from errors import ApiError
from request_input import holds_nul

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a view as reachable without logging in."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


@dataclass(frozen=True)
class Caller:
    """Who is calling: a snapshot of the user, cached per data version (cache.py).

    Revoking a token (logout, password change, user deleted or deactivated) is a committed
    write, which empties the cache; expiry is not, so it is kept here and checked on every use.
    """

    id: str
    roles: frozenset[str]
    expires_at: datetime | None = None

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= account_service.now()


def authenticate() -> None:
    """before_request: resolve X-User-Id + X-Auth-Token into `g.caller`, or answer 401."""
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
    caller = cached(caches().callers, (user_id, token), lambda: _find_caller(user_id, token)) if user_id and token else None
    if caller is None or caller.expired():
        raise ApiError.unauthorized()
    g.caller = caller
    g.auth_token = token


def _find_caller(user_id: str, token: str) -> Caller | None:
    found = account_service.authenticated_user(db.session(), user_id, token, token_ttl())
    if found is None:
        return None
    user, expires_at = found
    return Caller(user.id, frozenset(user.roles), expires_at)


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
    roles_of = cached(caches().permissions, "all", lambda: workspace_service.permission_roles(db.session()))
    roles = current_user().roles
    return {p for p in permissions if not roles.isdisjoint(roles_of.get(p, ()))}


def require_any(*permissions: str) -> None:
    """403 unless the caller has at least one of `permissions` (Rocket.Chat's hasAny)."""
    if not granted(*permissions):
        raise ApiError.forbidden()


def require_all(*permissions: str) -> None:
    """403 unless the caller has every one of `permissions` (Rocket.Chat's hasAll)."""
    if granted(*permissions) != set(permissions):
        raise ApiError.forbidden()

