"""Department use cases: each one transaction, raising ApiError (docs/compatibility.md §1–§2).

Every write validates the whole request before changing anything and commits once, so a
request that fails anywhere (department or any agent item) changes nothing (docs/compatibility.md §D.6:
Rocket.Chat half-applies such requests; we do not). The department row is locked before
it is read for change, so concurrent writers to one department serialise: on SQLite the
request's BEGIN IMMEDIATE already does it, on PostgreSQL `with_for_update` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from sqlalchemy import (
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
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

import db
from errors import ApiError
from models import LISTED, NOT_A_UNIT, NOT_ARCHIVED, Department, DepartmentAgent, User, UTCDateTime, utcnow
from validation import format_date

log = logging.getLogger(__name__)

SAVE_METHOD = "livechat:saveDepartment"

Precondition = Callable[[], None] | None  # raises when the request's precondition fails (If-Match)
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


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


class folded_name(FunctionElement[str]):
    """A department's name case-folded for `text` searches: the stored `name_folded`, or, where a
    writer changed the name without it (a hand edit leaves it NULL, migration 0009), the name
    folded by the database: Python's casefold on SQLite (db.make_engine), lower() in the
    database's default collation on PostgreSQL (a database created with the "C" locale folds
    ASCII only there)."""

    type = Text()
    inherit_cache = True


@compiles(folded_name)
def _folded_name_postgresql(element: folded_name, compiler: Any, **kw: Any) -> str:
    # `name` has the "C" collation (byte order), under which lower() folds ASCII only.
    return 'coalesce(departments.name_folded, lower(departments.name COLLATE "default"))'


@compiles(folded_name, "sqlite")
def _folded_name_sqlite(element: folded_name, compiler: Any, **kw: Any) -> str:
    return "coalesce(departments.name_folded, casefold(departments.name))"


@dataclass(frozen=True)
class ListFilter:
    """The filters of the department lists (docs/compatibility.md §2.1, §2.6)."""

    text: str | None = None
    enabled_only: bool = False
    exclude_id: str | None = None
    archived: bool | None = False  # False: hide archived, True: only archived, None: both
    agent_id: str | None = None  # only departments this agent is linked to

    def apply(self, query: Select[Any]) -> Select[Any]:
        """`query` narrowed by this filter's shape; the values are bound at execution (`params`)."""
        if self.archived is False:
            query = query.where(LISTED)
        else:
            query = query.where(NOT_A_UNIT)
            if self.archived is True:
                query = query.where(_is_archived())
        if self.text:
            query = query.where(folded_name().like(bindparam("text"), escape="\\"))
        if self.enabled_only:
            query = query.where(Department.enabled.is_(True))
        if self.exclude_id is not None:
            query = query.where(Department.id != bindparam("exclude_id"))
        if self.agent_id is not None:
            linked = select(DepartmentAgent.department_id).where(DepartmentAgent.agent_id == bindparam("agent_id"))
            query = query.where(Department.id.in_(linked))
        return query

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
    # every row instead, docs/performance.md).
    if not column.expression.nullable:
        return column.desc() if direction < 0 else column.asc()
    return column.desc().nulls_last() if direction < 0 else column.asc().nulls_first()


# The reads of the department API (those behind GET) are built for speed (docs/performance.md):
# * they select plain rows, not ORM objects, and run on the session's connection (Core): the
#   responses only read them, and the ORM's loading machinery cost more than the queries;
# * each statement is built once per shape (filters present, sort, paged or not) and reused with
#   its values as bound parameters: SQLAlchemy then skips building the expression and computing
#   its cache key, which cost more than running it. The caches are bounded (sorts come from clients).
class DumpedDate(TypeDecorator[str]):
    """A date column read straight into its wire text (validation.format_date): these reads are
    only dumped. SQLite's text as SQLAlchemy writes it (`2016-12-13 17:22:19.109000`, UTC) is cut
    into shape, a tenth of the cost of parsing it and formatting the datetime, which was a tenth of
    a cold list; any other value (PostgreSQL's datetimes, text written by hand) takes that way."""

    impl = UTCDateTime
    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], str | None]:
        read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, coltype)

        def process(value: Any) -> str | None:
            if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
                return f"{value[:10]}T{value[11:23]}Z"
            value = read(value) if read is not None else value
            return None if value is None else format_date(value)

        return process


def _dumped(table: Any) -> Select[Any]:
    """Every column of `table`, dates as their wire text (DumpedDate)."""
    return select(*(
        type_coerce(column, DumpedDate()).label(column.name) if isinstance(column.type, UTCDateTime) else column
        for column in table.columns
    ))


DEPARTMENT_ROW = _dumped(Department.__table__)
AGENT_ROW = _dumped(DepartmentAgent.__table__)
DEPARTMENT_BY_ID = DEPARTMENT_ROW.where(Department.id == bindparam("department_id"))
DEPARTMENTS_BY_IDS = DEPARTMENT_ROW.where(Department.id.in_(bindparam("ids", expanding=True)))
LINKED_DEPARTMENT_BY_ID = ListFilter(archived=None, agent_id="?").apply(DEPARTMENT_BY_ID)
AGENTS_OF = AGENT_ROW.where(DepartmentAgent.department_id == bindparam("department_id"))
AGENTS_BY_USERNAME = AGENTS_OF.order_by(DepartmentAgent.username, DepartmentAgent.agent_id)
AGENT_COUNT = select(func.count()).where(DepartmentAgent.department_id == bindparam("department_id"))
STATEMENTS_PER_KIND = 256
SEARCH_SPARE_IDS = 250  # list_department_ids


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _count_statement(shape: ListFilter) -> db.DriverStatement:
    return db.DriverStatement(shape.apply(select(func.count()).select_from(Department)))


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _page_statement(shape: ListFilter, sort: Sort, paged: bool) -> Select[Any]:
    query = _ordered(shape.apply(DEPARTMENT_ROW), sort, DEPARTMENT_SORT, Department.id).offset(bindparam("offset"))
    return query.limit(bindparam("limit")) if paged else query


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _page_ids_statement(shape: ListFilter, sort: Sort, paged: bool) -> db.DriverStatement:
    return db.DriverStatement(_page_statement(shape, sort, paged).with_only_columns(Department.id))


@lru_cache(maxsize=STATEMENTS_PER_KIND)
def _agent_page_statement(sort: Sort, paged: bool) -> Select[Any]:
    query = _ordered(AGENTS_OF, sort, AGENT_SORT, DepartmentAgent.id).offset(bindparam("offset"))
    return query.limit(bindparam("limit")) if paged else query


def _rows(session: Session, query: Select[Any], params: dict[str, Any]) -> list[Row[Any]]:
    return db.connection_of(session).execute(query, params).all()  # one fetchall, not a fetch per row


# Runs a DriverStatement with its values and answers its rows: in the request's transaction
# (_in_transaction) or each statement on its own, outside it (db.read_committed).
Run = Callable[[db.DriverStatement, Mapping[str, Any]], list[tuple[Any, ...]]]


def _in_transaction(session: Session) -> Run:
    connection = db.connection_of(session)
    return lambda statement, params: statement.execute(connection, params)


def list_departments(
    session: Session, where: ListFilter, sort: Sort, offset: int, limit: int | None
) -> tuple[list[Row[Any]], int]:
    """One page of departments, in `sort` order with `_id` as the tie-break, and the total. A
    page that ends inside the list (fewer rows than asked, not past the end) tells the total
    itself, as most `text` searches do: no COUNT then."""
    query = _page_statement(where.shape(), tuple(sort), limit is not None)
    rows = _rows(session, query, {**where.params(), "offset": offset, "limit": limit})
    return rows, _total(_in_transaction(session), where, offset, limit, len(rows))


def list_department_ids(where: ListFilter, sort: Sort, offset: int, limit: int | None) -> tuple[list[str], int]:
    """list_departments with the page's ids for its rows, for a caller that keeps rows already
    dumped (cache.py): the same statement, selecting only the id. The ids and the total are read
    outside the request's transaction, each in its own snapshot, so that a page whose rows are all
    kept opens no session: the caller must check that no write committed meanwhile
    (cache.DepartmentResponses.kept_rows does)."""
    # A `text` search reads up to SEARCH_SPARE_IDS ids past its page: when the matches end
    # within them, that tells the total (_total), and the COUNT's second scan of every listed
    # name is not needed.
    window = limit + SEARCH_SPARE_IDS if where.text and limit is not None else limit
    query = _page_ids_statement(where.shape(), tuple(sort), limit is not None)
    rows = db.read_committed(query, {**where.params(), "offset": offset, "limit": window})
    ids = [row[0] for row in rows]
    return ids[:limit], _total(db.read_committed, where, offset, window, len(ids))


def _total(run: Run, where: ListFilter, offset: int, limit: int | None, shown: int) -> int:
    if (limit is None or shown < limit) and (shown or offset == 0):
        return offset + shown
    (count,), = run(_count_statement(where.shape()), where.params())
    return int(count or 0)


def departments_by_id(session: Session, ids: list[str]) -> list[Row[Any]]:
    """The rows of these departments (list_departments' form), in no particular order."""
    return _rows(session, DEPARTMENTS_BY_IDS, {"ids": ids})


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
    total = db.connection_of(session).execute(AGENT_COUNT, params).scalar() or 0
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
        query = query.where(folded_name().like(f"{_like_literal(term)}%", escape="\\"))
    if selector.get("exceptions"):
        query = query.where(Department.id.not_in(selector["exceptions"]))
    if not show_archived:
        query = query.where(NOT_ARCHIVED)
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


def save_department(
    session: Session,
    department_id: str | None,
    data: dict[str, Any],
    agents: dict[str, list[dict[str, Any]]] | None,
    *,
    limit: int,
    precondition: Precondition = None,
) -> tuple[Department, list[Row[Any]]]:
    """Create (no id) or merge-update a department and upsert its agents, atomically; returns
    the department and its agent links (read before the commit: no second transaction).

    `data` holds only keys the client sent, already type-checked by schemas; the checks
    here are the ones that need the database, in Rocket.Chat's order (docs/compatibility.md §2.4a).
    """
    department: Department | None = None
    if department_id is None:
        if not creation_available(session, limit):
            raise ApiError.meteor(
                "error-max-departments-number-reached", "Maximum number of departments reached", method=SAVE_METHOD
            )
    else:
        department = _locked(session, department_id, precondition)
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
        raise ApiError.meteor(
            "error-fallback-department-not-found", "Fallback department not found", method=SAVE_METHOD
        )

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


def save_department_agents(
    session: Session, department_id: str, changes: dict[str, list[dict[str, Any]]], *, precondition: Precondition = None
) -> None:
    """`POST livechat/department/:_id/agents`: removals first, then upserts (docs/compatibility.md §2.11)."""
    department = _locked(session, department_id, precondition)
    if department is None:
        raise ApiError.meteor("error-department-not-found", "Department not found")
    _apply_agent_changes(session, department, changes.get("upsert") or [], changes.get("remove") or [])
    session.commit()


def archive(session: Session, department_id: str, *, precondition: Precondition = None) -> None:
    """Archive: hidden from lists, disabled, links disabled (docs/compatibility.md §1.6)."""
    department = _locked(session, department_id, precondition)
    if department is None:
        raise ApiError.plain("department-not-found")
    if department.archived is True and department.enabled is False:
        return  # already archived: nothing changes, 200 all the same
    department.archived = True
    department.enabled = False
    department.updated_at = utcnow()
    _set_links_enabled(session, department.id, False)
    session.commit()


def unarchive(session: Session, department_id: str, *, precondition: Precondition = None) -> None:
    """Unarchive: visible again but still disabled; its links are re-enabled (Rocket.Chat's rule)."""
    department = _locked(session, department_id, precondition)
    if department is None:
        raise ApiError.meteor("department-not-found")
    if department.archived is False:
        return
    department.archived = False
    department.updated_at = utcnow()
    _set_links_enabled(session, department.id, True)
    session.commit()


def remove_department(session: Session, department_id: str, *, precondition: Precondition = None) -> None:
    """Delete a department, its agent links, and every reference other departments hold to it."""
    department = _locked(session, department_id, precondition)
    if department is None:
        raise ApiError.plain("error-department-not-found")
    session.execute(
        delete(DepartmentAgent)
        .where(DepartmentAgent.department_id == department_id)
    )
    session.delete(department)
    now = utcnow()
    # Rocket.Chat's own clean-up of this field never matches (docs/compatibility.md §1.7); ours does.
    session.execute(
        update(Department)
        .where(Department.fallback_forward_department == department_id)
        .values(fallback_forward_department=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    referring = session.scalars(
        select(Department)
        .where(
            cast(Department.departments_allowed_to_forward, String).like(
                f"%{_like_literal(department_id)}%", escape="\\"
            )
        )
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


def _locked(session: Session, department_id: str, precondition: Precondition = None) -> Department | None:
    """The department's row, locked for the rest of the transaction; then the request's
    precondition (If-Match) is checked against it: nobody can change it between the check and
    the write, so of two writers holding the same ETag exactly one succeeds."""
    department = session.scalars(LOCKED_DEPARTMENT, {"department_id": department_id}).one_or_none()
    if department is not None and precondition is not None:
        precondition()
    return department


def _set_links_enabled(session: Session, department_id: str, enabled: bool) -> None:
    session.execute(
        update(DepartmentAgent)
        .where(DepartmentAgent.department_id == department_id)
        .values(department_enabled=true() if enabled else false(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
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
    """Set numAgents to the number of links, and touch _updatedAt (docs/compatibility.md §1.4)."""
    department_ids = list(department_ids)
    session.execute(RECOUNT_AGENTS, {"ids": department_ids, "now": utcnow()})


def _apply_agent_changes(
    session: Session, department: Department, upsert: list[dict[str, Any]], remove: list[dict[str, Any]]
) -> None:
    """Helper.updateDepartmentAgents (docs/compatibility.md §1.4): remove, upsert, then recount numAgents
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
        # The same agents, so the same count: only _updatedAt moves (no recount to run).
        department.updated_at = now
        session.flush()
