"""Users and the omnichannel roles: `users.*` and `livechat/users/:type` (docs/compatibility.md §4.4–§4.5)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

import account_service
import db
import workspace_service
from access import current_user, granted, require_all
from cache import settings
from errors import ApiError
from idempotency import idempotent
from openapi import doc
from request_input import request_body, request_query
from schemas import (
    LivechatUserAddedSchema,
    LivechatUserAddSchema,
    LivechatUserResponseSchema,
    LivechatUsersListSchema,
    LivechatUsersQuerySchema,
    OtherUserResponseSchema,
    SuccessSchema,
    UserCreateSchema,
    UserIdSchema,
    UserResponseSchema,
    UsersListQuerySchema,
    UsersListSchema,
    parse_sort,
)
from validation import dump, load

bp = Blueprint("users", __name__, url_prefix="/api/v1")

# Giving or taking an omnichannel role needs the permission that manages it, on top of Rocket.Chat's
# own check (view-livechat-manager, which monitors hold too): a monitor must not make itself a
# manager (docs/compatibility.md, livechat/users/:type).
MANAGE_ROLE = {"agent": "manage-livechat-agents", "manager": "manage-livechat-managers"}


def _require_role_management(user_type: str) -> None:
    require_all("view-livechat-manager", *([MANAGE_ROLE[user_type]] if user_type in MANAGE_ROLE else []))


@bp.post("/users.create")
@doc(body=UserCreateSchema, response=UserResponseSchema)
@idempotent
def create_user() -> Any:
    """Create a user (needs `create-user`)."""
    data = load(UserCreateSchema, request_body())
    if not granted("create-user"):
        # Rocket.Chat checks this inside saveUser: a 400 Meteor error, not a 403.
        raise ApiError.meteor("error-action-not-allowed", "Adding user is not allowed", method="insertOrUpdateUser")
    user = account_service.create_user(db.session(), data)
    return dump(UserResponseSchema, {"user": user})


@bp.get("/users.info")
@doc(query=UserIdSchema, response=UserResponseSchema)
def user_info() -> Any:
    """One user, by `userId` or `username`; emails and roles only for oneself or with `view-full-other-user-info`."""
    params = request_query(UserIdSchema)
    user = account_service.find_user(db.session(), user_id=params.get("userId"), username=params.get("username"))
    if user is None:
        raise ApiError.meteor("error-invalid-user", "Invalid user")
    # Emails, roles and dates only for the user themself or with view-full-other-user-info, as
    # Rocket.Chat's getFullUserData (docs/compatibility.md, users.info).
    if user.id == current_user().id or granted("view-full-other-user-info"):
        return dump(UserResponseSchema, {"user": user})
    return dump(OtherUserResponseSchema, {"user": user})


@bp.get("/users.list")
@doc(query=UsersListQuerySchema, response=UsersListSchema)
def list_users() -> Any:
    """All users, paginated (needs `view-user-administration`)."""
    params = request_query(UsersListQuerySchema)
    require_all("view-user-administration")
    session = db.session()
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    users, total = account_service.list_users(session, offset, limit)
    return dump(UsersListSchema, {"users": users, "count": len(users), "offset": offset, "total": total})


@bp.post("/users.delete")
@doc(body=UserIdSchema, response=SuccessSchema)
def delete_user() -> Any:
    """Delete a user with their tokens and department links (needs `delete-user`)."""
    params = load(UserIdSchema, request_body())
    require_all("delete-user")
    session = db.session()
    user = account_service.find_user(session, user_id=params.get("userId"), username=params.get("username"))
    if user is None:
        raise ApiError.meteor("error-invalid-user", "Invalid user")
    if user.id == current_user().id:
        raise ApiError.meteor("error-action-not-allowed", "You cannot delete yourself")
    account_service.delete_user(session, user)
    return dump(SuccessSchema, {})


@bp.get("/livechat/users/<user_type>")
@doc(query=LivechatUsersQuerySchema, response=LivechatUsersListSchema)
def list_livechat_users(user_type: str) -> Any:
    """Agents or managers, paginated and searchable by `text`."""
    params = request_query(LivechatUsersQuerySchema)
    role = account_service.livechat_role(user_type)
    if user_type == "agent":
        if not granted("transfer-livechat-guest", "edit-omnichannel-contact"):
            raise ApiError.plain("unauthorized", 403)
    elif not granted("view-livechat-manager"):
        raise ApiError.plain("unauthorized", 403)
    session = db.session()
    sort = parse_sort(params.get("sort"), account_service.USER_SORT_FIELDS, {"name": 1})
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    users, total = account_service.list_role_members(
        session, role, text=params.get("text"), exclude_id=params.get("excludeId"),
        only_available=bool(params.get("onlyAvailable")), offset=offset, count=limit, sort=sort,
        hide_idle=user_type == "agent" and params.get("showIdleAgents") is False,
    )
    return dump(LivechatUsersListSchema, {"users": users, "count": len(users), "offset": offset, "total": total})


@bp.post("/livechat/users/<user_type>")
@doc(body=LivechatUserAddSchema, response=LivechatUserAddedSchema)
def add_livechat_user(user_type: str) -> Any:
    """Give a user the agent or manager role (needs `view-livechat-manager`, and `manage-livechat-agents`
    or `manage-livechat-managers` for the type)."""
    data = load(LivechatUserAddSchema, request_body())
    _require_role_management(user_type)
    user = account_service.add_role(db.session(), data["username"], account_service.livechat_role(user_type))
    return dump(LivechatUserAddedSchema, {"user": {"_id": user.id, "username": user.username}})


@bp.get("/livechat/users/<user_type>/<user_id>")
@doc(response=LivechatUserResponseSchema)
def get_livechat_user(user_type: str, user_id: str) -> Any:
    """One agent or manager; `user: null` when the user lacks that role."""
    require_all("view-livechat-manager")
    role = account_service.livechat_role(user_type)
    user = account_service.find_user(db.session(), user_id=user_id)
    if user is None:
        raise ApiError.plain("User not found")
    return dump(LivechatUserResponseSchema, {"user": user if user.has_role(role) else None})


@bp.delete("/livechat/users/<user_type>/<user_id>")
@doc(response=SuccessSchema)
def remove_livechat_user(user_type: str, user_id: str) -> Any:
    """Take the agent or manager role away; an agent also leaves every department (same permissions as adding)."""
    _require_role_management(user_type)
    account_service.remove_role(db.session(), user_id, account_service.livechat_role(user_type))
    return dump(SuccessSchema, {})
