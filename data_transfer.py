"""Data in and out of the service: the JSON export document (export, validate, import).
cli.py is the command line over this, rocketchat_import.py and backups.py; nothing here uses click.

Imports are one transaction: the whole input is validated first (types, lengths, references),
then written, and any failure leaves the database as it was. They are idempotent: rows are
matched by id and written only when they differ, so importing the same data twice changes
nothing the second time. `numAgents` is recomputed from the links, never taken from the input.
A user of the input whose username or email belongs to a *different* local user replaces that
local user (the input wins; the summary says so), because a new installation always starts
with an `admin` of its own that would otherwise block restoring the old one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Boolean, Column, Integer, String, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

import account_service
import department_service
import workspace_service
from models import (
    Base,
    Department,
    DepartmentAgent,
    LoginToken,
    Permission,
    Role,
    Setting,
    User,
    UserRole,
    UTCDateTime,
    utcnow,
)

FORMAT = "livechat-departments"
FORMAT_VERSION = 1
CHUNK = 500  # rows per statement (and per progress step)
MAX_ERRORS = 20  # validation errors listed before giving up

# Document key -> (model, columns not exported). Also the order of the export document.
SECTIONS: dict[str, tuple[type[Base], tuple[str, ...]]] = {
    "departments": (Department, ("name_folded",)),  # derived from name
    "department_agents": (DepartmentAgent, ()),
    "users": (User, ()),
    "permissions": (Permission, ()),
    "settings": (Setting, ()),
}
LABELS = {
    "departments": "departments",
    "department_agents": "agent links",
    "users": "users",
    "permissions": "permissions",
    "settings": "settings",
}
OUTCOMES = ("new", "updated", "unchanged", "replaced", "skipped")


class TransferError(Exception):
    """A failure reported to the operator as is; nothing was changed."""


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


@dataclass
class Report:
    """What an import did: counts per section and outcome, and notes grouped by reason."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def count(self, section: str, outcome: str, n: int = 1) -> None:
        if n:
            self.counts.setdefault(section, Counter())[outcome] += n

    def note(self, reason: str, item: str | None = None) -> None:
        items = self.notes.setdefault(reason, [])
        if item is not None:
            items.append(item)

    def lines(self) -> list[str]:
        lines = []
        for section, label in LABELS.items():
            counts = self.counts.get(section)
            if counts:
                parts = [f"{counts[outcome]} {outcome}" for outcome in OUTCOMES if counts[outcome]]
                lines.append(f"{label}: {', '.join(parts) or 'none'}")
        for reason, items in self.notes.items():
            shown = ", ".join(items[:10]) + (f", … and {len(items) - 10} more" if len(items) > 10 else "")
            lines.append(f"note: {reason}" + (f" ({len(items)}): {shown}" if items else ""))
        return lines


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _columns(section: str) -> list[Column[Any]]:
    model, left_out = SECTIONS[section]
    return [column for column in model.__table__.columns if column.name not in left_out]  # type: ignore[attr-defined]


def _table(section: str) -> Any:
    return SECTIONS[section][0].__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    # Full precision (microseconds), so an import restores exactly what was stored.
    return value.isoformat() if isinstance(value, datetime) else value


def export_document(
    session: Session, *, with_password_hashes: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Every department, agent link, user (with roles), permission and setting, read in one
    consistent snapshot, as one JSON-ready document."""
    progress = progress or NoProgress()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    # On SQLite the read transaction (WAL) is a snapshot from its first statement on.
    totals = {section: session.scalar(select(func.count()).select_from(_table(section))) or 0 for section in SECTIONS}
    progress.start(sum(totals.values()))
    roles: dict[str, list[str]] = {}
    for user_id, role_id in session.execute(select(UserRole.user_id, UserRole.role_id).order_by(UserRole.role_id)):
        roles.setdefault(user_id, []).append(role_id)

    document: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exportedAt": _json_value(utcnow()),
        "passwordHashes": with_password_hashes,
    }
    for section in SECTIONS:
        columns = _columns(section)
        if section == "users" and not with_password_hashes:
            columns = [column for column in columns if column.name != "password_hash"]
        table = _table(section)
        rows = []
        for row in session.execute(select(*columns).order_by(table.c.id)).mappings():
            item = {key: _json_value(value) for key, value in row.items()}
            if section == "users":
                item["roles"] = roles.get(item["id"], [])
            rows.append(item)
            if len(rows) % CHUNK == 0:
                progress.advance(CHUNK)
        progress.advance(len(rows) % CHUNK)
        document[section] = rows
    return document


# ---------------------------------------------------------------------------
# Validation of an export document
# ---------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def raise_if_any(self, what: str) -> None:
        if self.messages:
            listed = self.messages[:MAX_ERRORS]
            more = len(self.messages) - len(listed)
            lines = "\n".join(f"  - {message}" for message in listed) + (f"\n  - … and {more} more" if more else "")
            raise TransferError(f"{what}; nothing was imported:\n{lines}")


class InvalidValue(ValueError):
    pass


def column_value(column: Column[Any], value: Any) -> Any:
    """`value` checked against the column's type (JSON dates become aware datetimes)."""
    if value is None:
        if column.nullable:
            return None
        raise InvalidValue(f"{column.name} must not be null")
    kind = column.type
    if isinstance(kind, UTCDateTime):
        if isinstance(value, datetime):
            parsed: datetime | None = value
        else:
            try:
                parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise InvalidValue(f"{column.name} must be an ISO 8601 date and time with a time zone")
        return parsed.astimezone(UTC)
    if isinstance(kind, Boolean):
        if type(value) is not bool:
            raise InvalidValue(f"{column.name} must be true or false")
        return value
    if isinstance(kind, Integer):
        if type(value) is not int:
            raise InvalidValue(f"{column.name} must be an integer")
        return value
    if isinstance(kind, String):  # Text too
        if not isinstance(value, str):
            raise InvalidValue(f"{column.name} must be a string")
        if kind.length is not None and len(value) > kind.length:
            raise InvalidValue(f"{column.name} must be at most {kind.length} characters")
        return value
    return value  # JSON


def _required(column: Column[Any]) -> bool:
    return not column.nullable and column.default is None and column.server_default is None


def is_primitive(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _check_section_row(section: str, row: dict[str, Any]) -> None:
    """Rules beyond the column types."""
    if section == "departments":
        extra = row.get("extra", {})
        if not isinstance(extra, dict) or not all(is_primitive(v) for v in extra.values()):
            raise InvalidValue("extra must be an object of strings, numbers and booleans")
        for key in ("chat_closing_tags", "departments_allowed_to_forward"):
            if row.get(key) is not None and not is_string_list(row[key]):
                raise InvalidValue(f"{key} must be a list of strings")
    elif section == "department_agents":
        if row.get("count", 0) < 0 or row.get("order", 0) < 0:
            raise InvalidValue("count and order must be >= 0")
    elif section == "users":
        if not is_string_list(row.get("roles")):
            raise InvalidValue("roles must be a list of strings")
    elif section == "permissions":
        if not is_string_list(row.get("roles")):
            raise InvalidValue("roles must be a list of role ids")
    elif section == "settings":
        if "value" not in row:
            raise InvalidValue("missing field value")
        expected = workspace_service.SETTING_TYPES.get(row["id"])
        if expected is not None and type(row["value"]) is not expected:
            raise InvalidValue(f"value must be of type {expected.__name__}")


def parse_document(document: Any) -> dict[str, list[dict[str, Any]]]:
    """Check an export document in full; return its rows with typed values."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise TransferError(f'not an export of this service (no "format": "{FORMAT}")')
    if document.get("version") != FORMAT_VERSION:
        raise TransferError(
            f"unsupported export format version {document.get('version')!r} (this version reads {FORMAT_VERSION})"
        )
    unknown = set(document) - set(SECTIONS) - {"format", "version", "exportedAt", "passwordHashes"}
    if unknown:
        raise TransferError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    errors = _Errors()
    data: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        raw_rows = document.get(section, [])
        if not isinstance(raw_rows, list):
            errors.add(f"{section} must be a list")
            continue
        columns = _columns(section)
        known = {column.name for column in columns} | ({"roles"} if section == "users" else set())
        rows, seen = [], set()
        for index, raw in enumerate(raw_rows):
            where = f"{section}[{index}]"
            if not isinstance(raw, dict):
                errors.add(f"{where}: must be an object")
                continue
            if isinstance(raw.get("id"), str):
                where += f" (id {raw['id']!r})"
            row: dict[str, Any] = {}
            try:
                unknown_keys = set(raw) - known
                if unknown_keys:
                    raise InvalidValue(f"unknown field(s) {', '.join(sorted(unknown_keys))}")
                for column in columns:
                    if column.name in raw:
                        row[column.name] = column_value(column, raw[column.name])
                    elif column.name == "id" or _required(column):
                        raise InvalidValue(f"missing field {column.name}")
                    # Otherwise an absent field keeps its value here (or its default in a new row),
                    # e.g. password_hash in an export made without --with-password-hashes.
                if section == "users":
                    row["roles"] = raw.get("roles")
                _check_section_row(section, row)
            except InvalidValue as error:
                errors.add(f"{where}: {error}")
                continue
            if row["id"] in seen:
                errors.add(f"{where}: the id appears twice")
                continue
            seen.add(row["id"])
            if section == "users" and row.get("email"):
                row["email"] = row["email"].lower()
            rows.append(row)
        data[section] = rows
    for key in ("username", "email"):  # unique regardless of case (migration 0010)
        counts = Counter(row[key].lower() for row in data.get("users", []) if row.get(key))
        for value, n in counts.items():
            if n > 1:
                errors.add(f"users: {key} {value!r} appears {n} times")
    pairs = Counter((row["department_id"], row["agent_id"]) for row in data.get("department_agents", []))
    for (department_id, agent_id), n in pairs.items():
        if n > 1:
            errors.add(f"department_agents: agent {agent_id!r} is linked to department {department_id!r} {n} times")
    errors.raise_if_any("the file is not a valid export")
    return data


# ---------------------------------------------------------------------------
# Writing (shared by both imports)
# ---------------------------------------------------------------------------


@contextmanager
def import_transaction(session: Session, *, dry_run: bool) -> Iterator[None]:
    """The whole import as one write transaction, serialised with the service's writers: committed
    at the end, rolled back for a dry run or on any failure (a database refusal becomes a
    TransferError that says nothing was changed)."""
    try:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text(
                    "LOCK TABLE users, user_roles, login_tokens, departments, department_agents, permissions, settings "
                    "IN SHARE ROW EXCLUSIVE MODE"
                )
            )
        yield
        if dry_run:
            session.rollback()
        else:
            session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        raise _database_error(error) from error
    except BaseException:
        session.rollback()
        raise


def lookup_values(session: Session, key: Any, value: Any, ids: Iterable[str]) -> dict[str, Any]:
    """{key: value} of the rows whose `key` is one of `ids`."""
    found: dict[str, Any] = {}
    for chunk in _chunks(sorted(ids)):
        found.update({k: v for k, v in session.execute(select(key, value).where(key.in_(chunk)))})
    return found


def existing_rows(session: Session, section: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    table = _table(section)
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in session.execute(select(table).where(table.c.id.in_(chunk))).mappings():
            found[row["id"]] = dict(row)
    return found


def _upsert(
    session: Session, section: str, rows: list[dict[str, Any]], report: Report, progress: Progress
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Insert new rows and update changed ones (by id). Returns (inserted, updated)."""
    if not rows:
        return [], []
    model = SECTIONS[section][0]
    existing = existing_rows(session, section, [row["id"] for row in rows])
    inserted, updated = [], []
    for row in rows:
        old = existing.get(row["id"])
        if old is None:
            inserted.append(row)
        elif any(old[key] != value for key, value in row.items()):
            updated.append(row)
    for chunk in _chunks(inserted):
        session.execute(insert(model), chunk)
        progress.advance(len(chunk))
    for chunk in _chunks(updated):
        session.execute(update(model), chunk)  # ORM bulk UPDATE by primary key
        progress.advance(len(chunk))
    progress.advance(len(rows) - len(inserted) - len(updated))
    report.count(section, "new", len(inserted))
    report.count(section, "updated", len(updated))
    report.count(section, "unchanged", len(rows) - len(inserted) - len(updated))
    return inserted, updated


def _delete_users(session: Session, user_ids: list[str]) -> set[str]:
    """Remove local users with their roles, sessions and links; returns the departments touched."""
    departments = set(
        session.scalars(select(DepartmentAgent.department_id).where(DepartmentAgent.agent_id.in_(user_ids)))
    )
    session.execute(delete(DepartmentAgent).where(DepartmentAgent.agent_id.in_(user_ids)))
    session.execute(delete(LoginToken).where(LoginToken.user_id.in_(user_ids)))
    session.execute(delete(UserRole).where(UserRole.user_id.in_(user_ids)))
    session.execute(delete(User).where(User.id.in_(user_ids)))
    return departments


def _replace_conflicting_users(session: Session, users: list[dict[str, Any]], report: Report) -> set[str]:
    """Local users holding the username or email of an incoming user under another id are replaced.

    Returns the departments whose links were removed with them.
    """
    incoming_ids = {row["id"] for row in users}
    # Regardless of case: "Admin" coming in takes the place of a local "admin" (migration 0010).
    by_username = {row["username"].lower(): row for row in users}
    by_email = {row["email"].lower(): row for row in users if row.get("email")}
    conflicts: dict[str, tuple[Any, dict[str, Any]]] = {}
    for chunk in _chunks(users):
        usernames = [row["username"].lower() for row in chunk]
        emails = [row["email"].lower() for row in chunk if row.get("email")]
        local = session.execute(
            select(User.id, User.username, User.email, User.password_hash).where(
                or_(func.lower(User.username).in_(usernames), func.lower(User.email).in_(emails))
            )
        )
        for row in local:
            if row.id in incoming_ids:
                continue  # updated in place; a swap of usernames fails on the unique index
            target = by_username.get(row.username.lower()) or by_email[(row.email or "").lower()]
            conflicts[row.id] = (row, target)
    for local_id, (local, target) in conflicts.items():
        if "password_hash" not in target and local.password_hash:
            target["password_hash"] = local.password_hash  # the new identity keeps the local password
        report.note(
            "local users replaced by a user of the input with the same username or email "
            "(their sessions ended, their department links removed)",
            f"{local.username!r} (local id {local_id} -> {target['id']})",
        )
    report.count("users", "replaced", len(conflicts))
    return _delete_users(session, list(conflicts)) if conflicts else set()


def apply_sections(
    session: Session,
    data: dict[str, list[dict[str, Any]]],
    report: Report,
    progress: Progress,
    *,
    keep_local_passwords: bool = False,
) -> None:
    """Write validated rows: referential checks, then permissions, settings, users, departments, links."""
    users = data.get("users", [])
    departments = data.get("departments", [])
    links = data.get("department_agents", [])
    progress.start(sum(len(rows) for rows in data.values()))

    # --- references (inside the transaction, so they hold until commit) ---
    errors = _Errors()
    roles = set(session.scalars(select(Role.id)))
    for section, key in (("users", "roles"), ("permissions", "roles")):
        for row in data.get(section, []):
            unknown = [role for role in row[key] if role not in roles]
            if unknown:
                errors.add(f"{section} {row['id']!r}: unknown role(s) {', '.join(unknown)}")
    touched = _replace_conflicting_users(session, users, report)
    user_names = {row["id"]: row["username"] for row in users}
    department_enabled = {row["id"]: row["enabled"] for row in departments}
    unnamed = {row["agent_id"] for row in links} - set(user_names)
    user_names.update(lookup_values(session, User.id, User.username, unnamed))
    linked_departments = {row["department_id"] for row in links} - set(department_enabled)
    department_enabled.update(lookup_values(session, Department.id, Department.enabled, linked_departments))
    for row in links:
        if row["agent_id"] not in user_names:
            errors.add(f"department_agents {row['id']!r}: unknown user {row['agent_id']!r}")
        if row["department_id"] not in department_enabled:
            errors.add(f"department_agents {row['id']!r}: unknown department {row['department_id']!r}")
    errors.raise_if_any("the input refers to data that does not exist")

    # --- permissions and settings ---
    _upsert(session, "permissions", data.get("permissions", []), report, progress)
    _upsert(session, "settings", data.get("settings", []), report, progress)

    # --- users and their roles ---
    if keep_local_passwords:
        # Rocket.Chat import: a password set (or already migrated to argon2id) here is kept.
        local_hashes = existing_rows(session, "users", [row["id"] for row in users])
        for row in users:
            local = (local_hashes.get(row["id"]) or {}).get("password_hash")
            if "password_hash" in row and local and not local.startswith(account_service.RC_BCRYPT_PREFIX):
                del row["password_hash"]
    user_rows = [{key: value for key, value in row.items() if key != "roles"} for row in users]
    inserted, updated = _upsert(session, "users", user_rows, report, progress)
    wanted_roles = {row["id"]: list(dict.fromkeys(row["roles"])) for row in users}
    current_roles: dict[str, set[str]] = {}
    for chunk in _chunks(list(wanted_roles)):
        for user_id, role_id in session.execute(
            select(UserRole.user_id, UserRole.role_id).where(UserRole.user_id.in_(chunk))
        ):
            current_roles.setdefault(user_id, set()).add(role_id)
    changed = [user_id for user_id, wanted in wanted_roles.items() if set(wanted) != current_roles.get(user_id, set())]
    for chunk in _chunks(changed):
        session.execute(delete(UserRole).where(UserRole.user_id.in_(chunk)))
    role_rows = [{"user_id": user_id, "role_id": role} for user_id in changed for role in wanted_roles[user_id]]
    for chunk in _chunks(role_rows):
        session.execute(insert(UserRole), chunk)
    written = {row["id"] for row in inserted} | {row["id"] for row in updated}
    role_only = len([user_id for user_id in changed if user_id not in written])
    if role_only:  # a user whose only change is their roles counts as updated
        report.count("users", "updated", role_only)
        report.count("users", "unchanged", -role_only)

    # --- departments, with numAgents from the links they will have ---
    # A local link for the same (department, agent) under another id gives way to the input's.
    pairs = {(row["department_id"], row["agent_id"]): row["id"] for row in links}
    stale: set[str] = set()
    for chunk in _chunks(sorted({department_id for department_id, _ in pairs})):
        for link_id, department_id, agent_id in session.execute(
            select(DepartmentAgent.id, DepartmentAgent.department_id, DepartmentAgent.agent_id).where(
                DepartmentAgent.department_id.in_(chunk)
            )
        ):
            if pairs.get((department_id, agent_id), link_id) != link_id:
                stale.add(link_id)
                touched.add(department_id)
    for chunk in _chunks(sorted(stale)):
        session.execute(delete(DepartmentAgent).where(DepartmentAgent.id.in_(chunk)))
    report.count("department_agents", "replaced", len(stale))
    link_department = {
        link_id: department_id
        for link_id, department_id in session.execute(select(DepartmentAgent.id, DepartmentAgent.department_id))
    }
    for row in links:
        if link_department.get(row["id"], row["department_id"]) != row["department_id"]:
            touched.add(link_department[row["id"]])  # a link moving to another department
        link_department[row["id"]] = row["department_id"]
    agents_of = Counter(link_department.values())
    undeclared = [row["id"] for row in departments if "num_agents" not in row]
    local_counts = existing_rows(session, "departments", undeclared) if undeclared else {}
    for row in departments:
        count = agents_of.get(row["id"], 0)
        declared = row["num_agents"] if "num_agents" in row else (local_counts.get(row["id"]) or {}).get("num_agents")
        # Absent numAgents means "never had an agent change" (docs/compatibility.md §1.4); keep it absent.
        new_value = None if declared is None and count == 0 else count
        if "num_agents" in row and new_value != declared:
            report.note("departments: numAgents of the input differs from their links, recomputed", row["id"])
        row["num_agents"] = new_value
        row["name_folded"] = row["name"].casefold()
    _upsert(session, "departments", departments, report, progress)

    # --- links; the username always comes from the user record (docs/compatibility.md §1.3) ---
    for row in links:
        row["username"] = user_names[row["agent_id"]]
    _upsert(session, "department_agents", links, report, progress)
    _sync_link_usernames(session, [row["id"] for row in users])

    others = touched - {row["id"] for row in departments}
    if others:
        department_service.recount_agents(session, sorted(others))
    _verify_agent_counts(session, [row["id"] for row in departments])


def _sync_link_usernames(session: Session, user_ids: list[str]) -> None:
    """Links of renamed users (in departments outside the input too) show the new username."""
    for chunk in _chunks(user_ids):
        stale = session.execute(
            select(DepartmentAgent.id, User.username)
            .join(User, User.id == DepartmentAgent.agent_id)
            .where(DepartmentAgent.agent_id.in_(chunk), DepartmentAgent.username != User.username)
        ).all()
        if stale:
            session.execute(update(DepartmentAgent), [{"id": link_id, "username": name} for link_id, name in stale])


def _verify_agent_counts(session: Session, department_ids: list[str]) -> None:
    """The promise of the import: numAgents equals the number of links (or is absent with none)."""
    for chunk in _chunks(department_ids):
        links = (
            select(func.count()).where(DepartmentAgent.department_id == Department.id).scalar_subquery()
        )
        wrong = session.scalars(
            select(Department.id).where(
                Department.id.in_(chunk), func.coalesce(Department.num_agents, 0) != links
            )
        ).all()
        if wrong:
            raise TransferError(f"numAgents does not match the links of department(s) {', '.join(wrong)}")


def _database_error(error: SQLAlchemyError) -> TransferError:
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return TransferError(f"the database refused the import, nothing was changed: {detail}")


def import_document(
    session: Session, document: Any, *, progress: Progress | None = None, dry_run: bool = False
) -> Report:
    """Import an export document (see export_document) in one transaction."""
    data = parse_document(document)
    report = Report()
    with import_transaction(session, dry_run=dry_run):
        apply_sections(session, data, report, progress or NoProgress())
    return report
