"""Department endpoints: `/api/v1/livechat/department…` (docs/compatibility.md §2, §4.6).

Each view: validate → check permissions → one service call → dump. Routes that Rocket.Chat
validates with ajv validate before the permission check (400 before 403); the others check
permissions first and validate in the handler, as Rocket.Chat does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, request

import db
import department_service as service
import json_codec
import workspace_service
from access import current_user, granted, require_all, require_any
from cache import caches, settings
from conditional import Representation, if_match_precondition, not_modified
from errors import ApiError
from idempotency import idempotent
from openapi import doc
from request_input import request_body, request_query
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
DEFAULT_AGENT_ORDER = {"username": 1}  # GET …/agents without `sort`


def _my_departments_only(only_mine: Any) -> str | None:
    """`onlyMyDepartments=true` narrows to the caller's own departments unless they may see all."""
    if only_mine == "true" and not granted("view-livechat-departments"):
        return current_user().id
    return None


def _department_filter(params: Mapping[str, Any], *, archived_only: bool) -> service.ListFilter:
    return service.ListFilter(
        text=params.get("text"),
        exclude_id=params.get("excludeDepartmentId"),
        agent_id=_my_departments_only(params.get("onlyMyDepartments")),
        # Only the exact string 'true' filters: Rocket.Chat's `enabled=false` does not filter.
        # The archived list accepts `enabled` and `showArchived` but ignores them (docs/compatibility.md §2.6).
        enabled_only=not archived_only and params.get("enabled") == "true",
        archived=True if archived_only else (None if params.get("showArchived") == "true" else False),
    )


def _department_list(
    schema: type[DepartmentListSchema], params: Mapping[str, Any], *, archived_only: bool
) -> dict[str, Any]:
    sort = parse_sort(params.get("sort"), service.DEPARTMENT_SORT, {"name": 1})
    check_json_param("query", params.get("query"))
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    where = _department_filter(params, archived_only=archived_only)
    if caches().responses.enabled and current_app.json.embeds_json:  # type: ignore[attr-defined]
        # The page's ids from the database, its rows' JSON from the cache (kept per department).
        ids, total = service.list_department_ids(where, sort, offset, limit)
        rows = caches().responses.kept_rows(ids, _list_rows_json)
        if rows is not None:
            body = dump(schema, {"departments": [], "count": len(rows), "offset": offset, "total": total})
            body["departments"] = rows
            return body
    rows, total = service.list_departments(db.session(), where, sort, offset, limit)
    return dump(schema, {"departments": rows, "count": len(rows), "offset": offset, "total": total})


def _list_rows_json(ids: list[str]) -> dict[str, bytes]:
    """These departments' rows of a list, as JSON; none for a row orjson refuses (json_codec.encoded)."""
    rows = service.departments_by_id(db.session(), ids)
    encoded = ((row.id, json_codec.encoded(dump(DepartmentSchema, row))) for row in rows)
    return {department: body for department, body in encoded if body is not None}


P = TypeVar("P")


def _cached_read(
    check: Callable[[], None],
    parse: Callable[[], P],
    build: Callable[[P], dict[str, Any]],
    *,
    parse_first: bool = False,
    department: str | None = None,
) -> Response:
    """A read's JSON with its ETag, kept in the response cache (cache.py) under _response_key.

    `parse` validates the request (400), `check` the caller's permissions (403), in Rocket.Chat's
    order for the route (`parse_first`: ajv-validated routes), then `build` answers. A kept body
    answered a request that passed `parse`, so serving it again only takes `check`. A body that
    shows `department` and nothing else is kept across writes to other departments (cache.py).
    If-None-Match is looked at last: a 304 tells no more than the 200 would have."""
    responses = caches().responses
    key = _response_key()
    body, version = responses.lookup(key)
    if body is not None:
        check()
        return _response(body)
    if parse_first:
        params = parse()
        check()
    else:
        check()
        params = parse()
    body = _representation(build(params))
    responses.store(version, key, body, department)
    return _response(body)


def _response_key() -> tuple[Any, ...]:
    """What a read's answer depends on besides the data and the settings: the URL, and whether
    the caller may see all departments (agents of GET one, `onlyMyDepartments`)."""
    sees_all = bool(granted("view-livechat-departments"))
    return (request.full_path, sees_all, None if sees_all else current_user().id)


def _representation(data: dict[str, Any]) -> Representation:
    return Representation(current_app.json.response(data).get_data())


def _response(body: Representation) -> Response:
    if not_modified(body.etag):
        return current_app.response_class(status=304, headers={"ETag": body.etag})
    return current_app.response_class(body, mimetype="application/json", headers={"ETag": body.etag})


def _department_body(department_id: str, *, include_agents: bool, agent_id: str | None = None) -> dict[str, Any]:
    """What GET livechat/department/:_id answers (DepartmentWithAgentsSchema dumps it)."""
    department = service.get_department(db.session(), department_id, agent_id=agent_id)
    return _with_agents(department, include_agents)


def _if_match(department_id: str, *, agent_list: bool = False) -> Callable[[], None] | None:
    """The request's If-Match, checked by the service once it holds the department's row: the
    ETags of GET livechat/department/:_id (with and without agents) are the department's; with
    `agent_list`, so is that of GET …/agents as it answers without parameters (its first page)."""
    check = if_match_precondition()
    if check is None:
        return None

    def run() -> None:
        with_agents, without_agents = (
            _representation(dump(DepartmentWithAgentsSchema, _department_body(department_id, include_agents=include)))
            for include in (True, False)
        )
        tags = [with_agents.etag, without_agents.etag]
        if agent_list:
            first_page = _agent_page(department_id, {}, parse_sort(None, service.AGENT_SORT, DEFAULT_AGENT_ORDER))
            tags.append(_representation(dump(DepartmentAgentListSchema, first_page)).etag)
        shown = with_agents if granted("view-livechat-departments") else without_agents
        check(tags, shown.etag)

    return run


def _with_agents(department: Any, include_agents: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"department": department}
    if include_agents:
        body["agents"] = service.department_agents(db.session(), department.id) if department else []
    return body


def _no_parameters() -> None:
    return None


@bp.get("/department")
@doc(query=DepartmentListQuerySchema, response=DepartmentListSchema, etag=True)
def list_departments() -> Any:
    """List departments: paginated, searchable by `text`, archived ones hidden unless `showArchived=true`."""
    return _cached_read(
        lambda: require_any(*VIEW),
        lambda: request_query(DepartmentListQuerySchema),
        lambda params: _department_list(DepartmentListSchema, params, archived_only=False),
        parse_first=True,
    )


@bp.post("/department")
@doc(body=DepartmentCreateSchema, response=DepartmentWithAgentsSchema)
@idempotent
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
@doc(response=CreationAvailableSchema, errors=(401, 403), etag=True)
def creation_available() -> Any:
    """Whether one more department may be created (see the `DEPARTMENT_LIMIT` setting)."""

    def build(_params: None) -> dict[str, Any]:
        limit = service.department_limit(settings(), current_app.config["DEPARTMENT_LIMIT"])
        available = service.creation_available(db.session(), limit)
        return dump(CreationAvailableSchema, {"isDepartmentCreationAvailable": available})

    return _cached_read(lambda: require_any("view-livechat-departments", MANAGE), _no_parameters, build)


@bp.get("/department/<department_id>")
@doc(query=DepartmentGetQuerySchema, response=DepartmentWithAgentsSchema, etag=True)
def get_department(department_id: str) -> Any:
    """One department; `department: null` for an unknown id. Agents only with `view-livechat-departments`."""

    def build(params: Mapping[str, Any]) -> dict[str, Any]:
        # Agents only for callers who may see departments, and unless includeAgents is anything but 'true'.
        include_agents = bool(granted("view-livechat-departments")) and params.get("includeAgents", "true") == "true"
        agent_id = _my_departments_only(params.get("onlyMyDepartments"))
        body = _department_body(department_id, include_agents=include_agents, agent_id=agent_id)
        return dump(DepartmentWithAgentsSchema, body)

    return _cached_read(
        lambda: require_any(*VIEW), lambda: request_query(DepartmentGetQuerySchema), build, department=department_id
    )


@bp.put("/department/<department_id>")
@doc(body=DepartmentBodySchema, response=DepartmentWithAgentsSchema, if_match=True)
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
    department, links = service.save_department(
        session, department_id, data, agents, limit=0, precondition=_if_match(department_id)
    )
    return dump(DepartmentWithAgentsSchema, {"department": department, "agents": links})


@bp.delete("/department/<department_id>")
@doc(response=SuccessSchema, if_match=True)
def delete_department(department_id: str) -> Any:
    """Delete a department with its agent links (when `Omnichannel_enable_department_removal` is on)."""
    require_any(MANAGE, "remove-livechat-department")
    session = db.session()
    if not settings().get("Omnichannel_enable_department_removal"):
        raise ApiError.plain("error-department-removal-disabled")
    service.remove_department(session, department_id, precondition=_if_match(department_id))
    return dump(SuccessSchema, {})


@bp.get("/departments/archived")
@doc(query=DepartmentListQuerySchema, response=DepartmentListSchema, etag=True)
def list_archived() -> Any:
    """List archived departments (same parameters as the department list)."""
    return _cached_read(
        lambda: require_any(*VIEW),
        lambda: request_query(DepartmentListQuerySchema),
        lambda params: _department_list(DepartmentListSchema, params, archived_only=True),
        parse_first=True,
    )


@bp.post("/department/<department_id>/archive")
@doc(response=SuccessSchema, if_match=True)
def archive(department_id: str) -> Any:
    """Archive a department: hidden from lists and disabled."""
    require_all(MANAGE)
    service.archive(db.session(), department_id, precondition=_if_match(department_id))
    return dump(SuccessSchema, {})


@bp.post("/department/<department_id>/unarchive")
@doc(response=SuccessSchema, if_match=True)
def unarchive(department_id: str) -> Any:
    """Unarchive a department (it stays disabled until enabled by an update)."""
    require_all(MANAGE)
    service.unarchive(db.session(), department_id, precondition=_if_match(department_id))
    return dump(SuccessSchema, {})


@bp.get("/department.autocomplete")
@doc(query=AutocompleteQuerySchema, response=AutocompleteSchema, etag=True)
def autocomplete() -> Any:
    """Departments whose name starts with `selector.term`: `{_id, name}` items."""

    def build(params: Mapping[str, Any]) -> dict[str, Any]:
        departments = service.autocomplete(
            db.session(),
            params["selector"],
            show_archived=params.get("showArchived") == "true",
            agent_id=_my_departments_only(params.get("onlyMyDepartments")),
        )
        return dump(AutocompleteSchema, {"items": departments})

    return _cached_read(lambda: require_any(*VIEW), lambda: request_query(AutocompleteQuerySchema), build)


@bp.get("/department/<department_id>/agents")
@doc(query=DepartmentAgentsQuerySchema, response=DepartmentAgentListSchema, etag=True)
def list_agents(department_id: str) -> Any:
    """The agents of a department, paginated (default order: username)."""

    def parse() -> tuple[Mapping[str, Any], Any]:
        params = request_query(DepartmentAgentsQuerySchema)
        return params, parse_sort(params.get("sort"), service.AGENT_SORT, DEFAULT_AGENT_ORDER)

    def build(parsed: tuple[Mapping[str, Any], Any]) -> dict[str, Any]:
        return dump(DepartmentAgentListSchema, _agent_page(department_id, *parsed))

    return _cached_read(lambda: require_any(*VIEW), parse, build, department=department_id)


def _agent_page(department_id: str, params: Mapping[str, Any], sort: Any) -> dict[str, Any]:
    """What GET livechat/department/:_id/agents answers (DepartmentAgentListSchema dumps it)."""
    offset, limit = workspace_service.page_window(settings(), params.get("offset"), params.get("count"))
    agents, total = service.list_department_agents(db.session(), department_id, sort, offset, limit)
    return {"agents": agents, "count": len(agents), "offset": offset, "total": total}


@bp.post("/department/<department_id>/agents")
@doc(body=DepartmentAgentsBodySchema, response=SuccessSchema, if_match=True)
@idempotent
def save_agents(department_id: str) -> Any:
    """Add (`upsert`) and remove (`remove`) agents of a department."""
    require_any(MANAGE, ADD_AGENTS)
    body = load(DepartmentAgentsBodySchema, request_body())
    changes = load(AgentChangesSchema, body)
    precondition = _if_match(department_id, agent_list=True)
    service.save_department_agents(db.session(), department_id, changes, precondition=precondition)
    return dump(SuccessSchema, {})


@bp.get("/department.listByIds")
@doc(query=ListByIdsQuerySchema, response=DepartmentsSchema, etag=True)
def list_by_ids() -> Any:
    """The departments with the given `ids` (`ids[]=a&ids[]=b` or `ids=a&ids=b`)."""

    def parse() -> Mapping[str, Any]:
        args = query_args(request.args)
        # Rocket.Chat's parseJsonQuery runs first: a bad sort/fields/query beats a missing `ids`.
        parse_sort(args.get("sort") if isinstance(args.get("sort"), str) else None, service.DEPARTMENT_SORT, {})
        check_json_param("fields", args.get("fields"))
        check_json_param("query", args.get("query"))
        return load(ListByIdsQuerySchema, args)

    def build(params: Mapping[str, Any]) -> dict[str, Any]:
        return dump(DepartmentsSchema, {"departments": service.departments_by_ids(db.session(), params["ids"])})

    return _cached_read(lambda: require_any(*VIEW), parse, build)


@bp.get("/agents/<agent_id>/departments")
@doc(query=AgentDepartmentsQuerySchema, response=AgentDepartmentsSchema, etag=True)
def agent_departments(agent_id: str) -> Any:
    """The departments an agent belongs to, with their names."""

    def build(params: Mapping[str, Any]) -> dict[str, Any]:
        links = service.agent_departments(
            db.session(), agent_id, enabled_only=params.get("enabledDepartmentsOnly") == "true"
        )
        return dump(AgentDepartmentsSchema, {"departments": links})

    return _cached_read(
        lambda: require_all("view-l-room"), lambda: request_query(AgentDepartmentsQuerySchema), build, parse_first=True
    )
