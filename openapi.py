"""The OpenAPI 3 document, generated from the marshmallow schemas that validate and serialise.

Each view carries `@doc(...)`, which only records which schemas it loads and dumps (the same
classes it passes to `load`/`dump`) and which error statuses it answers; `build_spec(app)` walks
`app.url_map` and turns that into the document, with the view's docstring as its summary. Nothing
here changes how a request is handled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, current_app, request
from marshmallow import Schema, fields
from werkzeug.routing import FloatConverter, IntegerConverter, Rule

import account_service
import department_service
import models
import schemas
import validation
import workspace_service
from version import VERSION

TITLE = "Livechat departments"
OPENAPI_VERSION = "3.0.3"
# Shown at the top of the docs page (/api/docs); the link is relative to that page, so it keeps a prefix.
INFO = {"description": "Manage departments in a browser: [the admin page](../admin/)."}
DEFAULT_ERRORS = (400, 401, 403)
IGNORED_METHODS = {"HEAD", "OPTIONS"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Doc:
    """What a view's `@doc(...)` says about it."""

    query: type[Schema] | None = None
    body: type[Schema] | None = None
    response: type[Schema] | None = None
    errors: tuple[int, ...] = DEFAULT_ERRORS
    public: bool = False
    media_type: str = "application/json"
    hidden: bool = False
    etag: bool = False  # answers with an ETag and honours If-None-Match (department_routes._cached_read)
    if_match: bool = False  # honours If-Match (department_routes._if_match)


def doc(
    *,
    query: type[Schema] | None = None,
    body: type[Schema] | None = None,
    response: type[Schema] | None = None,
    errors: Iterable[int] = DEFAULT_ERRORS,
    public: bool = False,
    media_type: str = "application/json",
    hidden: bool = False,
    etag: bool = False,
    if_match: bool = False,
) -> Callable[[F], F]:
    """Document a view: its query and body schemas, its 200 body and error statuses.

    Metadata only. `public=True` documents that no auth headers are needed (auth.public is
    what makes it so); a view without a `response` documents any JSON object, or any text for
    another `media_type`. `hidden=True` keeps a route out of the document on purpose (the docs
    page's own files), which tests/test_openapi.py accepts as a decision. `etag` and `if_match`
    document the conditional-request headers; Idempotency-Key is documented wherever
    idempotency.idempotent is applied (docs/etags-and-idempotency.md).
    """

    def decorate(view: F) -> F:
        meta = Doc(query, body, response, tuple(errors), public, media_type, hidden, etag, if_match)
        view.openapi_doc = meta  # type: ignore[attr-defined]
        return view

    return decorate


def view_doc(view: Callable[..., Any] | None) -> Doc | None:
    return getattr(view, "openapi_doc", None)


# --- building the document ---

ERROR_RESPONSES = {
    400: ("BadRequest", schemas.ErrorSchema, "Invalid parameters or a Rocket.Chat `error-…` failure"),
    401: ("Unauthorized", schemas.UnauthorizedSchema, "Missing or invalid `X-User-Id`/`X-Auth-Token`"),
    403: ("Forbidden", schemas.ErrorSchema, "The caller lacks a permission this action needs"),
    410: (
        "Gone",
        schemas.ErrorSchema,
        "The cursor is older than the events kept (retention): list again, then follow the `cursor` given",
    ),
    414: ("UriTooLong", schemas.ErrorSchema, "The request line (path and query) is longer than MAX_REQUEST_LINE_BYTES"),
    429: ("TooManyRequests", schemas.ErrorSchema, "Too many failed logins: retry after `Retry-After` seconds"),
    # docs/etags-and-idempotency.md
    409: ("IdempotencyKeyInUse", schemas.ErrorSchema, "A request with this Idempotency-Key is still running"),
    412: ("PreconditionFailed", schemas.ErrorSchema, "If-Match lists none of the department's ETags"),
    422: ("IdempotencyKeyReused", schemas.ErrorSchema, "This Idempotency-Key was used for another request"),
    428: ("PreconditionRequired", schemas.ErrorSchema, "The server requires If-Match here (REQUIRE_IF_MATCH)"),
    503: ("ServiceUnavailable", schemas.UnavailableSchema, "The database cannot be reached or is not migrated"),
}
SECURITY = [{"userId": [], "authToken": []}]
ETAG_HEADER = {"description": "A strong validator of this representation", "schema": {"type": "string"}}
CONDITIONAL_HEADERS = {
    "If-None-Match": "ETags the client holds: 304 without a body when the current one is among them (or `*`)",
    "If-Match": (
        "The department's ETag (GET livechat/department/:_id; POST …/agents also takes that of GET …/agents"
        " without parameters): 412 when it changed since; `*` for any"
    ),
}
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": (
        "Run this request once: a repeat with the same key and body gets the first answer again (header "
        "`Idempotent-Replayed: true`) for IDEMPOTENCY_KEY_TTL_SECONDS; 1 to 255 printable ASCII characters, "
        "the draft's quoted form accepted"
    ),
    # what reaches the server once the HTTP parser strips surrounding spaces (idempotency.VALID_KEY)
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[!-~]([ -~]*[!-~])?$"},
}
_PATH_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _not_nullable(_self: Any, field: Any, ret: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """Fields of a schema whose Meteor check refuses null (`REFUSES_NULL`) are never nullable, even
    where the ajv stage before it lets null through."""
    if getattr(field.parent, "REFUSES_NULL", False):
        ret.pop("nullable", None)
    return {}


def _documented_as(self: Any, field: Any, ret: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """validation.Checked fields load as is; the document shows the field they stand for."""
    if isinstance(field, validation.Checked):
        return self.field2property(field.documented_as)
    return {}


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    types = {IntegerConverter: "integer", FloatConverter: "number"}
    return [
        {"in": "path", "name": name, "required": True, "schema": {"type": types.get(type(converter), "string")}}
        for name, converter in rule._converters.items()
    ]


def _operation(rule: Rule, method: str, view: Callable[..., Any], meta: Doc, many_methods: bool) -> dict[str, Any]:
    summary, _, description = (view.__doc__ or "").strip().partition("\n")
    operation: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}" if many_methods else rule.endpoint,
        "summary": summary.strip(),
        "tags": [rule.endpoint.partition(".")[0] if "." in rule.endpoint else "service"],
    }
    if description.strip():
        operation["description"] = description.strip()
    parameters = _path_parameters(rule)
    if meta.query is not None:
        parameters.append({"in": "query", "schema": meta.query})
    parameters += _header_parameters(view, meta)
    if parameters:
        operation["parameters"] = parameters
    if meta.body is not None:
        required = any(field.required for field in meta.body._declared_fields.values())
        operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": meta.body}}}
    if meta.response is not None:
        success: dict[str, Any] = {"schema": meta.response}
    else:
        success = {"schema": {"type": "object"} if meta.media_type == "application/json" else {"type": "string"}}
    operation["responses"] = {
        "200": {"description": summary.strip() or "Success", "content": {meta.media_type: success}},
    }
    # gunicorn refuses a request line longer than MAX_REQUEST_LINE_BYTES before the app sees it,
    # which a long enough query string reaches (e.g. many listByIds `ids[]`).
    errors = (*meta.errors, 414) if meta.query is not None else meta.errors
    if meta.etag:
        operation["responses"]["200"]["headers"] = {"ETag": ETAG_HEADER}
        operation["responses"]["304"] = {
            "description": "Not modified: the ETag is still current",
            "headers": {"ETag": ETAG_HEADER},
        }
    if meta.if_match:
        errors = (*errors, 412, 428)
    if getattr(view, "idempotent", False):
        errors = (*errors, 409, 422)
        operation["responses"]["200"]["headers"] = {
            "Idempotent-Replayed": {
                "description": "`true` on a replayed answer",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    for status in errors:
        operation["responses"][str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    operation["security"] = [] if meta.public else SECURITY
    return operation


def _header_parameters(view: Callable[..., Any], meta: Doc) -> list[dict[str, Any]]:
    names = (["If-None-Match"] if meta.etag else []) + (["If-Match"] if meta.if_match else [])
    headers = [
        {
            "in": "header",
            "name": name,
            "required": False,
            "description": CONDITIONAL_HEADERS[name],
            "schema": {"type": "string"},
        }
        for name in names
    ]
    return headers + ([IDEMPOTENCY_KEY] if getattr(view, "idempotent", False) else [])


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every documented route of `app` (undocumented ones are left out;
    tests/test_openapi.py fails on them)."""

    plugin = MarshmallowPlugin()
    spec = APISpec(title=TITLE, version=VERSION, openapi_version=OPENAPI_VERSION, plugins=[plugin], info=INFO)
    plugin.map_to_openapi_type(validation.AjvBoolean, "boolean", None)
    plugin.map_to_openapi_type(validation.AjvNumber, "number", None)
    plugin.map_to_openapi_type(validation.AjvString, fields.String)
    plugin.map_to_openapi_type(validation.AjvList, fields.List)
    plugin.map_to_openapi_type(validation.RCDateTime, "string", "date-time")
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_documented_as)
    plugin.converter.add_attribute_function(_not_nullable)

    spec.components.security_scheme("userId", {"type": "apiKey", "in": "header", "name": "X-User-Id"})
    spec.components.security_scheme("authToken", {"type": "apiKey", "in": "header", "name": "X-Auth-Token"})
    for status, (name, schema, description) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
        if status == 412:
            response["headers"] = {"ETag": {**ETAG_HEADER, "description": "The department's current ETag"}}
        spec.components.response(name, response)

    queries: dict[tuple[str, str], type[Schema] | None] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        meta = view_doc(view)
        if rule.endpoint == "static" or view is None or meta is None or meta.hidden:
            continue
        methods = sorted((rule.methods or set()) - IGNORED_METHODS)
        operations = {m.lower(): _operation(rule, m, view, meta, len(methods) > 1) for m in methods}
        spec.path(path=_PATH_PARAM.sub(r"{\1}", rule.rule), operations=operations)
        queries.update({(_PATH_PARAM.sub(r"{\1}", rule.rule), m.lower()): meta.query for m in methods})
    document = spec.to_dict()
    _drop_query_nullable(document)
    _constrain(document, queries)
    return document


# --- what the validation enforces beyond the marshmallow fields (tests/test_fuzz.py: data generated
# as valid from the document must be accepted) ---

PATH_ENUMS = {
    "user_type": sorted(account_service.LIVECHAT_ROLES),
    "setting_id": sorted(workspace_service.SETTING_TYPES),
}
# Which fields `sort` takes, per query schema (the rule itself: schemas.parse_sort with the same maps).
SORTABLE: dict[type[Schema], Iterable[str]] = {
    schemas.DepartmentListQuerySchema: department_service.DEPARTMENT_SORT,
    schemas.ListByIdsQuerySchema: department_service.DEPARTMENT_SORT,
    schemas.DepartmentAgentsQuerySchema: department_service.AGENT_SORT,
    schemas.LivechatUsersQuerySchema: account_service.USER_SORT_FIELDS,
}
# `fields` and `query` (parseJsonQuery) must be JSON: documented as a flat object of 0s and 1s.
_KEY = r'"[A-Za-z_][A-Za-z0-9_.]{0,30}"'
JSON_OBJECT_PATTERN = rf"^\{{({_KEY}: ?[01](, ?{_KEY}: ?[01])*)?\}}$"
ROLE_LIST = {"type": "array", "items": {"type": "string", "enum": list(account_service.ROLES)}, "uniqueItems": True}
# Per component schema and property: constraints checked by the service, not by the schema's fields.
PROPERTIES: dict[tuple[str, str], dict[str, Any]] = {
    ("UserCreate", "email"): {"pattern": account_service.VALID_EMAIL.pattern},
    ("UserCreate", "roles"): ROLE_LIST,
    ("PermissionUpdateItem", "roles"): ROLE_LIST,
    # its type depends on the setting (workspace_service.SETTING_TYPES); integers fit 32 bits
    ("SettingValue", "value"): {"oneOf": [
        {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}, {"type": "boolean"}, {"type": "string"},
    ]},
}
# Department objects take custom fields besides these (keys `schemas.EXTRA_KEY`, at most
# `schemas.MAX_EXTRA_KEYS`, string/integer/boolean values); OpenAPI 3.0 cannot constrain property
# names, so the document lists the typed keys only.
CUSTOM_FIELDS = (
    f"Custom fields may be added: keys matching `{schemas.EXTRA_KEY.pattern}`, at most {schemas.MAX_EXTRA_KEYS}, "
    f"with string (up to {models.TEXT_MAX} characters), integer or boolean values."
)
# Objects documented without additional properties, with what the description adds. The agents
# body is checked twice: loosely at the route (Including), then strictly (AgentChangesSchema).
CLOSED = {
    "AjvDepartment": CUSTOM_FIELDS,
    "DepartmentUpdate": CUSTOM_FIELDS,
    "DepartmentAgentsBody": None,
    "DepartmentUnit": None,
}


def _sort_pattern(fields: Iterable[str]) -> str:
    names = "|".join(re.escape(name) for name in sorted(fields))
    pair = f'"({names})": ?-?1'
    return rf"^\{{({pair}(, ?{pair})*)?\}}$"


def _constrain(document: dict[str, Any], queries: dict[tuple[str, str], type[Schema] | None]) -> None:
    components = document["components"]["schemas"]
    for (schema, name), constraint in PROPERTIES.items():
        components[schema]["properties"][name].update(constraint)
    for schema, description in CLOSED.items():
        components[schema]["additionalProperties"] = False
        if description:
            components[schema]["description"] = description
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            sortable = SORTABLE.get(queries.get((path, method)))  # type: ignore[arg-type]
            for parameter in operation.get("parameters", []):
                schema, name = parameter["schema"], parameter["name"]
                if parameter["in"] == "path" and name in PATH_ENUMS:
                    schema["enum"] = PATH_ENUMS[name]
                elif parameter["in"] == "query" and name == "sort" and sortable is not None:
                    schema["pattern"] = _sort_pattern(sortable)
                elif parameter["in"] == "query" and name in ("fields", "query"):
                    schema["pattern"] = JSON_OBJECT_PATTERN
                elif parameter["in"] == "query" and schema.get("type") == "array":
                    # Rocket.Chat's qs reads a lone `ids=a` as a string: arrays are sent as `ids[]=a`.
                    parameter["name"] = f"{name}[]"
                    schema["minItems"] = 1


def _drop_query_nullable(document: dict[str, Any]) -> None:
    """A query parameter is absent or a string, never null: `allow_none` on a query field only
    says that the view treats null as absent."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                schema.pop("nullable", None)
                if "enum" in schema:
                    schema["enum"] = [value for value in schema["enum"] if value is not None]


@doc(public=True, errors=())
def serve_document() -> Any:
    """This API's OpenAPI 3 document."""
    extensions = current_app.extensions
    if "openapi" not in extensions:
        extensions["openapi"] = build_spec(current_app)
    # Where the API is mounted, as this request reached it (SCRIPT_NAME, X-Forwarded-Prefix).
    return {**extensions["openapi"], "servers": [{"url": request.script_root or "/"}]}
