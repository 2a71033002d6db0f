"""Rocket.Chat's own data in: the mongoexport files of its department, agent link and user
collections, turned into our export document's rows and imported like one (data_transfer.py).

Documents that cannot be used are skipped and reported, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import account_service
from data_transfer import (
    InvalidValue,
    NoProgress,
    Progress,
    Report,
    TransferError,
    apply_sections,
    column_value,
    existing_rows,
    import_transaction,
    is_primitive,
    is_string_list,
    lookup_values,
)
from department_service import COLUMNS as DEPARTMENT_KEYS
from models import (
    ID_MAX,
    Department,
    Role,
    User,
    utcnow,
)

# ---------------------------------------------------------------------------
# Rocket.Chat (mongoexport) import
# ---------------------------------------------------------------------------

RC_DEPARTMENTS = "rocketchat_livechat_department.json"
RC_LINKS = "rocketchat_livechat_department_agents.json"
RC_USERS = "users.json"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A required department key missing from a Rocket.Chat document gets this value (and a note).
RC_REQUIRED_DEFAULTS = {"email": "", "enabled": False, "showOnRegistration": False}
RC_LIST_KEYS = {"chatClosingTags", "departmentsAllowedToForward"}


def from_extended_json(value: Any) -> Any:
    """MongoDB Extended JSON (relaxed or canonical) to Python: `$oid` -> str, `$date` -> datetime,
    `$numberLong`/`$numberInt` -> int, `$numberDouble` -> float. Other `$` wrappers stay objects."""
    if isinstance(value, list):
        return [from_extended_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        try:
            if key == "$oid" and isinstance(inner, str):
                return inner
            if key == "$date":
                if isinstance(inner, dict) and "$numberLong" in inner:
                    inner = int(inner["$numberLong"])
                if isinstance(inner, int) and not isinstance(inner, bool):
                    return EPOCH + timedelta(milliseconds=inner)
                if isinstance(inner, str):
                    parsed = datetime.fromisoformat(inner)
                    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
            if key in ("$numberLong", "$numberInt") and isinstance(inner, str):
                return int(inner)
            if key == "$numberDouble" and isinstance(inner, str):
                return float(inner)
        except (ValueError, OverflowError):
            pass  # malformed: left as an object, so it is reported as an unsupported value
    return {key: from_extended_json(item) for key, item in value.items()}


def read_mongoexport(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, document) pairs of a mongoexport file: one document per line, or a `--jsonArray` file."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise TransferError(f"cannot read {path}: {error}") from error
    documents: list[tuple[int, Any]] = []
    if content.lstrip().startswith("["):
        try:
            documents = [(index + 1, item) for index, item in enumerate(json.loads(content))]
        except json.JSONDecodeError as error:
            raise TransferError(f"{path.name}: not valid JSON: {error}") from error
    else:
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise TransferError(f"{path.name}:{number}: not a JSON document: {error.msg}") from error
    result = []
    for number, document in documents:
        if not isinstance(document, dict):
            raise TransferError(f"{path.name}:{number}: expected a JSON object")
        result.append((number, from_extended_json(document)))
    return result


def _usable_id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= ID_MAX else None


def _rc_department(number: int, doc: dict[str, Any], report: Report) -> dict[str, Any] | None:
    department_id = _usable_id(doc.get("_id"))
    name = doc.get("name")
    label = f"{name!r} ({department_id})"
    if department_id is None:
        report.count("departments", "skipped")
        report.note("departments skipped: no usable _id", f"line {number}")
        return None
    if doc.get("type") == "u":
        report.count("departments", "skipped")
        report.note('units (type "u") skipped: this service has departments only', label)
        return None
    table = Department.__table__
    row: dict[str, Any] = {"id": department_id, "extra": {}}
    row.update({column: None for column in DEPARTMENT_KEYS.values()})
    row.update({"archived": None, "type": None, "num_agents": None})
    for key, value in doc.items():
        if key == "_id":
            continue
        if key == "_updatedAt":
            if isinstance(value, datetime):
                row["updated_at"] = value
            else:
                report.note("departments: _updatedAt is not a date, kept as it was", label)
        elif key == "numAgents":
            # Recomputed from the links (absent stays absent when there are none).
            row["num_agents"] = value if type(value) is int else (0 if value is not None else None)
        elif key in ("archived", "type") or key in DEPARTMENT_KEYS:
            column = table.c[DEPARTMENT_KEYS.get(key, key)]
            try:
                checked = column_value(column, value) if value is not None else None
                if key in RC_LIST_KEYS and checked is not None and not is_string_list(checked):
                    raise InvalidValue(key)
            except InvalidValue:
                report.note(f"departments: field {key!r} has an unexpected type, skipped", label)
                continue
            row[column.name] = checked
        elif is_primitive(value):
            row["extra"][key] = value  # a custom field (docs/compatibility.md §1.1)
        else:
            kinds = {dict: "object", list: "list", datetime: "date", type(None): "null"}
            kind = kinds.get(type(value), type(value).__name__)
            report.note(f"departments: field {key!r} ({kind}) is not a string, number or boolean, skipped", label)
    if not isinstance(row["name"], str):
        report.count("departments", "skipped")
        report.note("departments skipped: no name", label)
        return None
    for key, default in RC_REQUIRED_DEFAULTS.items():
        column = DEPARTMENT_KEYS[key]
        if row[column] is None:
            row[column] = default
            report.note(f"departments: {key!r} missing, set to {json.dumps(default)}", label)
    return row


def _rc_user(number: int, doc: dict[str, Any], known_roles: set[str], report: Report) -> dict[str, Any] | None:
    user_id = _usable_id(doc.get("_id"))
    username = doc.get("username")
    if user_id is None:
        report.count("users", "skipped")
        report.note("users skipped: no usable _id", f"line {number}")
        return None
    if not isinstance(username, str) or not 0 < len(username) <= User.__table__.c.username.type.length:
        report.count("users", "skipped")
        report.note("users skipped: no usable username", user_id)
        return None
    row: dict[str, Any] = {"id": user_id, "username": username}
    name = doc.get("name")
    row["name"] = name if isinstance(name, str) and len(name) <= User.__table__.c.name.type.length else username
    emails = doc.get("emails")
    first = emails[0] if isinstance(emails, list) and emails and isinstance(emails[0], dict) else {}
    address = first.get("address")
    usable = isinstance(address, str) and len(address) <= User.__table__.c.email.type.length
    row["email"] = address.lower() if usable else None
    row["email_verified"] = first.get("verified") is True
    row["active"] = doc.get("active") is not False
    for key, column in (("status", "status"), ("statusLivechat", "status_livechat")):
        if isinstance(doc.get(key), str) and len(doc[key]) <= 32:
            row[column] = doc[key]
    for key, column in (("createdAt", "created_at"), ("_updatedAt", "updated_at")):
        if isinstance(doc.get(key), datetime):
            row[column] = doc[key]
    roles = [role for role in doc.get("roles") or [] if isinstance(role, str)]
    row["roles"] = [role for role in roles if role in known_roles]
    for role in roles:
        if role not in known_roles:
            report.note(f"users: role {role!r} does not exist here, dropped", username)
    services_ = doc.get("services")
    password = services_.get("password") if isinstance(services_, dict) else None
    hashed = password.get("bcrypt") if isinstance(password, dict) else None
    if isinstance(hashed, str) and hashed.startswith("$2"):
        row["password_hash"] = account_service.RC_BCRYPT_PREFIX + hashed
    else:
        report.note("users without a Rocket.Chat password (they log in once given one with set-password)", username)
    return row


def _rc_link(number: int, doc: dict[str, Any], report: Report) -> dict[str, Any] | None:
    link_id, agent_id, department_id = (_usable_id(doc.get(key)) for key in ("_id", "agentId", "departmentId"))
    if link_id is None or agent_id is None or department_id is None:
        report.count("department_agents", "skipped")
        report.note("agent links skipped: no usable _id, agentId or departmentId", f"line {number}")
        return None
    row: dict[str, Any] = {"id": link_id, "department_id": department_id, "agent_id": agent_id}
    for key in ("count", "order"):
        value = doc.get(key)
        row[key] = value if type(value) is int and value >= 0 else 0
    if isinstance(doc.get("departmentEnabled"), bool):
        row["department_enabled"] = doc["departmentEnabled"]
    if isinstance(doc.get("_updatedAt"), datetime):
        row["updated_at"] = doc["_updatedAt"]
    return row


def _unique(
    rows: Iterable[dict[str, Any]], key: Any, section: str, reason: str, report: Report
) -> list[dict[str, Any]]:
    """The first row for each key; later ones are skipped with a note."""
    seen: set[Any] = set()
    kept = []
    for row in rows:
        value = key(row)
        if value is None or value not in seen:
            kept.append(row)
            if value is not None:
                seen.add(value)
        else:
            report.count(section, "skipped")
            report.note(reason, str(value))
    return kept


def import_rocketchat(
    session: Session, directory: Path, *, progress: Progress | None = None, dry_run: bool = False
) -> Report:
    """Import Rocket.Chat's departments, agent links and users from mongoexport files, keeping ids."""
    paths = {name: directory / name for name in (RC_DEPARTMENTS, RC_LINKS, RC_USERS)}
    if not paths[RC_DEPARTMENTS].is_file():
        raise TransferError(
            f"{paths[RC_DEPARTMENTS]} not found: export it with "
            "`mongoexport --db=rocketchat --collection=rocketchat_livechat_department --out=…`"
        )
    report = Report()
    read = {name: read_mongoexport(path) if path.is_file() else [] for name, path in paths.items()}
    for name, path in paths.items():
        if not path.is_file():
            report.note(f"{name} not found in {directory}, nothing read from it")
    with import_transaction(session, dry_run=dry_run):
        known_roles = set(session.scalars(select(Role.id)))
        departments = [row for number, doc in read[RC_DEPARTMENTS] if (row := _rc_department(number, doc, report))]
        departments = _unique(
            departments, lambda r: r["id"], "departments", "departments skipped: duplicate _id", report
        )
        units = {doc.get("_id") for _, doc in read[RC_DEPARTMENTS] if doc.get("type") == "u"}
        users = [row for number, doc in read[RC_USERS] if (row := _rc_user(number, doc, known_roles, report))]
        users = _unique(users, lambda r: r["id"], "users", "users skipped: duplicate _id", report)
        # unique regardless of case, as the users table has it (migration 0010)
        users = _unique(users, lambda r: r["username"].lower(), "users", "users skipped: duplicate username", report)
        users = _unique(
            users, lambda r: r["email"] and r["email"].lower(), "users", "users skipped: duplicate email", report
        )
        links = [row for number, doc in read[RC_LINKS] if (row := _rc_link(number, doc, report))]
        # Rocket.Chat has no unique index on (agentId, departmentId): keep the newest of duplicates.
        links.sort(key=lambda r: r.get("updated_at") or EPOCH, reverse=True)
        links = _unique(links, lambda r: r["id"], "department_agents", "agent links skipped: duplicate _id", report)
        links = _unique(
            links, lambda r: (r["department_id"], r["agent_id"]), "department_agents",
            "agent links skipped: the agent is linked to that department twice", report,
        )
        links = _rc_linkable(session, links, departments, users, units, report)

        # Values Rocket.Chat did not store keep what they are here (or get defaults when new).
        local = existing_rows(session, "departments", [row["id"] for row in departments])
        for row in departments:
            row.setdefault("updated_at", (local.get(row["id"]) or {}).get("updated_at") or utcnow())
        apply_sections(
            session,
            {"departments": departments, "department_agents": links, "users": users},
            report,
            progress or NoProgress(),
            keep_local_passwords=True,
        )
    return report


def _rc_linkable(
    session: Session,
    links: list[dict[str, Any]],
    departments: list[dict[str, Any]],
    users: list[dict[str, Any]],
    units: set[Any],
    report: Report,
) -> list[dict[str, Any]]:
    """Links whose user and department exist (in the input or here). Mongo has no foreign keys,
    so a Rocket.Chat database can hold links to deleted users: they are skipped, with a note."""
    enabled = {row["id"]: row["enabled"] for row in departments}
    user_ids = {row["id"] for row in users}
    linked_departments = {row["department_id"] for row in links} - set(enabled)
    enabled.update(lookup_values(session, Department.id, Department.enabled, linked_departments))
    user_ids.update(lookup_values(session, User.id, User.id, {row["agent_id"] for row in links} - user_ids))
    kept = []
    for row in links:
        if row["department_id"] in units:
            reason = "agent links skipped: the department is a unit"
        elif row["department_id"] not in enabled:
            reason = "agent links skipped: unknown department"
        elif row["agent_id"] not in user_ids:
            reason = "agent links skipped: unknown user"
        else:
            row.setdefault("department_enabled", enabled[row["department_id"]])
            row.setdefault("updated_at", utcnow())
            kept.append(row)
            continue
        report.count("department_agents", "skipped")
        report.note(reason, row["id"])
    return kept
