"""Department use cases: each one transaction, raising ApiError (shared/spec §1–§2).

Every write validates the whole request before changing anything and commits once, so a
request that fails anywhere (department or any agent item) changes nothing (decisions.md:
Rocket.Chat half-applies such requests; we do not). The department row is locked before
it is read for change, so concurrent writers to one department serialise: on SQLite the
request's BEGIN IMMEDIATE already does it, on PostgreSQL `with_for_update` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    Row,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.types import NullType
from sqlalchemy.orm import Session

import db
from errors import ApiError
from models import DataVersion, Department, DepartmentAgent, DepartmentChange, User, utcnow

log = logging.getLogger(__name__)

SAVE_METHOD = "livechat:saveDepartment"

Sort = Sequence[tuple[str, int]]  # (wire key, 1 or -1) pairs, as schemas.parse_sort gives them

# Wire key -> column, for the typed department keys.
COLUMNS = {
    "name": "name",
    "email": "email",
    "enabled": "enabled",
    "showOnRegistration": "show_on_registration",
    "showOnOfflineForm": "show_on_offline_form",
    "description": "description",
    "requestTagBeforeClosingChat": "request_tag_before_closing_chat",
    "chatClosingTags": "chat_closing_tags",
    "fallbackForwardDepartment": "fallback_forward_department",
    "departmentsAllowedToForward": "departments_allowed_to_forward",
    "allowReceiveForwardOffline": "allow_receive_forward_offline",
    "offlineMessageChannelName": "offline_message_channel_name",
    "abandonedRoomsCloseCustomMessage": "abandoned_rooms_close_custom_message",
    "waitingQueueMessage": "waiting_queue_message",
}

DEPARTMENT_SORT = {
    "name": Department.name,
    "_id": Department.id,
    "_updatedAt": Department.updated_at,
    "enabled": Department.enabled,
    "email": Department.email,
    "numAgents": Department.num_agents,
    "description": Department.description,
    "showOnRegistration": Department.show_on_registration,
    "showOnOfflineForm": Department.show_on_offline_form,
    "archived": Department.archived,
}
# Fields autocomplete `conditions` may test (schemas.AUTOCOMPLETE_CONDITION_FIELDS checks the values).
CONDITION_COLUMNS = {
    "_id": Department.id,
    "name": Department.name,
    "email": Department.email,
    "enabled": Department.enabled,
    "archived": Department.archived,
    "showOnRegistration": Department.show_on_registration,
    "showOnOfflineForm": Department.show_on_offline_form,
    "type": Department.type,
    "numAgents": Department.num_agents,
}
AGENT_SORT = {
    "username": DepartmentAgent.username,
    "agentId": DepartmentAgent.agent_id,
    "_id": DepartmentAgent.id,
    "count": DepartmentAgent.count,
    "order": DepartmentAgent.order,
    "departmentEnabled": DepartmentAgent.department_enabled,
    "_updatedAt": DepartmentAgent.updated_at,
}


def _not_found() -> ApiError:
    return ApiError.meteor("error-department-not-found", "Department not found", method=SAVE_METHOD)


def _like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches it literally (no wildcards, no regex)."""
    return text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_archived() -> Any:
    return Department.archived.is_(True)


def _not_archived() -> Any:
    # `IS NOT` (not `IS NULL OR = false`): the planner then walks the name index in order and
    # filters inside it (ix_departments_name_id_archived_type), instead of sorting every row.
    return Department.archived.is_not(True)


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


# Every column ListFilter.lists reads from a content key: a change to none of them leaves what
# it says of a department as it was. (Agent links are not in a key: for an agent's departments
# it cannot tell.)
FILTER_COLUMNS = frozenset({"id", "type", "archived", "name", "name_folded", "enabled"})


@dataclass(frozen=True)
class ListFilter:
    """The filters of the department lists (shared/spec §2.1, §2.6)."""

    text: str | None = None
    enabled_only: bool = False
    exclude_id: str | None = None
    archived: bool | None = False  # False: hide archived, True: only archived, None: both
    agent_id: str | None = None  # only departments this agent is linked to

    def apply(self, query: Select[Any]) -> Select[Any]:
        """`query` narrowed by this filter's shape; the values are bound at execution (`params`)."""
        # Rocket.Chat EE keeps units (type 'u') in the same collection; lists show departments only.
        query = query.where(or_(Department.type.is_(None), Department.type == "d"))
        if self.archived is True:
            query = query.where(_is_archived())
        elif self.archived is False:
            query = query.where(_not_archived())
        if self.text:
            query = query.where(Department.name_folded.like(bindparam("text"), escape="\\"))
        if self.enabled_only:
            query = query.where(Department.enabled.is_(True))
        if self.exclude_id is not None:
            query = query.where(Department.id != bindparam("exclude_id"))
        if self.agent_id is not None:
            linked = select(DepartmentAgent.department_id).where(DepartmentAgent.agent_id == bindparam("agent_id"))
            query = query.where(Department.id.in_(linked))
        return query

    @cached_property
    def watched(self) -> frozenset[str]:
        """The columns (db.AGENT_LINKS: the agent links) whose change can move a department into
        or out of this filter."""
        columns = {"id", "type"}
        if self.archived is not None:
            columns.add("archived")
        if self.text:
            columns |= {"name", "name_folded"}
        if self.enabled_only:
            columns.add("enabled")
        if self.agent_id is not None:
            columns.add(db.AGENT_LINKS)
        return frozenset(columns)

    def lists(self, key: tuple[Any, ...]) -> bool | None:
        """Whether this filter lists the department with this content key (DEPARTMENT_KEY), as
        `apply` does in SQL; None when the key cannot tell (agent links are not in it)."""
        def true(column: str) -> bool:  # SQL's `IS TRUE`: SQLite stores booleans as 0/1
            return bool(key[KEY_INDEX[column]])

        if key[KEY_INDEX["type"]] not in (None, "d"):
            return False
        if (self.archived is True and not true("archived")) or (self.archived is False and true("archived")):
            return False
        if self.enabled_only and not true("enabled"):
            return False
        if self.exclude_id is not None and key[KEY_INDEX["id"]] == self.exclude_id:
            return False
        if self.text and self.text.casefold() not in (key[KEY_INDEX["name_folded"]] or ""):
            return False
        return None if self.agent_id is not None else True

    def count_change(self, change: Any) -> int | None:
        """How one logged change (cache.Change) moves the number of departments listed: 1 or 0,
        or None when the log cannot tell (anything, a deletion, a created department whose
        filter columns may have changed since, a column the filter reads)."""
        fields = change.fields
        if change.department_id == db.ANY_DEPARTMENT or fields is None or fields == db.DELETED:
            return None
        if fields == db.CREATED:
            listed = None if change.filtered_key is None else self.lists(change.filtered_key)
            return None if listed is None else int(listed)
        return None if fields & self.watched else 0

    def total_change(self, changes: Iterable[Any]) -> int | None:
        """How much these changes move the number of departments listed (None: count again)."""
        moved = 0
        for change in changes:
            step = self.count_change(change)
            if step is None:
                return None
            moved += step
        return moved

    def shape(self) -> ListFilter:
        """This filter with its values blanked out: all filters of one shape share one statement."""
        return replace(
            self,
            text="?" if self.text else None,
            exclude_id=None if self.exclude_id is None else "?",
            agent_id=None if self.agent_id is None else "?",
        )

    def params(self) -> dict[str, Any]:
        """The values `apply` binds."""
        return {
            "text": f"%{_like_literal(self.text)}%" if self.text else None,
            "exclude_id": self.exclude_id,
            "agent_id": self.agent_id,
        }


def _ordered(query: Select[Any], sort: Sort, columns: dict[str, Any], tie_break: Any) -> Select[Any]:
    return query.order_by(*(_order(columns[key], direction) for key, direction in sort), tie_break)


def _order(column: Any, direction: int) -> Any:
    # Absent values sort first ascending and last descending, as in Mongo (and SQLite);
    # PostgreSQL's default is the opposite. Said only where NULL can occur: on a NOT NULL
    # column the clause would keep PostgreSQL from walking an index in order (a sort of
    # every row instead, bench/README.md).
    if not column.expression.nullable:
        return column.desc() if direction < 0 else column.asc()
    return column.desc().nulls_last() if direction < 0 else column.asc().nulls_first()


# The reads of the department API (those behind GET) are built for speed, as bench/README.md
# measured them:
# * they select plain rows, not ORM objects, and run on the session's connection (Core): the
#   responses only read them, and the ORM's loading machinery cost more than the queries;
# * each statement is built once per shape (filters present, sort, paged or not) and reused with
#   its values as bound parameters: SQLAlchemy then skips building the expression and computing
#   its cache key, which cost more than running it. The caches are bounded (sorts come from clients).
DEPARTMENT_ROW = select(Department.__table__)
AGENT_ROW = select(DepartmentAgent.__table__)
DEPARTMENT_BY_ID = DEPARTMENT_ROW.where(Department.id == bindparam("department_id"))
LINKED_DEPARTMENT_BY_ID = ListFilter(archived=None, agent_id="?").apply(DEPARTMENT_BY_ID)
AGENTS_OF = AGENT_ROW.where(DepartmentAgent.department_id == bindparam("department_id"))
AGENTS_BY_USERNAME = AGENTS_OF.order_by(DepartmentAgent.username, DepartmentAgent.agent_id)
AGENT_COUNT = select(func.count()).where(DepartmentAgent.department_id == bindparam("department_id"))
STATEMENTS_PER_KIND = 256


DATA_VERSION = select(DataVersion.version).where(DataVersion.id == db.DATA).scalar_subquery()


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _count_statement(shape: ListFilter) -> Select[Any]:
    return shape.apply(select(DATA_VERSION, func.count()).select_from(Department))


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _listed_statement(shape: ListFilter) -> Select[Any]:
    return shape.apply(select(Department.id)).where(Department.id == bindparam("department_id"))


# A department's content key: every column as the database stores it (JSON as its text), with
# no type processing. Rows with equal keys dump to equal responses, so a page can reuse the
# dumps of rows read before (departments.py) and only dump the rows that changed.
def _stored(column: Any) -> Any:
    return cast(column, Text) if isinstance(column.type, JSON) else type_coerce(column, NullType())


DEPARTMENT_KEY = [_stored(column).label(f"key_{column.name}") for column in Department.__table__.columns]
DEPARTMENTS_WITH_KEYS = select(Department.__table__, *DEPARTMENT_KEY).where(
    Department.id.in_(bindparam("ids", expanding=True))
)


KEY_INDEX = {column.key: position for position, column in enumerate(Department.__table__.columns)}


# The change log as each worker reads it (cache.ChangeFeed): every change after a version (the
# `since` parameter), each with its department's content key, read in the same statement (one
# snapshot).
@lru_cache(maxsize=4)
def changes_query(dialect: Any) -> str:
    """Two things keep it cheap on a log the planner has no statistics for yet (a new database,
    before autovacuum's first ANALYZE; every benchmark run): the versions are bounded above by
    the snapshot's own data version (no logged change is newer, but the planner then expects a
    few rows, not a third of the table), and on PostgreSQL each changed department is looked up
    by its key (LATERAL, fenced by OFFSET 0) instead of hashing every department. 40-60 µs of
    server time a read instead of 130-450 (README, Performance). SQLite's planner already looks
    them up one by one."""
    logged = (DepartmentChange.version, DepartmentChange.department_id, DepartmentChange.fields)
    changed = Department.id == DepartmentChange.department_id
    if dialect.name == "postgresql":
        key = select(*DEPARTMENT_KEY).where(changed).offset(0).lateral("changed")
        statement = select(*logged, key).select_from(DepartmentChange).outerjoin(key, true())
    else:
        statement = select(*logged, *DEPARTMENT_KEY).select_from(DepartmentChange).outerjoin(Department, changed)
    statement = statement.where(
        DepartmentChange.version > literal_column("{since}"), DepartmentChange.version <= DATA_VERSION
    ).order_by(DepartmentChange.version)
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    # A parameter, not a literal: the database plans it once per connection (prepared).
    return sql.replace("{since}", "%(since)s" if dialect.paramstyle == "pyformat" else ":since")


@dataclass(frozen=True)
class ListedPage:
    """What a list page showed, enough to tell whether a later change can alter it
    (cache.ListCache): a change alters a page when it changes one of its rows, or a column
    its filter reads (rows could join or leave), or a column its order reads in a department
    the filter lists (rows could move), or deletes a department (it may have been before the
    page), or creates one that is listed up to the page's end. Anything unknown counts as
    altering it."""

    where: ListFilter
    sort: tuple[tuple[str, int], ...]
    ids: frozenset[str]
    last_key: tuple[Any, ...] | None  # the content key of the page's last row
    full: bool  # as many rows as asked: a department sorted after the last row stays off it
    text_in_byte_order: bool  # every text column sorts byte-wise (SQLite); else only `name` does

    @cached_property
    def sorted_by(self) -> frozenset[str]:
        """The columns whose change can move a department within the list."""
        return frozenset({"id"} | {DEPARTMENT_SORT[field].key for field, _ in self.sort})

    def unchanged_by(self, change: Any) -> bool:
        """Whether a logged change (cache.Change) leaves this page as it was."""
        if change.department_id in self.ids:
            return False
        if change.fields == db.CREATED:
            key = change.key
            return self._not_listed(change) or (key is not None and self.full and self.sorts_after_last(key) is True)
        if self.where.count_change(change) != 0:
            return False  # it may have joined or left the filter's rows, or the log cannot tell
        # Neither into nor out of the filter; and either not moved in the order, or moved but
        # not listed by the filter (before the change as after it: no column it reads changed).
        return not (change.fields & self.sorted_by) or self._not_listed(change)

    def _not_listed(self, change: Any) -> bool:
        """Whether the filter surely does not list the changed department (cache.FilterKey)."""
        key = change.filtered_key
        return key is not None and self.where.lists(key) is False

    def sorts_after_last(self, key: tuple[Any, ...]) -> bool | None:
        """Whether a department with this content key sorts after the page's last row, as
        `_ordered` sorts (absent values first ascending, last descending; `_id` breaks ties).
        None when Python cannot compare as the database does (text in a locale's order)."""
        if self.last_key is None:
            return None
        for field, direction in (*self.sort, ("_id", 1)):
            column = DEPARTMENT_SORT[field].key
            mine, last = key[KEY_INDEX[column]], self.last_key[KEY_INDEX[column]]
            if mine == last:
                continue
            if mine is None or last is None:
                return (mine is None) == (direction < 0)
            if type(mine) is not type(last) or (isinstance(mine, str) and column != "name" and not self.text_in_byte_order):
                return None
            return (mine > last) == (direction > 0)
        return False  # the same row


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _page_statement(shape: ListFilter, sort: Sort, paged: bool, keys_only: bool = False) -> Select[Any]:
    columns = select(*DEPARTMENT_KEY) if keys_only else DEPARTMENT_ROW
    query = _ordered(shape.apply(columns), sort, DEPARTMENT_SORT, Department.id).offset(bindparam("offset"))
    return query.limit(bindparam("limit")) if paged else query


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _agent_page_statement(sort: Sort, paged: bool) -> Select[Any]:
    query = _ordered(AGENTS_OF, sort, AGENT_SORT, DepartmentAgent.id).offset(bindparam("offset"))
    return query.limit(bindparam("limit")) if paged else query


def _rows(session: Session, query: Select[Any], params: dict[str, Any]) -> list[Row[Any]]:
    return session.connection().execute(query, params).all()  # one fetchall, not a fetch per row


def count_departments(session: Session, where: ListFilter) -> tuple[int, int]:
    """The data version and the number of departments matching `where` (a list's `total`), as of
    one snapshot (cache.TotalCache moves a total by the changes logged after it)."""
    version, total = session.connection().execute(_count_statement(where.shape()), where.params()).one()
    return int(version), int(total or 0)


def is_listed(session: Session, where: ListFilter, department_id: str) -> bool:
    """Whether `where` lists the department `department_id` (one primary-key lookup)."""
    params = {**where.params(), "department_id": department_id}
    return session.connection().execute(_listed_statement(where.shape()), params).first() is not None


def page_departments(session: Session, where: ListFilter, sort: Sort, offset: int, limit: int | None) -> list[Row[Any]]:
    """One page of departments, in `sort` order with `_id` as the tie-break."""
    query = _page_statement(where.shape(), tuple(sort), limit is not None)
    return _rows(session, query, {**where.params(), "offset": offset, "limit": limit})


def page_department_keys(
    session: Session, where: ListFilter, sort: Sort, offset: int, limit: int | None
) -> list[tuple[Any, ...]]:
    """The content keys (DEPARTMENT_KEY) of the page `page_departments` reads; a key's first value is the id."""
    query = _page_statement(where.shape(), tuple(sort), limit is not None, keys_only=True)
    rows = session.connection().execute(query, {**where.params(), "offset": offset, "limit": limit}).all()
    return [tuple(row) for row in rows]


def departments_with_keys(session: Session, ids: list[str]) -> list[tuple[tuple[Any, ...], Row[Any]]]:
    """(content key, row) of these departments, both read by one statement so they always agree."""
    width = len(DEPARTMENT_KEY)
    rows = session.connection().execute(DEPARTMENTS_WITH_KEYS, {"ids": ids}).all()
    return [(tuple(row)[-width:], row) for row in rows]


def get_department(session: Session, department_id: str, *, agent_id: str | None = None) -> Row[Any] | None:
    """A department by id; with `agent_id`, only if that agent is linked to it."""
    query = DEPARTMENT_BY_ID if agent_id is None else LINKED_DEPARTMENT_BY_ID
    rows = _rows(session, query, {"department_id": department_id, "agent_id": agent_id})
    return rows[0] if rows else None


def department_agents(session: Session, department_id: str) -> list[Row[Any]]:
    return _rows(session, AGENTS_BY_USERNAME, {"department_id": department_id})


def list_department_agents(
    session: Session, department_id: str, sort: Sort, offset: int, limit: int | None
) -> tuple[list[Row[Any]], int]:
    """One page of a department's agent links (an unknown department simply has none)."""
    params = {"department_id": department_id, "offset": offset, "limit": limit}
    total = session.connection().execute(AGENT_COUNT, params).scalar() or 0
    return _rows(session, _agent_page_statement(tuple(sort), limit is not None), params), total


def departments_by_ids(session: Session, ids: list[str]) -> list[Department]:
    query = select(Department).where(Department.id.in_(ids)).order_by(Department.name, Department.id)
    return list(session.scalars(query))


def autocomplete(
    session: Session, selector: dict[str, Any], *, show_archived: bool, agent_id: str | None
) -> list[Department]:
    """Departments whose name starts with `term` (case-insensitive), minus `exceptions`,
    narrowed by the safe `conditions` that schemas.check_selector let through."""
    query = select(Department)
    term = (selector.get("term") or "").strip()
    if term:
        query = query.where(Department.name_folded.like(f"{_like_literal(term)}%", escape="\\"))
    if selector.get("exceptions"):
        query = query.where(Department.id.not_in(selector["exceptions"]))
    if not show_archived:
        query = query.where(_not_archived())
    if agent_id is not None:
        query = ListFilter(archived=None, agent_id="?").apply(query)
    for key, value in (selector.get("conditions") or {}).items():
        column = CONDITION_COLUMNS[key]
        if isinstance(value, dict):
            (operator, ids), = value.items()
            query = query.where(column.in_(ids) if operator == "$in" else column.not_in(ids))
        else:
            query = query.where(column == value)
    return list(session.scalars(query.order_by(Department.name, Department.id), {"agent_id": agent_id}))


def agent_departments(session: Session, agent_id: str, *, enabled_only: bool) -> list[DepartmentAgent]:
    """An agent's links whose department exists, each with `department_name` set."""
    query = (
        select(DepartmentAgent, Department.name)
        .join(Department, Department.id == DepartmentAgent.department_id)
        .where(DepartmentAgent.agent_id == agent_id)
        .order_by(Department.name, Department.id)
    )
    if enabled_only:
        query = query.where(DepartmentAgent.department_enabled.is_(True))
    links = []
    for link, name in session.execute(query):
        link.department_name = name  # type: ignore[attr-defined]
        links.append(link)
    return links


def department_limit(settings: Mapping[str, Any], override: str | int | None) -> int:
    """The maximum number of departments (0 = unlimited): the environment wins over the setting."""
    if override not in (None, ""):
        return int(override)  # type: ignore[arg-type]
    return int(settings.get("DEPARTMENT_LIMIT") or 0)


def creation_available(session: Session, limit: int) -> bool:
    # Like Rocket.Chat CE, archived departments count toward the limit.
    return limit <= 0 or (session.scalar(select(func.count()).select_from(Department)) or 0) < limit


# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------
# A bulk statement (update/delete) names the departments it changes in its `department_ids`
# execution option, for the change log that keeps other departments' cached answers (db.py);
# one that does not counts as changing every department.


def save_department(
    session: Session,
    department_id: str | None,
    data: dict[str, Any],
    agents: dict[str, list[dict[str, Any]]] | None,
    *,
    limit: int,
) -> tuple[Department, list[Row[Any]]]:
    """Create (no id) or merge-update a department and upsert its agents, atomically; returns
    the department and its agent links (read before the commit: no second transaction).

    `data` holds only keys the client sent, already type-checked by schemas; the checks
    here are the ones that need the database, in Rocket.Chat's order (shared/spec §2.4a).
    """
    department: Department | None = None
    if department_id is None:
        if not creation_available(session, limit):
            raise ApiError.meteor(
                "error-max-departments-number-reached", "Maximum number of departments reached", method=SAVE_METHOD
            )
    else:
        department = _locked(session, department_id)
        if department is None:
            raise _not_found()
        if department.archived and data.get("enabled"):
            raise ApiError.meteor(
                "error-archived-department-cant-be-enabled", "Archived departments cant be enabled", method=SAVE_METHOD
            )

    requires_tags = data.get("requestTagBeforeClosingChat", department and department.request_tag_before_closing_chat)
    tags = data.get("chatClosingTags", department and department.chat_closing_tags)
    if requires_tags and not tags:
        raise ApiError.meteor(
            "error-validating-department-chat-closing-tags",
            "At least one closing tag is required when the department requires tag(s) on closing conversations.",
            method=SAVE_METHOD,
        )
    fallback = data.get("fallbackForwardDepartment")
    if fallback and department_id is not None and fallback == department_id:
        # Rocket.Chat sends this one without details.
        raise ApiError.meteor(
            "error-fallback-department-circular",
            "Cannot save department. Circular reference between fallback department and department",
        )
    if fallback and session.get(Department, fallback) is None:
        raise ApiError.meteor("error-fallback-department-not-found", "Fallback department not found", method=SAVE_METHOD)

    enabled_before = department.enabled if department is not None else None
    if department is None:
        department = Department()
        session.add(department)
    for key, value in data.items():
        if key in COLUMNS:
            setattr(department, COLUMNS[key], value)
    custom = {key: value for key, value in data.items() if key not in COLUMNS}
    if custom:
        department.extra = {**(department.extra or {}), **custom}
    department.updated_at = utcnow()
    session.flush()

    if enabled_before is not None and enabled_before != department.enabled:
        _set_links_enabled(session, department.id, department.enabled)
    if agents:
        _apply_agent_changes(session, department, agents.get("upsert") or [], agents.get("remove") or [])
        session.refresh(department)  # the response shows numAgents, recounted in SQL
    # A department created without agents has none: no query for them.
    links = department_agents(session, department.id) if agents or department_id is not None else []
    session.commit()
    return department, links


def save_department_agents(session: Session, department_id: str, changes: dict[str, list[dict[str, Any]]]) -> None:
    """`POST livechat/department/:_id/agents`: removals first, then upserts (shared/spec §2.11)."""
    department = _locked(session, department_id)
    if department is None:
        raise ApiError.meteor("error-department-not-found", "Department not found")
    _apply_agent_changes(session, department, changes.get("upsert") or [], changes.get("remove") or [])
    session.commit()


def archive(session: Session, department_id: str) -> None:
    """Archive: hidden from lists, disabled, links disabled (shared/spec §1.6)."""
    department = _locked(session, department_id)
    if department is None:
        raise ApiError.plain("department-not-found")
    if department.archived is True and department.enabled is False:
        return  # already archived: nothing changes, 200 all the same
    department.archived = True
    department.enabled = False
    department.updated_at = utcnow()
    _set_links_enabled(session, department.id, False)
    session.commit()


def unarchive(session: Session, department_id: str) -> None:
    """Unarchive: visible again but still disabled; its links are re-enabled (Rocket.Chat's rule)."""
    department = _locked(session, department_id)
    if department is None:
        raise ApiError.meteor("department-not-found")
    if department.archived is False:
        return
    department.archived = False
    department.updated_at = utcnow()
    _set_links_enabled(session, department.id, True)
    session.commit()


def remove_department(session: Session, department_id: str) -> None:
    """Delete a department, its agent links, and every reference other departments hold to it."""
    department = _locked(session, department_id)
    if department is None:
        raise ApiError.plain("error-department-not-found")
    session.execute(
        delete(DepartmentAgent)
        .where(DepartmentAgent.department_id == department_id)
        .execution_options(department_ids=[department_id])
    )
    session.delete(department)
    now = utcnow()
    # Rocket.Chat's own clean-up of this field never matches (shared/spec §1.7); ours does.
    session.execute(
        update(Department)
        .where(Department.fallback_forward_department == department_id)
        .values(fallback_forward_department=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    referring = session.scalars(
        select(Department)
        .where(cast(Department.departments_allowed_to_forward, String).like(f"%{_like_literal(department_id)}%", escape="\\"))
        .with_for_update()
    )
    for other in referring:
        allowed = [d for d in other.departments_allowed_to_forward or [] if d != department_id]
        if allowed != other.departments_allowed_to_forward:
            other.departments_allowed_to_forward = allowed
            other.updated_at = now
    session.commit()


# ---------------------------------------------------------------------------
# Helpers of the writes
# ---------------------------------------------------------------------------


LOCKED_DEPARTMENT = select(Department).where(Department.id == bindparam("department_id")).with_for_update()
# Each agent's username and existing link, in one query. Ids and usernames only: User objects
# would also load every user's roles.
AGENTS_AND_LINKS = (
    select(User.id, User.username, DepartmentAgent)
    .outerjoin(
        DepartmentAgent,
        and_(DepartmentAgent.agent_id == User.id, DepartmentAgent.department_id == bindparam("department_id")),
    )
    .where(User.id.in_(bindparam("ids", expanding=True)))
)


def _locked(session: Session, department_id: str) -> Department | None:
    return session.scalars(LOCKED_DEPARTMENT, {"department_id": department_id}).one_or_none()


def _set_links_enabled(session: Session, department_id: str, enabled: bool) -> None:
    session.execute(
        update(DepartmentAgent)
        .where(DepartmentAgent.department_id == department_id)
        .values(department_enabled=true() if enabled else false(), updated_at=utcnow())
        .execution_options(synchronize_session=False, department_ids=[department_id])
    )


RECOUNT_AGENTS = (
    update(Department)
    .where(Department.id.in_(bindparam("ids", expanding=True)))
    .values(
        num_agents=select(func.count()).where(DepartmentAgent.department_id == Department.id).scalar_subquery(),
        updated_at=bindparam("now", type_=Department.__table__.c.updated_at.type),
    )
    .execution_options(synchronize_session=False)
)


def recount_agents(session: Session, department_ids: Iterable[str]) -> None:
    """Set numAgents to the number of links, and touch _updatedAt (shared/spec §1.4)."""
    department_ids = list(department_ids)
    session.execute(
        RECOUNT_AGENTS,
        {"ids": department_ids, "now": utcnow()},
        # for the change log (db.py): which departments, and what changes in them
        execution_options={"department_ids": department_ids, "department_fields": ("num_agents", "updated_at")},
    )


def _apply_agent_changes(
    session: Session, department: Department, upsert: list[dict[str, Any]], remove: list[dict[str, Any]]
) -> None:
    """Helper.updateDepartmentAgents (shared/spec §1.4): remove, upsert, then recount numAgents
    (when an agent came or went) and touch _updatedAt.

    An unknown agent id is skipped, as in Rocket.Chat; the response's agent list shows the truth.
    The link's username always comes from the user record.
    """
    removed = 0
    if remove:
        removed_ids = [item["agentId"] for item in remove]
        removed = session.execute(
            delete(DepartmentAgent)
            .where(and_(DepartmentAgent.department_id == department.id, DepartmentAgent.agent_id.in_(removed_ids)))
            .execution_options(department_ids=[department.id])
        ).rowcount
    wanted = {item["agentId"]: item for item in upsert}  # the last item for an agent wins
    found = session.execute(AGENTS_AND_LINKS, {"department_id": department.id, "ids": list(wanted)}) if wanted else []
    users = {agent_id: (username, link) for agent_id, username, link in found}
    skipped = [agent_id for agent_id in wanted if agent_id not in users]
    if skipped:
        log.info("department %s: skipped unknown agent ids %s", department.id, skipped)
    now = utcnow()
    for agent_id, (username, existing) in users.items():
        item = wanted[agent_id]
        link = existing or DepartmentAgent(department_id=department.id, agent_id=agent_id)
        # Rocket.Chat's quirk, kept: re-upserting resets count/order to the request's (or 0).
        link.username = username or ""
        link.count = int(item.get("count") or 0)
        link.order = int(item.get("order") or 0)
        link.department_enabled = department.enabled
        link.updated_at = now
        session.add(link)
    added = any(existing is None for _, existing in users.values())
    if removed or added:
        session.flush()
        recount_agents(session, [department.id])
    elif remove or users:
        # The same agents, so the same count: only _updatedAt moves, and the change log does not
        # name numAgents (list pages sorted by it stay cached).
        department.updated_at = now
        session.flush()
