"""Department endpoints: `/api/v1/livechat/department…` (shared/spec §2, §4.6).

Each view: validate → check permissions → one service call → dump. Routes that Rocket.Chat
validates with ajv validate before the permission check (400 before 403); the others check
permissions first and validate in the handler, as Rocket.Chat does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, request

import db
import department_service as service
import workspace_service
from access import current_user, granted, require_all, require_any
from request_input import request_body, request_query
from cache import ListEntry, cached, caches, settings
from errors import ApiError
from openapi import doc
from schemas import (
    AgentChangesSchema,
    AgentDepartmentsQuerySchema,
    AgentDepartmentsSchema,
    AutocompleteQuerySchema,
    AutocompleteSchema,
    CreationAvailableSchema,
    DepartmentAgentListSchema,
    DepartmentAgentsBodySchema,
    DepartmentAgentsQuerySchema,
    DepartmentBodySchema,
    DepartmentCreateFieldsSchema,
    DepartmentCreateSchema,
    DepartmentGetQuerySchema,
    DepartmentListQuerySchema,
    DepartmentListSchema,
    DepartmentSchema,
    DepartmentsSchema,
    DepartmentUpdateSchema,
    DepartmentWithAgentsSchema,
    ListByIdsQuerySchema,
    SuccessSchema,
    check_json_param,
    parse_sort,
)
from validation import dump, load, query_args

bp = Blueprint("departments", __name__, url_prefix="/api/v1/livechat")

VIEW = ("view-livechat-departments", "view-l-room")
MANAGE = "manage-livechat-departments"
ADD_AGENTS = "add-livechat-department-agents"


def _my_departments_only(only_mine: Any) -> str | None:
    """`onlyMyDepartments=true` narrows to the caller's own departments unless they may see all."""
    if only_mine == "true" and not granted("view-livechat-departments"):
        return current_user().id
    return None


def _department_list(
    schema: type[DepartmentListSchema], params: Mapping[str, Any], *, archived_only: bool
) -> Response:
    """A department list page, from the list cache when no write since it was built can have
    changed it (cache.ListCache); its total is taken afresh."""
    lists = caches().lists
    key = _response_key()
    version = db.data_version(db.DATA)
    entry = lists.get(version, key) if lists.enabled else None
    if entry is not None:
        total = _page_total(entry.page.where, entry.offset, entry.limit, entry.count)
        if total != entry.total:
            body, departments = _list_body(schema, entry.body[entry.departments], entry.count, entry.offset, total)
            lists.rewrite(entry, body, departments, total)
        return _response(entry.body)

    session = db.session()
    sort = parse_sort(params.get("sort"), service.DEPARTMENT_SORT, {"name": 1})
    check_json_param("query", params.get("query"))
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    where = service.ListFilter(
        text=params.get("text"),
        exclude_id=params.get("excludeDepartmentId"),
        agent_id=_my_departments_only(params.get("onlyMyDepartments")),
        # Only the exact string 'true' filters: Rocket.Chat's `enabled=false` does not filter.
        # The archived list accepts `enabled` and `showArchived` but ignores them (shared/spec §2.6).
        enabled_only=not archived_only and params.get("enabled") == "true",
        archived=True if archived_only else (None if params.get("showArchived") == "true" else False),
    )
    page = _page_dumps(session, where, sort, offset, limit) if lists.enabled else None
    if page is None:  # no caches, or a row changed between the two reads: the page read whole
        rows = service.page_departments(session, where, sort, offset, limit)
        total = _page_total(where, offset, limit, len(rows))
        return _json(dump(schema, {"departments": rows, "count": len(rows), "offset": offset, "total": total}))
    keys, departments = page
    total = _page_total(where, offset, limit, len(departments))
    body, span = _list_body(schema, _departments_json(departments), len(departments), offset, total)
    listed = service.ListedPage(
        where=where,
        sort=tuple(sort),
        ids=frozenset(key[0] for key in keys),
        last_key=keys[-1] if keys else None,
        full=limit is not None and len(keys) == limit,
        text_in_byte_order=db.is_sqlite(db.engine()),
    )
    lists.put(key, ListEntry(version, body, span, listed, len(departments), offset, limit, total))
    return _response(body)


def _departments_json(departments: list[Any]) -> bytes:
    """Dumped departments written as a list body holds them (same encoder, same depth)."""
    head, tail = _encode({"departments": []}).split(b"[]", 1)
    written = _encode({"departments": departments})
    return written[len(head) : len(written) - len(tail)]


def _list_body(
    schema: type[DepartmentListSchema], departments_json: bytes, count: int, offset: int, total: int
) -> tuple[bytes, slice]:
    """A list body around departments already written (_departments_json), and where it holds
    them: a page kept across writes gets its new total without writing its departments again."""
    body = _encode(dump(schema, {"departments": [], "count": count, "offset": offset, "total": total}))
    head, tail = body.split(b"[]", 1)  # the departments come first: '{"departments":[],"count":…'
    return head + departments_json + tail, slice(len(head), len(head) + len(departments_json))


def _encode(body: dict[str, Any]) -> bytes:
    return _json(body).get_data()


def _page_total(where: service.ListFilter, offset: int, limit: int | None, count: int) -> int:
    """A page that ends inside the list (fewer rows than asked, not past the end) tells the total
    itself, as most `text` searches do; other pages take the counted total."""
    if (limit is None or count < limit) and (count or offset == 0):
        return offset + count
    return _total(where)


def _page_dumps(
    session: Any, where: service.ListFilter, sort: Any, offset: int, limit: int | None
) -> tuple[list[tuple[Any, ...]], list[Any]] | None:
    """The page's content keys and departments, dumped, reusing the dumps of rows whose stored
    values are the same as when they were dumped (content keys, department_service.DEPARTMENT_KEY):
    after a write, a page is read again but only the changed departments are dumped again.

    None when a department of the page changed or went between the two reads (PostgreSQL's
    READ COMMITTED): the caller then reads it whole.
    """
    dumps = caches().department_dumps
    keys = service.page_department_keys(session, where, sort, offset, limit)
    page = [dumps.get(key) for key in keys]
    missing = [key[0] for key, dumped in zip(keys, page) if dumped is None]
    if missing:
        fresh = {key: dump(DepartmentSchema, row) for key, row in service.departments_with_keys(session, missing)}
        for key, dumped in fresh.items():
            dumps.put(key, dumped)
        page = [dumped if dumped is not None else fresh.get(key) for key, dumped in zip(keys, page)]
    return None if None in page else (keys, page)


def _total(where: service.ListFilter) -> int:
    """The list's total. Pages of one filter share it, kept across the writes that cannot change
    it (cache.TotalCache). The excluded department (widgets send their own) is taken off the
    total without exclusion, so a new excludeDepartmentId costs a primary-key lookup, not a count
    of the whole table."""
    if where.exclude_id is None:
        return caches().totals.get_or_count(
            db.data_version(db.DATA), where, lambda: service.count_departments(db.session(), where)
        )
    everything = replace(where, exclude_id=None)
    return _total(everything) - int(service.is_listed(db.session(), everything, where.exclude_id))


def _response_key() -> tuple[Any, ...]:
    """What a read's answer depends on besides the data: the URL, the settings (page sizes, the
    department limit) and whether the caller may see all departments (agents of GET one,
    `onlyMyDepartments`)."""
    sees_all = bool(granted("view-livechat-departments"))
    return (request.full_path, db.data_version(db.SETTINGS), sees_all, None if sees_all else current_user().id)


def _cached_json(build: Callable[[], dict[str, Any]], *, department_id: str | None = None) -> Response:
    """The JSON of `build()`, served from the response cache when it was built before (for the
    same data version and _response_key). Reads of one department's data (`department_id`) are
    kept across writes to other departments."""
    key = _response_key()
    if department_id is None:
        body = cached(caches().responses, key, lambda: _encode(build()))
    else:
        body = cached(caches().department_responses, (department_id, key), lambda: _encode(build()))
    return _response(body)


def _response(body: bytes) -> Response:
    return current_app.response_class(body, mimetype="application/json")


def _json(body: dict[str, Any]) -> Response:
    return current_app.json.response(body)


def _with_agents(department: Any, include_agents: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"department": department}
    if include_agents:
        body["agents"] = service.department_agents(db.session(), department.id) if department else []
    return body


@bp.get("/department")
@doc(query=DepartmentListQuerySchema, response=DepartmentListSchema)
def list_departments() -> Any:
    """List departments: paginated, searchable by `text`, archived ones hidden unless `showArchived=true`."""
    params = request_query(DepartmentListQuerySchema)
    require_any(*VIEW)
    return _department_list(DepartmentListSchema, params, archived_only=False)


@bp.post("/department")
@doc(body=DepartmentCreateSchema, response=DepartmentWithAgentsSchema)
def create_department() -> Any:
    """Create a department, with its agents."""
    body = load(DepartmentCreateSchema, request_body())
    require_all(MANAGE)
    body = load(DepartmentBodySchema, body)
    data = load(DepartmentCreateFieldsSchema, body["department"])
    agents = load(AgentChangesSchema, {"upsert": body["agents"]}) if body.get("agents") else None
    session = db.session()
    limit = service.department_limit(settings(), current_app.config["DEPARTMENT_LIMIT"])
    department, links = service.save_department(session, None, data, agents, limit=limit)
    return dump(DepartmentWithAgentsSchema, {"department": department, "agents": links})


@bp.get("/department/isDepartmentCreationAvailable")
@doc(response=CreationAvailableSchema, errors=(401, 403))
def creation_available() -> Any:
    """Whether one more department may be created (see the `DEPARTMENT_LIMIT` setting)."""
    require_any("view-livechat-departments", MANAGE)

    def build() -> dict[str, Any]:
        session = db.session()
        limit = service.department_limit(settings(), current_app.config["DEPARTMENT_LIMIT"])
        return dump(CreationAvailableSchema, {"isDepartmentCreationAvailable": service.creation_available(session, limit)})

    return _cached_json(build)


@bp.get("/department/<department_id>")
@doc(query=DepartmentGetQuerySchema, response=DepartmentWithAgentsSchema)
def get_department(department_id: str) -> Any:
    """One department; `department: null` for an unknown id. Agents only with `view-livechat-departments`."""
    require_any(*VIEW)
    params = request_query(DepartmentGetQuerySchema)

    def build() -> dict[str, Any]:
        department = service.get_department(
            db.session(), department_id, agent_id=_my_departments_only(params.get("onlyMyDepartments"))
        )
        # Agents only for callers who may see departments, and unless includeAgents is anything but 'true'.
        include_agents = bool(granted("view-livechat-departments")) and params.get("includeAgents", "true") == "true"
        return dump(DepartmentWithAgentsSchema, _with_agents(department, include_agents))

    return _cached_json(build, department_id=department_id)


@bp.put("/department/<department_id>")
@doc(body=DepartmentBodySchema, response=DepartmentWithAgentsSchema)
def update_department(department_id: str) -> Any:
    """Update a department: only the fields sent change. `agents` are upserted."""
    require_any(MANAGE, ADD_AGENTS)
    body = load(DepartmentBodySchema, request_body())
    allowed = granted(MANAGE, ADD_AGENTS)
    if MANAGE not in allowed:
        raise ApiError.plain("error-not-allowed")
    data = load(DepartmentUpdateSchema, body["department"])
    # Rocket.Chat drops `agents` silently for callers who may not add agents.
    agents = None
    if body.get("agents") is not None and ADD_AGENTS in allowed:
        agents = load(AgentChangesSchema, {"upsert": body["agents"]})
    session = db.session()
    department, links = service.save_department(session, department_id, data, agents, limit=0)
    return dump(DepartmentWithAgentsSchema, {"department": department, "agents": links})


@bp.delete("/department/<department_id>")
@doc(response=SuccessSchema)
def delete_department(department_id: str) -> Any:
    """Delete a department with its agent links (when `Omnichannel_enable_department_removal` is on)."""
    require_any(MANAGE, "remove-livechat-department")
    session = db.session()
    if not settings().get("Omnichannel_enable_department_removal"):
        raise ApiError.plain("error-department-removal-disabled")
    service.remove_department(session, department_id)
    return dump(SuccessSchema, {})


@bp.get("/departments/archived")
@doc(query=DepartmentListQuerySchema, response=DepartmentListSchema)
def list_archived() -> Any:
    """List archived departments (same parameters as the department list)."""
    params = request_query(DepartmentListQuerySchema)
    require_any(*VIEW)
    return _department_list(DepartmentListSchema, params, archived_only=True)


@bp.post("/department/<department_id>/archive")
@doc(response=SuccessSchema)
def archive(department_id: str) -> Any:
    """Archive a department: hidden from lists and disabled."""
    require_all(MANAGE)
    service.archive(db.session(), department_id)
    return dump(SuccessSchema, {})


@bp.post("/department/<department_id>/unarchive")
@doc(response=SuccessSchema)
def unarchive(department_id: str) -> Any:
    """Unarchive a department (it stays disabled until enabled by an update)."""
    require_all(MANAGE)
    service.unarchive(db.session(), department_id)
    return dump(SuccessSchema, {})


@bp.get("/department.autocomplete")
@doc(query=AutocompleteQuerySchema, response=AutocompleteSchema)
def autocomplete() -> Any:
    """Departments whose name starts with `selector.term`: `{_id, name}` items."""
    require_any(*VIEW)
    params = request_query(AutocompleteQuerySchema)

    def build() -> dict[str, Any]:
        departments = service.autocomplete(
            db.session(),
            params["selector"],
            show_archived=params.get("showArchived") == "true",
            agent_id=_my_departments_only(params.get("onlyMyDepartments")),
        )
        return dump(AutocompleteSchema, {"items": departments})

    return _cached_json(build)


@bp.get("/department/<department_id>/agents")
@doc(query=DepartmentAgentsQuerySchema, response=DepartmentAgentListSchema)
def list_agents(department_id: str) -> Any:
    """The agents of a department, paginated (default order: username)."""
    require_any(*VIEW)
    params = request_query(DepartmentAgentsQuerySchema)
    sort = parse_sort(params.get("sort"), service.AGENT_SORT, {"username": 1})

    def build() -> dict[str, Any]:
        session = db.session()
        offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
        agents, total = service.list_department_agents(session, department_id, sort, offset, limit)
        return dump(DepartmentAgentListSchema, {"agents": agents, "count": len(agents), "offset": offset, "total": total})

    return _cached_json(build, department_id=department_id)


@bp.post("/department/<department_id>/agents")
@doc(body=DepartmentAgentsBodySchema, response=SuccessSchema)
def save_agents(department_id: str) -> Any:
    """Add (`upsert`) and remove (`remove`) agents of a department."""
    require_any(MANAGE, ADD_AGENTS)
    body = load(DepartmentAgentsBodySchema, request_body())
    changes = load(AgentChangesSchema, body)
    service.save_department_agents(db.session(), department_id, changes)
    return dump(SuccessSchema, {})


@bp.get("/department.listByIds")
@doc(query=ListByIdsQuerySchema, response=DepartmentsSchema)
def list_by_ids() -> Any:
    """The departments with the given `ids` (`ids[]=a&ids[]=b` or `ids=a&ids=b`)."""
    require_any(*VIEW)
    args = query_args(request.args)
    # Rocket.Chat's parseJsonQuery runs first: a bad sort/fields/query beats a missing `ids`.
    parse_sort(args.get("sort") if isinstance(args.get("sort"), str) else None, service.DEPARTMENT_SORT, {})
    check_json_param("fields", args.get("fields"))
    check_json_param("query", args.get("query"))
    params = load(ListByIdsQuerySchema, args)
    return _cached_json(
        lambda: dump(DepartmentsSchema, {"departments": service.departments_by_ids(db.session(), params["ids"])})
    )


@bp.get("/agents/<agent_id>/departments")
@doc(query=AgentDepartmentsQuerySchema, response=AgentDepartmentsSchema)
def agent_departments(agent_id: str) -> Any:
    """The departments an agent belongs to, with their names."""
    params = request_query(AgentDepartmentsQuerySchema)
    require_all("view-l-room")

    def build() -> dict[str, Any]:
        links = service.agent_departments(
            db.session(), agent_id, enabled_only=params.get("enabledDepartmentsOnly") == "true"
        )
        return dump(AgentDepartmentsSchema, {"departments": links})

    return _cached_json(build)
