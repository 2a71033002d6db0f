"""Extension routes for department events: `/api/ext/v1/livechat/…` (issue 15).

Rocket.Chat has no such routes; the `ext` prefix keeps them clear of any it may add. Same auth
headers and error envelope as `/api/v1`. Events come from the change log (events.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

import db
import events
import workspace_service
from access import require_all
from cache import settings
from openapi import doc
from request_input import request_query
from schemas import (
    DepartmentChangesQuerySchema,
    DepartmentChangesSchema,
    DepartmentHistoryQuerySchema,
    DepartmentHistorySchema,
)
from validation import dump

bp = Blueprint("department_events", __name__, url_prefix="/api/ext/v1/livechat")

VIEW_HISTORY = "view-livechat-department-history"
FEED_DEFAULT_LIMIT = 100


@bp.get("/department/<department_id>/history")
@doc(query=DepartmentHistoryQuerySchema, response=DepartmentHistorySchema)
def department_history(department_id: str) -> Any:
    """A department's changes, newest first: who changed what, when (also once it is deleted)."""
    params = request_query(DepartmentHistoryQuerySchema)
    require_all(VIEW_HISTORY)
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    found, total = events.history(db.connection_of(db.session()), department_id, offset, limit)
    return dump(DepartmentHistorySchema, {"events": found, "count": len(found), "offset": offset, "total": total})


@bp.get("/department.changes")
@doc(query=DepartmentChangesQuerySchema, response=DepartmentChangesSchema, errors=(400, 401, 403, 410, 414, 503))
def department_changes() -> Any:
    """Every department change after the cursor `after`, oldest first, and the cursor to continue from."""
    params = request_query(DepartmentChangesQuerySchema)
    require_all(VIEW_HISTORY)
    connection = db.connection_of(db.session())
    after = events.Cursor.parse(params.get("after") or "0")
    events.check_not_pruned(connection, after)
    found, position = events.feed(connection, after, int(params.get("limit") or FEED_DEFAULT_LIMIT))
    return dump(DepartmentChangesSchema, {"events": found, "cursor": str(position)})
