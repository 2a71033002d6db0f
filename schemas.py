"""The wire: every request and response body, and the validation rules of each.

Rocket.Chat validates in two styles and clients see both (shared/spec §3.5–§3.7):
- ajv (`validateParams` on some routes): coerces types, stops at the first error, and answers
  `"<message> [invalid-params]"`. `AjvSchema` reproduces that.
- Meteor `check()`: no coercion, `"Match error: …"` messages with a field path. `check()` and
  the pattern helpers below reproduce that, and `MatchSchema` runs them before loading.
Schemas never touch the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    post_load,
    pre_load,
    validate,
)
from sqlalchemy import Row

import models
from errors import ApiError, first_message

# ---------------------------------------------------------------------------
# Shared fields
# ---------------------------------------------------------------------------


def format_date(value: datetime) -> str:
    """`2016-12-13T17:22:19.109Z`, JavaScript's toISOString() of a UTC value."""
    return value.isoformat(timespec="milliseconds")[:23] + "Z"  # cut the "+00:00" of aware values


class RCDateTime(fields.Field[datetime]):
    """A date as Rocket.Chat sends it."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_date(value)


class Checked(fields.Raw):
    """A value a Meteor pattern has already checked, loaded as is: a second validation would change
    Rocket.Chat's messages and check order. `documented_as` describes it in the OpenAPI document
    (openapi.py) and takes no part in validation."""

    def __init__(self, documented_as: fields.Field, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.documented_as = documented_as


class OmitNoneSchema(Schema):
    """Rocket.Chat drops `undefined` keys instead of sending null (shared/spec §3.1)."""

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:  # type: ignore[override]
        data = super().dump(obj, many=many)
        if many if many is not None else self.many:
            return [{k: v for k, v in item.items() if v is not None} for item in data]
        return {k: v for k, v in data.items() if v is not None}


# (wire key, attribute) per field in order; (wire key, attribute, field) of those not copied as is.
DumpPlan = tuple[list[tuple[str, str]], list[tuple[str, str, fields.Field[Any]]]]


class CompiledDumpSchema(OmitNoneSchema):
    """A flat response schema dumped through a plan compiled once per process.

    marshmallow spends most of a 50-department list in per-field machinery (measured: 3.5 ms
    of a 4-5 ms response). The plan keeps the schema's own fields, keys and order: values that
    the database already stores with the wire type are copied, the others (dates) go through
    their field's serializer, None is omitted, then `finish` runs (the schema's post-dump
    step). tests/test_compiled_dump.py checks it against marshmallow's own dump.
    """

    COPIED = (fields.String, fields.Boolean, fields.Integer, fields.List)

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:  # type: ignore[override]
        plan = self.__dict__.get("_plan") or self._compile()
        if many if many is not None else self.many:
            return [self._dump_one(plan, item) for item in obj]
        return self._dump_one(plan, obj)

    def _compile(self) -> DumpPlan:
        """(wire key, attribute) of every field in order, and the fields that need serialising."""
        keys, serialized = [], []
        for name, field in self.dump_fields.items():
            if type(field) not in (*self.COPIED, RCDateTime):
                raise TypeError(f"{type(self).__name__}.{name}: {type(field).__name__} cannot be compiled")
            keys.append((field.data_key or name, field.attribute or name))
            if type(field) not in self.COPIED:
                serialized.append((field.data_key or name, field.attribute or name, field))
        self._plan: DumpPlan = (keys, serialized)
        return self._plan

    def _dump_one(self, plan: DumpPlan, obj: Any) -> dict[str, Any]:
        keys, serialized = plan
        # A Core row is read through its mapping: getattr on a Row costs 4x more (bench profiles).
        get = obj._mapping.get if isinstance(obj, Row) else lambda attribute: getattr(obj, attribute, None)
        data = {key: value for key, attribute in keys if (value := get(attribute)) is not None}
        for key, attribute, field in serialized:  # in place: the key keeps its position
            if key in data:
                data[key] = field._serialize(data[key], attribute, obj)
        return self.finish(data, obj)

    def finish(self, data: dict[str, Any], obj: Any) -> dict[str, Any]:
        """The post-dump step, shared by the compiled and the marshmallow paths."""
        return data

    @post_dump(pass_original=True)
    def _finish(self, data: dict[str, Any], obj: Any, **_kwargs: Any) -> dict[str, Any]:
        return self.finish(data, obj)


# ---------------------------------------------------------------------------
# ajv-style validation (coercing, first error wins, "[invalid-params]")
# ---------------------------------------------------------------------------

_NUMBER = re.compile(r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


class AjvString(fields.String):
    """ajv `type: string` with coerceTypes: numbers and booleans become strings."""

    default_error_messages = {"invalid": "must be string", "null": "must be string"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = json.dumps(value)
        return super()._deserialize(value, attr, data, **kwargs)


class AjvBoolean(fields.Field[bool]):
    """ajv `type: boolean` with coerceTypes: "true"/"false"/1/0 become booleans."""

    default_error_messages = {"invalid": "must be boolean", "null": "must be boolean"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if value is True or value == "true" or (type(value) in (int, float) and value == 1):
            return True
        if value is False or value == "false" or (type(value) in (int, float) and value == 0):
            return False
        raise self.make_error("invalid")


class AjvNumber(fields.Field[float]):
    """ajv `type: number` with coerceTypes: numeric strings become numbers."""

    default_error_messages = {"invalid": "must be number", "null": "must be number"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int | float:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int | float):
            return value
        if isinstance(value, str) and _NUMBER.match(value):
            number = float(value)
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        raise self.make_error("invalid")


class AjvList(fields.List):
    default_error_messages = {"invalid": "must be array", "null": "must be array"}


class AjvNested(fields.Nested):
    default_error_messages = {"type": "must be object", "null": "must be object"}


class AjvSchema(Schema):
    """Checks like ajv: object type, then required keys in order, then extra keys, then types."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "must be object", "unknown": "must NOT have additional properties"}

    @pre_load
    def _required_first(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValidationError("must be object")
        for name, field in self.fields.items():
            key = field.data_key or name
            if field.required and key not in data:
                raise ValidationError(f"must have required property '{key}'")
        if self.unknown == RAISE:
            known = {field.data_key or name for name, field in self.fields.items()}
            if any(key not in known for key in data):
                raise ValidationError("must NOT have additional properties")
        return data

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.invalid_params(first_message(error.messages))


# ---------------------------------------------------------------------------
# Meteor check() patterns
# ---------------------------------------------------------------------------

MISSING = object()  # JavaScript's `undefined`: the key is not there at all


class Optional:
    """Match.Optional: the key may be absent (but not null)."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern


class Maybe(Optional):
    """Match.Maybe: absent or null."""


class OneOf:
    def __init__(self, *patterns: Any) -> None:
        self.patterns = patterns


class Including:
    """Match.ObjectIncluding: the listed keys are checked, other keys are allowed."""

    def __init__(self, patterns: dict[str, Any]) -> None:
        self.patterns = patterns


class Where:
    """Match.Where: a predicate."""

    def __init__(self, predicate: Any) -> None:
        self.predicate = predicate


class Integer:
    """Match.Integer: a 32-bit integer, as JavaScript's `(value | 0) === value` allows."""


class AnyArray:
    """The `Array` constructor used as a pattern."""


class Limited:
    """A string of at most `max_length` characters (our bound; Rocket.Chat has none)."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length


class NonNegativeInteger:
    """Match.Integer, and not below 0 (Rocket.Chat added the same rule for count/order in 2026)."""


class PlainObject:
    """The `Object` constructor used as a pattern: any plain object."""


_JS_IDENTIFIER = re.compile(r"^[a-z_$][0-9a-z_$]*$", re.IGNORECASE)


def _js_typeof(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def _prepend_path(key: str | int, base: str) -> str:
    if isinstance(key, int) or key.isdigit():
        key = f"[{key}]"
    elif not _JS_IDENTIFIER.match(key):
        key = json.dumps([key])
    if base and not base.startswith("["):
        return f"{key}.{base}"
    return key + base


def _is_integer(value: Any) -> bool:
    return type(value) in (int, float) and float(value).is_integer() and -(2**31) <= value < 2**31


def _match(value: Any, pattern: Any) -> tuple[str, str] | None:
    """Meteor's testSubtree: None when `value` matches, else (message, path)."""
    if isinstance(pattern, Optional):
        if value is MISSING or (value is None and isinstance(pattern, Maybe)):
            return None
        if _match(value, pattern.pattern) is None:
            return None
        return ("Failed Match.OneOf, Match.Maybe or Match.Optional validation", "")
    if isinstance(pattern, OneOf):
        if any(_match(value, p) is None for p in pattern.patterns):
            return None
        return ("Failed Match.OneOf, Match.Maybe or Match.Optional validation", "")
    if value is MISSING:
        value = None
    if pattern in (str, bool):
        expected = "string" if pattern is str else "boolean"
        if _js_typeof(value) == expected:
            return None
        return (f"Expected {expected}, got {_js_typeof(value)}", "")
    if pattern in (Integer, NonNegativeInteger):
        if not _is_integer(value):
            return (f"Expected Integer, got {json.dumps(value)}", "")
        if pattern is NonNegativeInteger and value < 0:
            return (f"Expected Integer >= 0, got {json.dumps(value)}", "")
        return None
    if isinstance(pattern, Limited):
        if not isinstance(value, str):
            return (f"Expected string, got {_js_typeof(value)}", "")
        if len(value) > pattern.max_length:
            return (f"Expected string of at most {pattern.max_length} characters", "")
        return None
    if isinstance(pattern, Where):
        return None if pattern.predicate(value) else ("Failed Match.Where validation", "")
    if pattern is AnyArray:
        return None if isinstance(value, list) else ("Expected Array", "")
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return (f"Expected array, got {json.dumps(value)}", "")
        for index, item in enumerate(value):
            failure = _match(item, pattern[0])
            if failure:
                return (failure[0], _prepend_path(index, failure[1]))
        return None
    # Object patterns
    if pattern is PlainObject:
        pattern = Including({})
    including = isinstance(pattern, Including)
    patterns: dict[str, Any] = pattern.patterns if including else pattern
    if value is None:
        return ("Expected object, got null", "")
    if isinstance(value, list):
        return ("Expected plain object", "")
    if not isinstance(value, dict):
        return (f"Expected object, got {_js_typeof(value)}", "")
    for key, item in value.items():
        if key in patterns:
            # Inside an object, Optional/Maybe only make the key optional: a present value must
            # match the inner pattern itself (so `null` fails, and the message names the type).
            sub = patterns[key]
            failure = _match(item, sub.pattern if isinstance(sub, Optional) else sub)
            if failure:
                return (failure[0], _prepend_path(key, failure[1]))
        elif not including:
            return ("Unknown key", key)
    for key, sub in patterns.items():
        if key not in value and not isinstance(sub, Optional):
            return (f"Missing key '{key}'", "")
    return None


def check(value: Any, pattern: Any) -> None:
    """Raise ValidationError with Meteor's exact `Match error: …` text when `value` fails."""
    failure = _match(value, pattern)
    if failure:
        message, path = failure
        raise ValidationError(f"Match error: {message}" + (f" in field {path}" if path else ""))



class MatchSchema(Schema):
    """A body checked with a Meteor pattern (no coercion), then loaded as is."""

    class Meta:
        unknown = INCLUDE

    PATTERN: Any = PlainObject

    @pre_load
    def _check(self, data: Any, **_kwargs: Any) -> Any:
        check(data, self.PATTERN)
        return data

    @post_load(pass_original=True)
    def _input_order(self, data: dict[str, Any], original: Any, **_kwargs: Any) -> dict[str, Any]:
        # marshmallow adds the keys it includes in set() order, which changes with each process's
        # hash seed: keep the client's order (custom fields come back in the order they were sent).
        if not isinstance(original, Mapping):
            return data
        ordered = {key: data[key] for key in original if key in data}
        ordered.update(data)
        return ordered

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(first_message(error.messages))


class PlainSchema(Schema):
    """A body whose failures are plain strings (the message is the whole `error`)."""

    class Meta:
        unknown = RAISE

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(first_message(error.messages))


_instances: dict[type[Schema], Schema] = {}


def _instance(schema_class: type[Schema]) -> Schema:
    # Building a Schema deep-copies its fields (measured: a third of a cached request), and
    # instances keep no per-call state, so each class is instantiated once per process.
    try:
        return _instances[schema_class]
    except KeyError:
        return _instances.setdefault(schema_class, schema_class())


def load(schema_class: type[Schema], data: Any) -> Any:
    """Validate `data`, turning failures into the schema's Rocket.Chat error."""
    schema = _instance(schema_class)
    try:
        return schema.load(data)
    except ValidationError as error:
        raise schema.api_error(error) from None  # type: ignore[attr-defined]


def dump(schema_class: type[Schema], obj: Any) -> Any:
    return _instance(schema_class).dump(obj)


def query_args(args: Any) -> dict[str, Any]:
    """A query string read the way Rocket.Chat's `qs` reads it (shared/spec §3.9).

    `a=1` is a string, `a=1&a=2`, `a[]=1` and `a[0]=1` are arrays; other `a[b]=c` forms
    become nested objects (which then fail as "not a string").
    """
    result: dict[str, Any] = {}
    for raw_key in args:
        values = args.getlist(raw_key)
        key, bracket, rest = raw_key.partition("[")
        if not bracket or not key:
            result[raw_key] = values[0] if len(values) == 1 else values
        elif rest == "]" or rest[:-1].isdigit():
            existing = result.get(key, [])
            result[key] = (existing if isinstance(existing, list) else [existing]) + values
        else:
            nested = result.get(key)
            if not isinstance(nested, dict):
                nested = result[key] = {}
            nested[rest.rstrip("]")] = values[0]
    return result


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


class UnauthorizedSchema(ErrorSchema):
    """A 401 (documentation only): the Restivus-era `status`/`message` keys too."""

    status = fields.Constant("error")
    message = fields.String()


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

    email = AjvString(required=True, validate=validate.Length(max=models.EMAIL_MAX, error="must NOT have more than {max} characters"))
    name = AjvString(required=True, validate=validate.Length(max=models.NAME_MAX, error="must NOT have more than {max} characters"))
    password = AjvString(required=True, validate=validate.Length(min=1, max=1024, error="must NOT have fewer than {min} characters"))
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
    updatedSince = fields.String()


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
# Departments (shared/spec §1–§2)
# ---------------------------------------------------------------------------


# Keys the server maintains: a client may send them back (e.g. a department it fetched),
# but they never overwrite the stored values (decisions.md).
SERVER_KEYS = frozenset({"_id", "_updatedAt", "numAgents", "archived", "type"})
MAX_EXTRA_KEYS = 50
EXTRA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

# Typed department keys (shared/spec §1.1) -> their Meteor pattern.
DEPARTMENT_FIELDS: dict[str, Any] = {
    "name": Limited(models.NAME_MAX),
    "email": Limited(models.EMAIL_MAX),
    "enabled": bool,
    "showOnRegistration": bool,
    "showOnOfflineForm": bool,
    "description": Limited(models.TEXT_MAX),
    "requestTagBeforeClosingChat": bool,
    "chatClosingTags": [Limited(models.NAME_MAX)],
    "fallbackForwardDepartment": Limited(models.ID_MAX),
    "departmentsAllowedToForward": [Limited(models.ID_MAX)],
    "allowReceiveForwardOffline": bool,
    "offlineMessageChannelName": Limited(models.TEXT_MAX),
    "abandonedRoomsCloseCustomMessage": Limited(models.TEXT_MAX),
    "waitingQueueMessage": Limited(models.TEXT_MAX),
}
# The user's document (decisions.md): these four are required on create; PUT merges.
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
    chatClosingTags = fields.List(fields.String(validate=validate.Length(max=models.NAME_MAX)))
    fallbackForwardDepartment = fields.String(validate=validate.Length(max=models.ID_MAX))
    departmentsAllowedToForward = fields.List(fields.String(validate=validate.Length(max=models.ID_MAX)))
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

    class Meta:
        unknown = INCLUDE

    agentId = fields.String(required=True, validate=validate.Length(max=models.ID_MAX))
    username = fields.String(allow_none=True, validate=validate.Length(max=models.USERNAME_MAX))
    count = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))
    order = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))


AGENT_ITEMS = fields.List(fields.Nested(AgentItemSchema))
MAX_AGENTS_PER_REQUEST = 1000


class AgentChangesSchema(MatchSchema):
    """`{upsert: [...], remove: [...]}` as Helper.updateDepartmentAgents checks it (shared/spec §2.11)."""

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


class DepartmentBodySchema(MatchSchema):
    """The envelope of a create or an update (`check(body, {department: Object, …})`)."""

    PATTERN = {
        "department": PlainObject,
        "agents": Maybe(AnyArray),
        "departmentUnit": Maybe({"_id": Optional(str)}),
    }

    class Meta:
        unknown = RAISE  # the pattern has already refused other keys

    department = Checked(fields.Nested(DepartmentUpdateSchema), required=True)
    agents = Checked(AGENT_ITEMS, allow_none=True)
    departmentUnit = Checked(fields.Dict(), allow_none=True)


class AjvDepartmentSchema(AjvSchema):
    """ajv's department schema of `POST livechat/department`: coerces, extra keys allowed."""

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
    agentId = AjvString(required=True)
    username = AjvString()  # accepted and ignored (the user's document sends it)
    count = AjvNumber(allow_none=True)
    order = AjvNumber(allow_none=True)


class AjvDepartmentUnitSchema(AjvSchema):
    _id = AjvString()


class DepartmentCreateSchema(AjvSchema):
    """`POST livechat/department` body, validated like Rocket.Chat's ajv schema."""

    department = AjvNested(AjvDepartmentSchema, required=True)
    agents = AjvList(AjvNested(AjvAgentItemSchema), allow_none=True)
    departmentUnit = AjvNested(AjvDepartmentUnitSchema, allow_none=True)


class DepartmentListQuerySchema(PaginationSchema):
    """Query of `GET livechat/department` and `livechat/departments/archived`."""

    text = AjvString(allow_none=True, validate=validate.Length(max=models.NAME_MAX, error="must NOT have more than {max} characters"))
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


class AutocompleteQuerySchema(Schema):
    """`selector` is a JSON object string: `{term?, exceptions?, conditions?}`."""

    class Meta:
        unknown = EXCLUDE

    selector = fields.Raw(required=True, metadata={**QUERY_STRING, "description": "JSON: {term?, exceptions?, conditions?}"})
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
        check_selector(selector)
        return {**data, "selector": selector}

    @staticmethod
    def api_error(error: ValidationError) -> ApiError:
        return ApiError.plain(first_message(error.messages))


# Fields `conditions` may test for equality, and their stored type.
AUTOCOMPLETE_CONDITION_FIELDS = {"_id": str, "name": str, "email": str, "enabled": bool, "archived": bool,
                                 "showOnRegistration": bool, "showOnOfflineForm": bool, "type": str, "numAgents": int}


def check_selector(selector: dict[str, Any]) -> None:
    """The safe subset of Rocket.Chat's raw Mongo `conditions` (decisions.md): equality on known
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


class ListByIdsQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ids = fields.Raw(required=True, metadata={"type": "array", "items": {"type": "string"}})
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


MAX_IDS = 500  # qs' arrayLimit: Rocket.Chat turns longer lists into objects


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
