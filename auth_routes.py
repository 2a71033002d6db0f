"""Login, logout and the logged-in user: `/api/v1/login`, `/logout`, `/me` (docs/compatibility.md §3.3)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

import account_service
import db
from access import current_user, login_throttle, public, token_ttl
from errors import ApiError
from openapi import doc
from request_input import InvalidCharacters, request_body
from schemas import LoginResponseSchema, LoginSchema, LogoutResponseSchema, MeResponseSchema
from validation import dump, load

bp = Blueprint("auth", __name__, url_prefix="/api/v1")


@bp.post("/login")
@public
@doc(body=LoginSchema, response=LoginResponseSchema, errors=(400, 401, 429), public=True)
def login() -> Any:
    """Log in with a username/email and password, or resume with a token."""
    try:
        body = request_body()
    except InvalidCharacters:
        # Counted like a failed login of its address: such a body is no mistake a client makes.
        account_service.refuse_login_body(db.session(), request.remote_addr, login_throttle())
        raise
    data = load(LoginSchema, body)
    session = db.session()
    if data.get("resume"):
        user, token = account_service.login_with_token(session, data["resume"], token_ttl())
    else:
        identifier = _identifier(data)
        user, token = account_service.login(
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
@db.writes  # GET too: it revokes the token
@doc(response=LogoutResponseSchema, errors=(401,))
def logout() -> Any:
    """Log out: the token of this request stops working."""
    account_service.logout(db.session(), g.auth_token)
    return dump(LogoutResponseSchema, {})


@bp.get("/me")
@doc(response=MeResponseSchema, errors=(401,))
def me() -> Any:
    """The logged-in user."""
    return dump(MeResponseSchema, account_service.find_user(db.session(), user_id=current_user().id))

