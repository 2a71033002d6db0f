"""Who is calling: login, logout, me, and the checks every protected route runs.

Pipeline (shared/spec §3.3): authenticate (401) → validate parameters (400) → check
permissions (403) → handler. `authenticate` runs before every /api route that is not
marked `public`; views validate first, then call `require_any`/`require_all`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, request

import db
import services
from cache import cached, caches
from errors import ApiError
from openapi import doc
from schemas import LoginResponseSchema, LoginSchema, LogoutResponseSchema, MeResponseSchema, dump, load, query_args

bp = Blueprint("auth", __name__, url_prefix="/api/v1")

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
        return self.expires_at is not None and self.expires_at <= services.now()


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
    if _holds_nul(user_id + token):
        raise ApiError.unauthorized()
    caller = cached(caches().callers, (user_id, token), lambda: _find_caller(user_id, token)) if user_id and token else None
    if caller is None or caller.expired():
        raise ApiError.unauthorized()
    g.caller = caller
    g.auth_token = token


def _find_caller(user_id: str, token: str) -> Caller | None:
    found = services.authenticated_user(db.session(), user_id, token, token_ttl())
    if found is None:
        return None
    user, expires_at = found
    return Caller(user.id, frozenset(user.roles), expires_at)


def token_ttl() -> timedelta | None:
    """How long a login token lives (LOGIN_TOKEN_TTL_DAYS; 0: for ever)."""
    days = current_app.config["LOGIN_TOKEN_TTL_DAYS"]
    return timedelta(days=days) if days > 0 else None


def login_throttle() -> services.LoginThrottle:
    return services.LoginThrottle(
        current_app.config["LOGIN_MAX_FAILURES"], timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])
    )


def current_user() -> Caller:
    return g.caller


def granted(*permissions: str) -> set[str]:
    """Which of `permissions` the caller's roles grant."""
    roles_of = cached(caches().permissions, "all", lambda: services.permission_roles(db.session()))
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


def request_query(schema_class: type) -> Mapping[str, Any]:
    """The query string loaded with `schema_class`. A load depends on the query string alone, so
    it is kept (caches().queries) and shared read-only with later requests; a failed one is not."""
    queries = caches().queries
    key = (schema_class, request.query_string)
    loaded = queries.get(key)
    if loaded is None:
        loaded = MappingProxyType(load(schema_class, query_args(request.args)))
        queries.put(key, loaded)
    return loaded


def request_body() -> Any:
    """The JSON body (or a form body, as Rocket.Chat's login accepts); `{}` when empty."""
    if request.content_length == 0 or not request.get_data(cache=True):
        return {}
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    if not request.is_json:
        raise ApiError.plain(
            "Unsupported Media Type: the body must be JSON (Content-Type: application/json)", 415
        )
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the json parser recurses once per level: deep nesting is not a 500
        raise ApiError.plain(TOO_DEEP) from None
    if data is None:
        raise ApiError.plain("Malformed JSON body", 400)
    if _deeper_than(data, MAX_JSON_DEPTH):  # before anything walks it recursively
        raise ApiError.plain(TOO_DEEP)
    if _holds_nul(data):
        raise ApiError.plain(NUL_ERROR)
    return data


# No body of this API nests deeper than 4 levels; 32 leaves room and keeps recursion far away.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"Invalid input: JSON nested deeper than {MAX_JSON_DEPTH} levels"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep (iterative: any depth)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


NUL_ERROR = "Invalid input: the NUL character (\\u0000) is not allowed"


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def reject_nul_characters() -> None:
    """before_request: no path, query or auth header may carry NUL (PostgreSQL cannot store it)."""
    if _holds_nul(request.path):
        raise ApiError.plain(NUL_ERROR)
    query = request.query_string
    if b"%00" not in query and b"\x00" not in query:
        return  # nothing in it can decode to NUL: no need to parse it here
    if any(_holds_nul(k) or _holds_nul(v) for k, v in request.args.items(multi=True)):
        raise ApiError.plain(NUL_ERROR)


@bp.post("/login")
@public
@doc(body=LoginSchema, response=LoginResponseSchema, errors=(400, 401, 429), public=True)
def login() -> Any:
    """Log in with a username/email and password, or resume with a token."""
    data = load(LoginSchema, request_body())
    session = db.session()
    if data.get("resume"):
        user, token = services.login_with_token(session, data["resume"], token_ttl())
    else:
        identifier = _identifier(data)
        user, token = services.login(
            session, identifier, data.get("password"),
            # remote_addr is the peer, or what TRUSTED_PROXY_HOPS trusted proxies said (security.py)
            client_address=request.remote_addr, throttle=login_throttle(), token_ttl=token_ttl(),
        )
    return dump(LoginResponseSchema, {"data": {"userId": user.id, "authToken": token, "me": user}})


def _identifier(data: dict[str, Any]) -> dict[str, str]:
    if "user" in data:
        # Rocket.Chat reads `user` as an email when it contains "@".
        return {"email" if "@" in data["user"] else "username": data["user"]}
    if "username" in data:
        return {"username": data["username"]}
    if "email" in data:
        return {"email": data["email"]}
    raise ApiError.unauthorized_login()


@bp.route("/logout", methods=["POST", "GET"])
@doc(response=LogoutResponseSchema, errors=(401,))
def logout() -> Any:
    """Log out: the token of this request stops working."""
    services.logout(db.session(), g.auth_token)
    return dump(LogoutResponseSchema, {})


@bp.get("/me")
@doc(response=MeResponseSchema, errors=(401,))
def me() -> Any:
    """The logged-in user."""
    return dump(MeResponseSchema, services.find_user(db.session(), user_id=current_user().id))
