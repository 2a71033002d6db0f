"""How Rocket.Chat validates, reproduced: the building blocks of every schema in schemas.py.

Rocket.Chat validates in two styles and clients see both (docs/compatibility.md §3.5–§3.7):
- ajv (`validateParams` on some routes): coerces types, stops at the first error, and answers
  `"<message> [invalid-params]"`. `AjvSchema` reproduces that.
- Meteor `check()`: no coercion, `"Match error: …"` messages with a field path. `check()` and
  the pattern helpers below reproduce that, and `MatchSchema` runs them before loading.
Also here: the date format, the compiled dump of flat response schemas, and `load`/`dump`/
`query_args`, which every view uses. Nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, post_dump, post_load, pre_load
from sqlalchemy import Row

from errors import ApiError, first_message

# ---------------------------------------------------------------------------
# Shared fields
# ---------------------------------------------------------------------------


def format_date(value: datetime) -> str:
    """`2016-12-13T17:22:19.109Z`, JavaScript's toISOString() of a UTC value."""
    return value.isoformat(timespec="milliseconds")[:23] + "Z"  # cut the "+00:00" of aware values


class RCDateTime(fields.Field[datetime]):
    """A date as Rocket.Chat sends it (a read may have formatted it already: department_service.DumpedDate)."""

    def _serialize(self, value: datetime | str | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return value if value is None or type(value) is str else format_date(value)


class Checked(fields.Raw):
    """A value a Meteor pattern has already checked, loaded as is: a second validation would change
    Rocket.Chat's messages and check order. `documented_as` describes it in the OpenAPI document
    (openapi.py) and takes no part in validation."""

    def __init__(self, documented_as: fields.Field, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.documented_as = documented_as


class OmitNoneSchema(Schema):
    """Rocket.Chat drops `undefined` keys instead of sending null (docs/compatibility.md §3.1)."""

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
        if not (many if many is not None else self.many):
            return self._dump_one(plan, obj)
        if obj and isinstance(obj[0], Row):  # rows of one result share their columns: index them once
            indexed = self._indexed(plan, obj[0]._fields)
            return [self._dump_row(plan, indexed, row) for row in obj]
        return [self._dump_one(plan, item) for item in obj]

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
        if isinstance(obj, Row):
            return self._dump_row(plan, self._indexed(plan, obj._fields), obj)
        data = {key: value for key, attribute in plan[0] if (value := getattr(obj, attribute, None)) is not None}
        return self._serialize_in_place(plan, data, obj)

    @staticmethod
    def _indexed(plan: DumpPlan, columns: Sequence[str]) -> list[tuple[str, int]]:
        """(wire key, column position) of the plan's attributes that the row has."""
        position = {column: index for index, column in enumerate(columns)}
        return [(key, position[attribute]) for key, attribute in plan[0] if attribute in position]

    def _dump_row(self, plan: DumpPlan, indexed: list[tuple[str, int]], row: Row[Any]) -> dict[str, Any]:
        # A Core row read by position: far cheaper than getattr or its _mapping.
        data = {key: value for key, index in indexed if (value := row[index]) is not None}
        return self._serialize_in_place(plan, data, row)

    def _serialize_in_place(self, plan: DumpPlan, data: dict[str, Any], obj: Any) -> dict[str, Any]:
        for key, attribute, field in plan[1]:  # in place: the key keeps its position
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
# Characters no column can hold
# ---------------------------------------------------------------------------

NUL_ERROR = "Invalid input: the NUL character (\\u0000) is not allowed"
SURROGATE_ERROR = "Invalid input: unpaired UTF-16 surrogates (\\ud800-\\udfff) are not allowed"
# JSON's `\ud800` escapes decode to lone surrogates, which no UTF-8 column (nor psycopg) accepts.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(value: Any) -> str | None:
    """Why `value` (a loaded JSON value, keys included) cannot be stored, or None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_ERROR
        return SURROGATE_ERROR if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        return next((problem for k, v in value.items() if (problem := unstorable(k) or unstorable(v))), None)
    if isinstance(value, list):
        return next((problem for item in value if (problem := unstorable(item))), None)
    return None



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


class LimitedList:
    """An array of at most `max_items` items, each matching `pattern` (our bound; Rocket.Chat has none)."""

    def __init__(self, pattern: Any, max_items: int) -> None:
        self.pattern = pattern
        self.max_items = max_items


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
    if isinstance(pattern, LimitedList):
        if isinstance(value, list) and len(value) > pattern.max_items:
            return (f"Expected at most {pattern.max_items} items", "")
        return _match(value, [pattern.pattern])
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
    """A query string read the way Rocket.Chat's `qs` reads it (docs/compatibility.md §3.9).

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
