"""Workspace use cases: permissions, settings and Rocket.Chat's pagination window.

Each one transaction, raising ApiError; no Flask request objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import db
from errors import ApiError
from models import Permission, Role, Setting, utcnow

# Setting id -> the Python type its value must have (bool is checked before int).
SETTING_TYPES: dict[str, type] = {
    "API_Default_Count": int,
    "API_Upper_Count_Limit": int,
    "API_Allow_Infinite_Count": bool,
    "Omnichannel_enable_department_removal": bool,
    "DEPARTMENT_LIMIT": int,
    "Livechat_enabled": bool,
    "Livechat_Routing_Method": str,
    "Livechat_enable_business_hours": bool,
    "Livechat_business_hour_type": str,
}

# ---------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------


def permission_roles(session: Session) -> dict[str, frozenset[str]]:
    """Every permission with the roles that hold it."""
    return {p.id: frozenset(p.roles) for p in session.scalars(select(Permission))}


def list_permissions(session: Session, updated_since: str | None) -> list[Permission]:
    query = select(Permission).order_by(Permission.id)
    if updated_since is not None:
        query = query.where(Permission.updated_at >= _changed_after(updated_since))
    return list(session.scalars(query))


def _changed_after(updated_since: str) -> datetime:
    """The first stored time that counts as changed after `updated_since` (400 if it is no date)."""
    try:
        # RFC 3339 allows a lowercase `t` and `z`
        since = datetime.fromisoformat(updated_since.upper().replace("Z", "+00:00"))
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        # Clients only ever see milliseconds, but stored times may hold microseconds (the seed
        # migration's): "changed after T" means "shown later than T", i.e. from T's next millisecond.
        since = since.replace(microsecond=since.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
        return since.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a date at the edge of year 1 or 9999
        raise ApiError.meteor(
            "error-roomId-param-invalid", "The \"updatedSince\" query parameter must be a valid date."
        ) from None


def update_permissions(session: Session, changes: list[dict[str, Any]]) -> list[Permission]:
    """Replace the roles of each named permission (all or nothing)."""
    known_roles = set(session.scalars(select(Role.id)))
    rows = {p.id: p for p in session.scalars(select(Permission).with_for_update())}
    for change in changes:
        if change["id"] not in rows:
            raise ApiError("Invalid permission", error_type="error-invalid-permission")
        if len(set(change["roles"])) != len(change["roles"]):
            raise ApiError("Invalid body params", error_type="error-invalid-body-params")
        if not known_roles.issuperset(change["roles"]):
            raise ApiError("Invalid role", error_type="error-invalid-role")
    now = utcnow()
    for change in changes:
        rows[change["id"]].roles = list(change["roles"])
        rows[change["id"]].updated_at = now
    session.commit()
    return sorted(rows.values(), key=lambda p: p.id)


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


def get_setting(session: Session, setting_id: str) -> Setting:
    setting = session.get(Setting, setting_id)
    if setting is None:
        raise ApiError.plain(None)  # Rocket.Chat: 400 {"success": false}
    return setting


ALL_SETTINGS = db.DriverStatement(select(Setting.id, Setting.value))


def all_settings(session: Session) -> dict[str, Any]:
    return dict(ALL_SETTINGS.execute(db.connection_of(session), {}))  # type: ignore[arg-type]



def set_setting(session: Session, setting_id: str, value: Any) -> None:
    setting = session.get(Setting, setting_id, with_for_update=True)
    if setting is None:
        raise ApiError.plain(None)
    expected = SETTING_TYPES.get(setting_id)
    # Integers must fit 32 bits: SQLite would hand larger ones back as floats.
    if (expected is not None and type(value) is not expected) or (expected is int and not -(2**31) <= value < 2**31):
        raise ApiError.meteor("error-invalid-setting-value", "Invalid setting value", method="saveSetting")
    setting.value = value
    session.commit()


# ---------------------------------------------------------------------------
# Pagination (Rocket.Chat's getPaginationItems, docs/compatibility.md §3.8)
# ---------------------------------------------------------------------------


MAX_SQL_INT = 2**63 - 1


def page_window(settings: Mapping[str, Any], offset: float | None, count: float | None) -> tuple[int, int | None]:
    """(offset, limit) from the query; limit None means "all" (`count=0` when allowed)."""
    default = settings.get("API_Default_Count") or 0
    upper = settings.get("API_Upper_Count_Limit") or 0
    default = default if default > 0 else 50
    upper = upper if upper > 0 else 100
    # OFFSET/LIMIT must fit a signed 64-bit integer on both databases, and int(inf) raises:
    # clamp before truncating (an offset past every row is an empty page either way).
    start = int(min(max(offset, 0), MAX_SQL_INT)) if offset else 0
    if count is None:
        return start, min(default, upper)
    limit = int(min(count, MAX_SQL_INT))
    if limit == 0:
        return start, None if settings.get("API_Allow_Infinite_Count", True) else min(default, upper)
    return start, min(limit, upper)
