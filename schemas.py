"""The wire: every request and response body of the API, and the validation rules of each.

Each schema is built from the blocks in validation.py (Rocket.Chat's ajv and Meteor `check()`
styles, the compiled dump). Schemas never touch the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate

import models
from errors import ApiError, first_message
from validation import (
    AjvBoolean,
    AjvList,
    AjvNested,
    AjvNumber,
    AjvSchema,
    AjvString,
    AnyArray,
    Checked,
    CompiledDumpSchema,
    Including,
    Integer,
    Limited,
    LimitedList,
    MatchSchema,
    Maybe,
    NonNegativeInteger,
    OmitNoneSchema,
    OneOf,
    Optional,
    PlainObject,
    PlainSchema,
    RCDateTime,
    check,
    unstorable,
)

# ---------------------------------------------------------------------------
# Envelopes and common query parameters
# ---------------------------------------------------------------------------


class SuccessSchema(Schema):
    success = fields.Constant(True)


class ErrorSchema(Schema):
    """Every failure (documentation only: errors.py builds these bodies)."""

    success = fields.Constant(False)
    error = fields.String()
    errorType = fields.String()
    details = fields.Dict()
    message = fields.String()  # the extensions' errors (errors.ApiError._extension)


class UnauthorizedSchema(ErrorSchema):
    """A 401 (documentation only): the Restivus-era `status`/`message` keys too (`message` inherited)."""

    status = fields.Constant("error")


class UnavailableSchema(ErrorSchema):
    """A 503 (documentation only); `/readyz` adds a `status`."""

    status = fields.String()


# Upper bound: beyond it offsets overflow the databases' integers (a 500 otherwise).
_PAGE_RANGE = [validate.Range(min=0, error="must be >= 0"), validate.Range(max=2**31 - 1, error="must be <= {max}")]


class PaginationSchema(AjvSchema):
    """`offset`, `count` and `sort` as Rocket.Chat's list endpoints take them."""

    offset = AjvNumber(allow_none=True, validate=_PAGE_RANGE)
    count = AjvNumber(allow_none=True, validate=_PAGE_RANGE)
    sort = AjvString(allow_none=True)


def parse_sort(raw: str | None, allowed: Mapping[str, Any], default: dict[str, int]) -> list[tuple[str, int]]:
    """`sort` is a JSON object of field -> 1|-1 (Rocket.Chat's parseJsonQuery).

    Only fields in `allowed` can be sorted on; anything else is `error-invalid-sort`.
    """
    if raw is None:
        return list(default.items())
    try:
        sort = json.loads(raw)
    except (ValueError, RecursionError):  # the parser recurses per nesting level
        sort = None
    if (
        not isinstance(sort, dict)
        or not all(key in allowed and type(value) is int and value in (1, -1) for key, value in sort.items())
    ):
        error = ApiError.meteor("error-invalid-sort", f"Invalid sort parameter provided: {json.dumps(raw)}")
        error.details = {"helperMethod": "parseJsonQuery"}
        raise error
    return list(sort.items())


# ---------------------------------------------------------------------------
# Authentication and users
# ---------------------------------------------------------------------------


class LoginSchema(Schema):
    """`{user|username|email, password}` or `{resume}`; other keys are ignored like Meteor's login."""

    class Meta:
        unknown = EXCLUDE

    user = fields.String(validate=validate.Length(max=models.EMAIL_MAX))
    username = fields.String(validate=validate.Length(max=models.USERNAME_MAX))
    email = fields.String(validate=validate.Length(max=models.EMAIL_MAX))
    password = fields.Raw()  # a string, or `{digest, algorithm: "sha-256"}`
    resume = fields.String(validate=validate.Length(max=256))
    code = fields.String()

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.unauthorized_login()


class UserEmailSchema(Schema):
    address = fields.String()
    verified = fields.Boolean()


class UserSchema(OmitNoneSchema):
    """A user as Rocket.Chat shows it (never its password or tokens)."""

    _id = fields.String(attribute="id")
    username = fields.String()
    name = fields.String()
    emails = fields.Method("dump_emails")
    status = fields.String()
    statusLivechat = fields.String(attribute="status_livechat")
    active = fields.Boolean()
    roles = fields.List(fields.String())
    type = fields.Constant("user")
    createdAt = RCDateTime(attribute="created_at")
    _updatedAt = RCDateTime(attribute="updated_at")

    def dump_emails(self, user: models.User) -> list[dict[str, Any]] | None:
        if not user.email:
            return None
        return [{"address": user.email, "verified": user.email_verified}]


class OtherUserSchema(OmitNoneSchema):
    """Another user, for a caller without `view-full-other-user-info`: Rocket.Chat's default fields
    (getFullUserData), so no emails, roles or dates."""

    _id = fields.String(attribute="id")
    username = fields.String()
    name = fields.String()
    status = fields.String()
    statusLivechat = fields.String(attribute="status_livechat")
    active = fields.Boolean()
    type = fields.Constant("user")


class MeSchema(UserSchema):
    email = fields.String()
    settings = fields.Constant({"preferences": {}})


class MeResponseSchema(MeSchema):
    """`GET me`: the user itself is the envelope."""

    success = fields.Constant(True)


class LoginDataSchema(Schema):
    userId = fields.String()
    authToken = fields.String()
    me = fields.Nested(MeSchema)


class LoginResponseSchema(Schema):
    status = fields.Constant("success")
    data = fields.Nested(LoginDataSchema)
    success = fields.Constant(True)


class LogoutResponseSchema(Schema):
    status = fields.Constant("success")
    data = fields.Constant({"message": "You've been logged out!"})
    success = fields.Constant(True)


_USERNAME = re.compile(r"^[0-9a-zA-Z_.@-]+$")


class UserCreateSchema(AjvSchema):
    """`users.create` body (Rocket.Chat's UserCreateParamsPOST)."""

    email = AjvString(
        required=True,
        validate=validate.Length(max=models.EMAIL_MAX, error="must NOT have more than {max} characters"),
    )
    name = AjvString(
        required=True,
        validate=validate.Length(max=models.NAME_MAX, error="must NOT have more than {max} characters"),
    )
    password = AjvString(
        required=True,
        validate=validate.Length(min=1, max=1024, error="must NOT have fewer than {min} characters"),
    )
    username = AjvString(required=True, validate=[
        validate.Length(min=1, max=models.USERNAME_MAX, error="must NOT have more than {max} characters"),
        validate.Regexp(_USERNAME, error="must match pattern \"^[0-9a-zA-Z_.@-]+$\""),
    ])
    active = AjvBoolean()
    roles = AjvList(AjvString())
    verified = AjvBoolean()
    requirePasswordChange = AjvBoolean()
    joinDefaultChannels = AjvBoolean()
    sendWelcomeEmail = AjvBoolean()
    setRandomPassword = AjvBoolean()
    bio = AjvString()
    nickname = AjvString()
    statusText = AjvString()
    customFields = fields.Dict()
    settings = fields.Dict()
    fields_ = fields.Raw(data_key="fields")
    freeSwitchExtension = AjvString()
    phones = fields.Raw()


class UserIdSchema(AjvSchema):
    """`{userId}` or `{username}` to name one user."""

    userId = AjvString()
    username = AjvString()
    confirmRelinquish = AjvBoolean()


class UserResponseSchema(Schema):
    user = fields.Nested(UserSchema, allow_none=True)
    success = fields.Constant(True)


class OtherUserResponseSchema(Schema):
    """users.info of another user without `view-full-other-user-info` (a subset of UserResponseSchema)."""

    user = fields.Nested(OtherUserSchema)
    success = fields.Constant(True)


class UsersListQuerySchema(PaginationSchema):
    query = AjvString(allow_none=True)
    fields_ = AjvString(allow_none=True, data_key="fields")


class UsersListSchema(Schema):
    users = fields.List(fields.Nested(UserSchema))
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)


class LivechatUsersQuerySchema(PaginationSchema):
    text = AjvString(allow_none=True)
    onlyAvailable = AjvBoolean(allow_none=True)
    excludeId = AjvString(allow_none=True)
    showIdleAgents = AjvBoolean(allow_none=True)
    query = AjvString(allow_none=True)
    fields_ = AjvString(allow_none=True, data_key="fields")


class LivechatUserSchema(OmitNoneSchema):
    """An agent or manager as `livechat/users/:type` shows it (no roles)."""

    _id = fields.String(attribute="id")
    username = fields.String()
    name = fields.String()
    status = fields.String()
    statusLivechat = fields.String(attribute="status_livechat")
    emails = fields.Method("dump_emails")
    livechat = fields.Constant({})

    dump_emails = UserSchema.dump_emails


class LivechatUserResponseSchema(Schema):
    user = fields.Nested(LivechatUserSchema, allow_none=True)
    success = fields.Constant(True)


class LivechatUsersListSchema(Schema):
    users = fields.List(fields.Nested(LivechatUserSchema))
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)


class LivechatUserAddSchema(AjvSchema):
    username = AjvString(required=True, validate=validate.Length(max=models.USERNAME_MAX))


class LivechatUserAddedSchema(Schema):
    user = fields.Dict()
    success = fields.Constant(True)


# ---------------------------------------------------------------------------
# Permissions and settings
# ---------------------------------------------------------------------------


class PermissionSchema(Schema):
    _id = fields.String(attribute="id")
    roles = fields.List(fields.String())
    _updatedAt = RCDateTime(attribute="updated_at")


class PermissionsListQuerySchema(PlainSchema):
    updatedSince = fields.String(metadata={"format": "date-time"})


class PermissionsListSchema(Schema):
    update = fields.List(fields.Nested(PermissionSchema))
    remove = fields.List(fields.Nested(PermissionSchema))
    success = fields.Constant(True)


class PermissionUpdateItemSchema(Schema):
    class Meta:
        unknown = RAISE

    _id = fields.String(required=True, attribute="id", validate=validate.Length(max=models.ID_MAX))
    roles = fields.List(fields.String(validate=validate.Length(max=models.ID_MAX)), required=True)


class PermissionsUpdateSchema(Schema):
    """`{permissions: [{_id, roles}]}`; every failure is "Invalid body params"."""

    class Meta:
        unknown = RAISE

    permissions = fields.List(fields.Nested(PermissionUpdateItemSchema), required=True)

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError("Invalid body params", error_type="error-invalid-body-params")


class PermissionsUpdatedSchema(Schema):
    permissions = fields.List(fields.Nested(PermissionSchema))
    success = fields.Constant(True)


class SettingValueSchema(Schema):
    """`POST settings/:_id` body: `{value}` (its type is checked against the setting)."""

    class Meta:
        unknown = EXCLUDE

    value = fields.Raw(required=True, allow_none=True)

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(None)


class SettingSchema(Schema):
    _id = fields.String(attribute="id")
    value = fields.Raw()
    success = fields.Constant(True)


class InfoSchema(Schema):
    version = fields.String()
    success = fields.Constant(True)


# ---------------------------------------------------------------------------
# Departments (docs/compatibility.md §1–§2)
# ---------------------------------------------------------------------------


# Keys the server maintains: a client may send them back (e.g. a department it fetched),
# but they never overwrite the stored values (docs/compatibility.md §D.12).
SERVER_KEYS = frozenset({"_id", "_updatedAt", "numAgents", "archived", "type"})
MAX_EXTRA_KEYS = 50
EXTRA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

# Lists a department stores, bounded so that no list page carries a huge one (README, Limits).
MAX_CLOSING_TAGS = 100
MAX_FORWARD_DEPARTMENTS = 500  # as many as one listByIds can name

# Typed department keys (docs/compatibility.md §1.1) -> their Meteor pattern.
DEPARTMENT_FIELDS: dict[str, Any] = {
    "name": Limited(models.NAME_MAX),
    "email": Limited(models.EMAIL_MAX),
    "enabled": bool,
    "showOnRegistration": bool,
    "showOnOfflineForm": bool,
    "description": Limited(models.TEXT_MAX),
    "requestTagBeforeClosingChat": bool,
    "chatClosingTags": LimitedList(Limited(models.NAME_MAX), MAX_CLOSING_TAGS),
    "fallbackForwardDepartment": Limited(models.ID_MAX),
    "departmentsAllowedToForward": LimitedList(Limited(models.ID_MAX), MAX_FORWARD_DEPARTMENTS),
    "allowReceiveForwardOffline": bool,
    "offlineMessageChannelName": Limited(models.TEXT_MAX),
    "abandonedRoomsCloseCustomMessage": Limited(models.TEXT_MAX),
    "waitingQueueMessage": Limited(models.TEXT_MAX),
}
# The user's document (docs/compatibility.md §D.3): these four are required on create; PUT merges.
REQUIRED_ON_CREATE = ("name", "email", "enabled", "showOnRegistration")
EXTRA_VALUE = OneOf(Limited(models.TEXT_MAX), Integer, bool)


def department_pattern(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The check() pattern for a department body: typed keys, plus any other key as a
    primitive "custom field" (Rocket.Chat's rule: string, integer or boolean)."""
    pattern = {
        key: sub if creating and key in REQUIRED_ON_CREATE else Optional(sub)
        for key, sub in DEPARTMENT_FIELDS.items()
    }
    for key in data:
        if key not in pattern and EXTRA_KEY.match(key):
            pattern[key] = EXTRA_VALUE
    return pattern


class DepartmentUpdateSchema(MatchSchema):
    """The `department` object of an update (a merge: every key optional), after the envelope was checked."""

    CREATING = False

    # Documentation: the pattern above (DEPARTMENT_FIELDS) validates, so these only ever load
    # values it accepted, unchanged. Other keys are custom fields (string, integer or boolean).
    name = fields.String(validate=validate.Length(max=models.NAME_MAX))
    email = fields.String(validate=validate.Length(max=models.EMAIL_MAX))
    enabled = fields.Boolean()
    showOnRegistration = fields.Boolean()
    showOnOfflineForm = fields.Boolean()
    description = fields.String(validate=validate.Length(max=models.TEXT_MAX))
    requestTagBeforeClosingChat = fields.Boolean()
    chatClosingTags = fields.List(
        fields.String(validate=validate.Length(max=models.NAME_MAX)), validate=validate.Length(max=MAX_CLOSING_TAGS)
    )
    fallbackForwardDepartment = fields.String(validate=validate.Length(max=models.ID_MAX))
    departmentsAllowedToForward = fields.List(
        fields.String(validate=validate.Length(max=models.ID_MAX)),
        validate=validate.Length(max=MAX_FORWARD_DEPARTMENTS),
    )
    allowReceiveForwardOffline = fields.Boolean()
    offlineMessageChannelName = fields.String(validate=validate.Length(max=models.TEXT_MAX))
    abandonedRoomsCloseCustomMessage = fields.String(validate=validate.Length(max=models.TEXT_MAX))
    waitingQueueMessage = fields.String(validate=validate.Length(max=models.TEXT_MAX))

    @pre_load
    def _check(self, data: Any, **_kwargs: Any) -> Any:
        check(data, PlainObject)
        data = {key: value for key, value in data.items() if key not in SERVER_KEYS}
        check(data, department_pattern(data, creating=self.CREATING))
        if len([key for key in data if key not in DEPARTMENT_FIELDS]) > MAX_EXTRA_KEYS:
            raise ValidationError(f"Match error: Too many custom fields (at most {MAX_EXTRA_KEYS})")
        return data


class DepartmentCreateFieldsSchema(DepartmentUpdateSchema):
    """The `department` object of a create: the user's document's four keys are required."""

    CREATING = True

    name = fields.String(required=True, validate=validate.Length(max=models.NAME_MAX))
    email = fields.String(required=True, validate=validate.Length(max=models.EMAIL_MAX))
    enabled = fields.Boolean(required=True)
    showOnRegistration = fields.Boolean(required=True)


AGENT_ITEM = Including(
    {
        "agentId": Limited(models.ID_MAX),
        "username": Maybe(Limited(models.USERNAME_MAX)),
        "count": Maybe(NonNegativeInteger),
        "order": Maybe(NonNegativeInteger),
    }
)


class AgentItemSchema(Schema):
    """One agent item of `agents`, `upsert` or `remove` (documentation only: AGENT_ITEM validates)."""

    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)

    class Meta:
        unknown = INCLUDE

    agentId = fields.String(required=True, validate=validate.Length(max=models.ID_MAX))
    username = fields.String(allow_none=True, validate=validate.Length(max=models.USERNAME_MAX))
    count = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))
    order = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))


AGENT_ITEMS = fields.List(fields.Nested(AgentItemSchema))
MAX_AGENTS_PER_REQUEST = 1000


class AgentChangesSchema(MatchSchema):
    """`{upsert: [...], remove: [...]}` as Helper.updateDepartmentAgents checks it (docs/compatibility.md §2.11)."""

    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)

    PATTERN = {"upsert": Maybe([AGENT_ITEM]), "remove": Maybe([AGENT_ITEM])}

    upsert = Checked(AGENT_ITEMS, allow_none=True)
    remove = Checked(AGENT_ITEMS, allow_none=True)

    @pre_load
    def _limit(self, data: Any, **_kwargs: Any) -> Any:
        if sum(len(data.get(key) or []) for key in ("upsert", "remove")) > MAX_AGENTS_PER_REQUEST:
            raise ValidationError(f"Match error: Too many agents in one request (at most {MAX_AGENTS_PER_REQUEST})")
        return data


class DepartmentAgentsBodySchema(MatchSchema):
    """`POST livechat/department/:_id/agents`: both arrays are required at the route."""

    PATTERN = Including({"upsert": AnyArray, "remove": AnyArray})

    upsert = Checked(AGENT_ITEMS, required=True)
    remove = Checked(AGENT_ITEMS, required=True)


class DepartmentUnitSchema(Schema):
    """`departmentUnit` of an update, as its Meteor pattern has it: `_id` and no other key."""

    _id = fields.String()


class DepartmentBodySchema(MatchSchema):
    """The envelope of a create or an update (`check(body, {department: Object, …})`)."""

    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)

    PATTERN = {
        "department": PlainObject,
        "agents": Maybe(AnyArray),
        "departmentUnit": Maybe({"_id": Optional(str)}),
    }

    class Meta:
        unknown = RAISE  # the pattern has already refused other keys

    department = Checked(fields.Nested(DepartmentUpdateSchema), required=True)
    agents = Checked(AGENT_ITEMS, allow_none=True)
    departmentUnit = Checked(fields.Nested(DepartmentUnitSchema), allow_none=True)


class AjvDepartmentSchema(AjvSchema):
    """ajv's department schema of `POST livechat/department`: coerces, extra keys allowed."""

    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)

    class Meta:
        unknown = INCLUDE

    name = AjvString(required=True)
    email = AjvString(required=True)
    enabled = AjvBoolean(required=True)
    showOnRegistration = AjvBoolean(required=True)
    showOnOfflineForm = AjvBoolean()
    description = AjvString(allow_none=True)
    requestTagBeforeClosingChat = AjvBoolean(allow_none=True)
    chatClosingTags = AjvList(AjvString(), allow_none=True)
    fallbackForwardDepartment = AjvString(allow_none=True)
    departmentsAllowedToForward = AjvList(AjvString(), allow_none=True)
    allowReceiveForwardOffline = AjvBoolean(allow_none=True)
    offlineMessageChannelName = AjvString(allow_none=True)
    abandonedRoomsCloseCustomMessage = AjvString(allow_none=True)
    waitingQueueMessage = AjvString(allow_none=True)


class AjvAgentItemSchema(AjvSchema):
    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)
    agentId = AjvString(required=True)
    username = AjvString()  # accepted and ignored (the user's document sends it)
    count = AjvNumber(allow_none=True)
    order = AjvNumber(allow_none=True)


class AjvDepartmentUnitSchema(AjvSchema):
    _id = AjvString()


class DepartmentCreateSchema(AjvSchema):
    """`POST livechat/department` body, validated like Rocket.Chat's ajv schema."""

    REFUSES_NULL = True  # the Meteor check refuses null in every key (openapi.py documents none as nullable)

    department = AjvNested(AjvDepartmentSchema, required=True)
    agents = AjvList(AjvNested(AjvAgentItemSchema), allow_none=True)
    departmentUnit = AjvNested(AjvDepartmentUnitSchema, allow_none=True)


class DepartmentListQuerySchema(PaginationSchema):
    """Query of `GET livechat/department` and `livechat/departments/archived`."""

    text = AjvString(
        allow_none=True,
        validate=validate.Length(max=models.NAME_MAX, error="must NOT have more than {max} characters"),
    )
    enabled = AjvString(allow_none=True)
    onlyMyDepartments = AjvString(
        allow_none=True, validate=validate.OneOf(["true", "false"], error="must be equal to one of the allowed values")
    )
    excludeDepartmentId = AjvString(allow_none=True)
    showArchived = AjvString(allow_none=True)
    query = AjvString(allow_none=True)


QUERY_STRING = {"type": "string"}  # how the OpenAPI document shows a query parameter read as is


class DepartmentGetQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    includeAgents = fields.Raw(metadata=QUERY_STRING)
    onlyMyDepartments = fields.Raw(metadata=QUERY_STRING)


class DepartmentAgentsQuerySchema(PaginationSchema):
    class Meta:
        unknown = EXCLUDE


class AgentDepartmentsQuerySchema(AjvSchema):
    enabledDepartmentsOnly = AjvString(allow_none=True)


SELECTOR_PATTERN = r'^\{("term": ?"[A-Za-z0-9 ]{0,40}")?\}$'


class AutocompleteQuerySchema(Schema):
    """`selector` is a JSON object string: `{term?, exceptions?, conditions?}`."""

    class Meta:
        unknown = EXCLUDE

    selector = fields.Raw(
        required=True,
        metadata={
            **QUERY_STRING,
            "description": "JSON: {term?, exceptions?, conditions?}",
            # What a client generated from the document may send: `{}` or `{"term": …}`.
            "pattern": SELECTOR_PATTERN,
        },
    )
    onlyMyDepartments = fields.Raw(metadata=QUERY_STRING)
    showArchived = fields.Raw(metadata=QUERY_STRING)

    @pre_load
    def _parse_selector(self, data: Any, **_kwargs: Any) -> Any:
        raw = data.get("selector")
        if raw in (None, ""):
            raise ValidationError("The 'selector' param is required")
        if not isinstance(raw, str):
            raise ValidationError("The 'selector' param must be a JSON string")
        try:
            selector = json.loads(raw)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        except RecursionError:  # the parser recurses per nesting level
            raise ValidationError("The 'selector' param is nested too deeply") from None
        if not isinstance(selector, dict):
            raise ValidationError("The 'selector' param must be a JSON object")
        problem = unstorable(selector)  # its `\ud800` or `\u0000` escapes reach SQL otherwise
        if problem:
            raise ValidationError(problem)
        check_selector(selector)
        return {**data, "selector": selector}

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(first_message(error.messages))


# Fields `conditions` may test for equality, and their stored type.
AUTOCOMPLETE_CONDITION_FIELDS = {"_id": str, "name": str, "email": str, "enabled": bool, "archived": bool,
                                 "showOnRegistration": bool, "showOnOfflineForm": bool, "type": str, "numAgents": int}


def check_selector(selector: dict[str, Any]) -> None:
    """The safe subset of Rocket.Chat's raw Mongo `conditions` (docs/compatibility.md §D.10): equality on known
    fields and `_id` with `$in`/`$nin`. Anything else is refused, never evaluated."""
    term = selector.get("term")
    if term is not None and not isinstance(term, str):
        raise ValidationError("The 'selector.term' param must be a string")
    exceptions = selector.get("exceptions")
    if exceptions is not None and not (isinstance(exceptions, list) and all(isinstance(e, str) for e in exceptions)):
        raise ValidationError("The 'selector.exceptions' param must be an array of strings")
    conditions = selector.get("conditions")
    if conditions is None:
        return
    if not isinstance(conditions, dict):
        raise ValidationError("The 'selector.conditions' param must be an object")
    for key, value in conditions.items():
        expected = AUTOCOMPLETE_CONDITION_FIELDS.get(key)
        if expected is not None and type(value) is expected:
            continue
        if (
            key == "_id" and isinstance(value, dict) and len(value) == 1
            and next(iter(value)) in ("$in", "$nin")
            and isinstance(ids := next(iter(value.values())), list) and all(isinstance(i, str) for i in ids)
        ):
            continue
        raise ValidationError(f"Unsupported condition in selector: {json.dumps(key)}")


MAX_IDS = 500  # qs' arrayLimit: Rocket.Chat turns longer lists into objects


class ListByIdsQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ids = fields.Raw(required=True, metadata={"type": "array", "items": {"type": "string"}, "maxItems": MAX_IDS})
    sort = fields.Raw(metadata=QUERY_STRING)
    fields_ = fields.Raw(data_key="fields", metadata=QUERY_STRING)
    query = fields.Raw(metadata=QUERY_STRING)

    @pre_load
    def _check_ids(self, data: Any, **_kwargs: Any) -> Any:
        ids = data.get("ids")
        if ids is None:
            raise ValidationError("The 'ids' param is required")
        if not isinstance(ids, list):
            raise ValidationError("The 'ids' param must be an array")
        if len(ids) > MAX_IDS:
            raise ValidationError(f"The 'ids' param can hold at most {MAX_IDS} ids")
        return data

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(first_message(error.messages))




def check_json_param(name: str, raw: Any) -> None:
    """parseJsonQuery's check of `fields`/`query`: JSON when given (their content is not used)."""
    if raw is None:
        return
    try:
        json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError):  # the parser recurses per nesting level
        error = ApiError.meteor(f"error-invalid-{name}", f"Invalid {name} parameter provided: {json.dumps(raw)}")
        error.details = {"helperMethod": "parseJsonQuery"}
        raise error from None


# --- responses ---


class DepartmentSchema(CompiledDumpSchema):
    """A department as Rocket.Chat returns it; custom fields follow the typed ones."""

    class Meta:
        unknown = INCLUDE  # never loaded: tells the OpenAPI document that custom fields may follow

    _id = fields.String(attribute="id")
    enabled = fields.Boolean()
    name = fields.String()
    description = fields.String()
    showOnRegistration = fields.Boolean(attribute="show_on_registration")
    showOnOfflineForm = fields.Boolean(attribute="show_on_offline_form")
    requestTagBeforeClosingChat = fields.Boolean(attribute="request_tag_before_closing_chat")
    email = fields.String()
    chatClosingTags = fields.List(fields.String(), attribute="chat_closing_tags")
    offlineMessageChannelName = fields.String(attribute="offline_message_channel_name")
    abandonedRoomsCloseCustomMessage = fields.String(attribute="abandoned_rooms_close_custom_message")
    waitingQueueMessage = fields.String(attribute="waiting_queue_message")
    departmentsAllowedToForward = fields.List(fields.String(), attribute="departments_allowed_to_forward")
    fallbackForwardDepartment = fields.String(attribute="fallback_forward_department")
    allowReceiveForwardOffline = fields.Boolean(attribute="allow_receive_forward_offline")
    archived = fields.Boolean()
    type = fields.String()
    numAgents = fields.Integer(attribute="num_agents")
    _updatedAt = RCDateTime(attribute="updated_at")

    def finish(self, data: dict[str, Any], department: Any) -> dict[str, Any]:
        if not department.extra:
            return data
        updated_at = data.pop("_updatedAt")
        data.update({k: v for k, v in department.extra.items() if k not in data})
        data["_updatedAt"] = updated_at
        return data


class DepartmentAgentSchema(CompiledDumpSchema):
    _id = fields.String(attribute="id")
    agentId = fields.String(attribute="agent_id")
    departmentId = fields.String(attribute="department_id")
    username = fields.String()
    departmentEnabled = fields.Boolean(attribute="department_enabled")
    count = fields.Integer()
    order = fields.Integer()
    _updatedAt = RCDateTime(attribute="updated_at")


class DepartmentWithAgentsSchema(Schema):
    """GET one, POST and PUT: `{department, agents?, success}`."""

    department = fields.Nested(DepartmentSchema, allow_none=True)
    agents = fields.Nested(DepartmentAgentSchema, many=True)
    success = fields.Constant(True)


class DepartmentListSchema(Schema):
    departments = fields.Nested(DepartmentSchema, many=True)
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)


class DepartmentsSchema(Schema):
    """listByIds: `{departments, success}`."""

    departments = fields.Nested(DepartmentSchema, many=True)
    success = fields.Constant(True)


class DepartmentAgentListSchema(Schema):
    agents = fields.Nested(DepartmentAgentSchema, many=True)
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)


class AutocompleteItemSchema(Schema):
    _id = fields.String(attribute="id")
    name = fields.String()


class AutocompleteSchema(Schema):
    items = fields.List(fields.Nested(AutocompleteItemSchema))
    success = fields.Constant(True)


class CreationAvailableSchema(Schema):
    isDepartmentCreationAvailable = fields.Boolean()
    success = fields.Constant(True)


class AgentDepartmentSchema(DepartmentAgentSchema):
    """An agent's link joined with its department's name (`livechat/agents/:id/departments`)."""

    departmentName = fields.String(attribute="department_name")


class AgentDepartmentsSchema(Schema):
    departments = fields.List(fields.Nested(AgentDepartmentSchema))
    success = fields.Constant(True)


# ---------------------------------------------------------------------------
# Extension routes (/api/ext/v1): department history, change feed, webhooks (issue 15)
# ---------------------------------------------------------------------------

CURSOR_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,9})?$"
FEED_MAX_LIMIT = 1000


class DepartmentHistoryQuerySchema(AjvSchema):
    """Query of `GET ext/v1/livechat/department/:id/history`: a page, newest first."""

    offset = AjvNumber(allow_none=True, validate=_PAGE_RANGE)
    count = AjvNumber(allow_none=True, validate=_PAGE_RANGE)


class DepartmentChangesQuerySchema(AjvSchema):
    """Query of `GET ext/v1/livechat/department.changes`: events after a cursor, oldest first."""

    after = AjvString(allow_none=True, validate=validate.Regexp(CURSOR_PATTERN, error="must match pattern \"{regex}\""))
    limit = AjvNumber(
        allow_none=True,
        validate=[
            validate.Range(min=1, error="must be >= 1"),
            validate.Range(max=FEED_MAX_LIMIT, error="must be <= {max}"),
        ],
    )


class AgentLinkSchema(Schema):
    agentId = fields.String()
    username = fields.String()
    count = fields.Integer()
    order = fields.Integer()


class AgentLinkChangeSchema(Schema):
    agentId = fields.String()
    username = fields.String()
    before = fields.Dict(keys=fields.String(), values=fields.Integer())
    after = fields.Dict(keys=fields.String(), values=fields.Integer())


class AgentChangesOfEventSchema(Schema):
    added = fields.List(fields.Nested(AgentLinkSchema))
    removed = fields.List(fields.Nested(AgentLinkSchema))
    changed = fields.List(fields.Nested(AgentLinkChangeSchema))


class ActorSchema(Schema):
    type = fields.String(validate=validate.OneOf(["user", "cli", "database"]))
    userId = fields.String()
    username = fields.String()
    requestId = fields.String()


class DepartmentEventSchema(Schema):
    """One committed transaction's change of one department (docs/history-and-webhooks.md)."""

    cursor = fields.String()
    time = fields.String()
    departmentId = fields.String()
    kind = fields.String(validate=validate.OneOf(models.EVENT_KINDS))
    before = fields.Dict(keys=fields.String())
    after = fields.Dict(keys=fields.String())
    agents = fields.Nested(AgentChangesOfEventSchema)
    actor = fields.Nested(ActorSchema)


class BuiltAsDocumented(fields.Nested):
    """Dumps a value as it is: events.py builds each event in DepartmentEventSchema's shape (the
    fuzz run checks answers against it), and a field-by-field dump cost 0.2 s per 10,000 events
    of the feed."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return value


class DepartmentHistorySchema(Schema):
    events = fields.List(BuiltAsDocumented(DepartmentEventSchema))
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)


class DepartmentChangesSchema(Schema):
    events = fields.List(BuiltAsDocumented(DepartmentEventSchema))
    cursor = fields.String(metadata={"description": "Where to continue: pass it as `after`"})
    success = fields.Constant(True)


WEBHOOK_URL_MAX = 2000
WEBHOOK_DEPARTMENTS_MAX = 100
WEBHOOK_URL_PATTERN = r"^https?://[^/?#@\s]+([/?#]\S*)?$"


class WebhookCreateSchema(AjvSchema):
    """Body of `POST ext/v1/webhooks`: where to send, which kinds, optionally which departments."""

    # The pattern is the URL's shape; whether its host resolves to a public address is known only
    # by asking DNS (webhooks.destination), which no document can say.
    url = AjvString(
        required=True,
        validate=validate.Length(min=1, max=WEBHOOK_URL_MAX, error="must NOT have more than {max} characters"),
        metadata={"pattern": WEBHOOK_URL_PATTERN},
    )
    kinds = fields.List(
        fields.String(
            validate=validate.OneOf(list(models.EVENT_KINDS), error="must be equal to one of the allowed values"),
        ),
        required=True,
        validate=validate.Length(
            min=1,
            max=len(list(models.EVENT_KINDS)),
            error="must have between {min} and {max} items",
        ),
    )
    departmentIds = fields.List(
        fields.String(
            validate=validate.Length(min=1, max=models.ID_MAX, error="must NOT have more than {max} characters"),
        ),
        allow_none=True,
        validate=validate.Length(min=1, max=WEBHOOK_DEPARTMENTS_MAX, error="must have between {min} and {max} items"),
    )


class WebhookUpdateSchema(AjvSchema):
    """Body of `PUT ext/v1/webhooks/:id`: turn an endpoint on (again) or off."""

    enabled = fields.Boolean(required=True)  # only true or false: _strict_boolean

    @pre_load
    def _strict_boolean(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, Mapping) and "enabled" in data and type(data["enabled"]) is not bool:
            raise ValidationError("must be boolean")
        return data


class WebhookDeliveriesQuerySchema(AjvSchema):
    offset = AjvNumber(allow_none=True, validate=_PAGE_RANGE)
    count = AjvNumber(allow_none=True, validate=_PAGE_RANGE)


class WebhookSchema(Schema):
    _id = fields.String(attribute="id")
    url = fields.String()
    kinds = fields.List(fields.String())
    departmentIds = fields.List(fields.String(), attribute="department_ids", allow_none=True)
    enabled = fields.Boolean()
    disabledReason = fields.String(attribute="disabled_reason", allow_none=True)
    _createdAt = RCDateTime(attribute="created_at")


class WebhookCreatedSchema(Schema):
    webhook = fields.Nested(WebhookSchema)
    secret = fields.String(metadata={"description": "The signing secret (whsec_…): shown this once only"})
    success = fields.Constant(True)


class WebhookResponseSchema(Schema):
    webhook = fields.Nested(WebhookSchema)
    success = fields.Constant(True)


class WebhookListSchema(Schema):
    webhooks = fields.List(fields.Nested(WebhookSchema))
    success = fields.Constant(True)


class WebhookAttemptSchema(Schema):
    attemptedAt = fields.Integer(attribute="attempted_at", metadata={"description": "epoch milliseconds"})
    statusCode = fields.Integer(attribute="status_code", allow_none=True)
    error = fields.String(allow_none=True)
    durationMs = fields.Integer(attribute="duration_ms")


class WebhookDeliverySchema(Schema):
    _id = fields.Integer(attribute="delivery.id")
    webhookId = fields.String(attribute="delivery.message_id", metadata={"description": "the webhook-id header"})
    cursor = fields.String(attribute="delivery.cursor")
    kind = fields.String(attribute="delivery.kind")
    departmentId = fields.String(attribute="delivery.department_id")
    status = fields.String(attribute="delivery.status", validate=validate.OneOf(["pending", "delivered", "failed"]))
    attempts = fields.List(fields.Nested(WebhookAttemptSchema))
    nextAttemptAt = fields.Integer(attribute="delivery.next_attempt_at")


class WebhookDeliveryListSchema(Schema):
    deliveries = fields.List(fields.Nested(WebhookDeliverySchema))
    count = fields.Integer()
    offset = fields.Integer()
    total = fields.Integer()
    success = fields.Constant(True)
