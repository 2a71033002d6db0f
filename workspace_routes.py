"""Workspace administration: permissions, settings and server info (docs/compatibility.md §4.7–§4.8)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

import db
import workspace_service
from access import public, require_all
from openapi import doc
from request_input import request_body, request_query
from schemas import (
    InfoSchema,
    PermissionsListQuerySchema,
    PermissionsListSchema,
    PermissionsUpdatedSchema,
    PermissionsUpdateSchema,
    SettingSchema,
    SettingValueSchema,
    SuccessSchema,
)
from validation import dump, load
from version import VERSION

bp = Blueprint("admin", __name__, url_prefix="/api")


@bp.get("/info")
@public
@doc(response=InfoSchema, errors=(), public=True)
def info() -> Any:
    """The server version (Rocket.Chat clients read it before logging in)."""
    return dump(InfoSchema, {"version": VERSION})


@bp.get("/v1/permissions.listAll")
@doc(query=PermissionsListQuerySchema, response=PermissionsListSchema)
def list_permissions() -> Any:
    """Every permission with its roles; with `updatedSince`, only those changed after it."""
    params = request_query(PermissionsListQuerySchema)
    permissions = workspace_service.list_permissions(db.session(), params.get("updatedSince"))
    return dump(PermissionsListSchema, {"update": permissions, "remove": []})


@bp.post("/v1/permissions.update")
@doc(body=PermissionsUpdateSchema, response=PermissionsUpdatedSchema)
def update_permissions() -> Any:
    """Set the roles of permissions (needs `access-permissions`)."""
    data = load(PermissionsUpdateSchema, request_body())
    require_all("access-permissions")
    permissions = workspace_service.update_permissions(db.session(), data["permissions"])
    return dump(PermissionsUpdatedSchema, {"permissions": permissions})


@bp.get("/v1/settings/<setting_id>")
@doc(response=SettingSchema)
def get_setting(setting_id: str) -> Any:
    """Read one setting (needs `view-privileged-setting`)."""
    require_all("view-privileged-setting")
    return dump(SettingSchema, workspace_service.get_setting(db.session(), setting_id))


@bp.post("/v1/settings/<setting_id>")
@doc(body=SettingValueSchema, response=SuccessSchema)
def set_setting(setting_id: str) -> Any:
    """Change one setting (needs `edit-privileged-setting`)."""
    data = load(SettingValueSchema, request_body())
    require_all("edit-privileged-setting")
    workspace_service.set_setting(db.session(), setting_id, data["value"])
    return dump(SuccessSchema, {})
