"""What a request sends: its JSON (or form) body and its query string, loaded and checked.

Every body and query string goes through here before a schema sees it: malformed JSON, deep
nesting and NUL characters are refused with Rocket.Chat-style 400s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from errors import ApiError
from validation import load, query_args


def request_query(schema_class: type) -> Mapping[str, Any]:
    """The query string loaded with `schema_class`."""
    return load(schema_class, query_args(request.args))


def request_body() -> Any:
    """The JSON body (or a form body, as Rocket.Chat's login accepts); `{}` when empty."""
    if request.content_length == 0 or not request.get_data(cache=True):
        return {}
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    if not request.is_json:
        raise ApiError.plain(
            "Unsupported Media Type: the body must be JSON (Content-Type: application/json)", 415
        )
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the json parser recurses once per level: deep nesting is not a 500
        raise ApiError.plain(TOO_DEEP) from None
    if data is None:
        raise ApiError.plain("Malformed JSON body", 400)
    if _deeper_than(data, MAX_JSON_DEPTH):  # before anything walks it recursively
        raise ApiError.plain(TOO_DEEP)
    if holds_nul(data):
        raise ApiError.plain(NUL_ERROR)
    return data


# No body of this API nests deeper than 4 levels; 32 leaves room and keeps recursion far away.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"Invalid input: JSON nested deeper than {MAX_JSON_DEPTH} levels"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep (iterative: any depth)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


NUL_ERROR = "Invalid input: the NUL character (\\u0000) is not allowed"


def holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def reject_nul_characters() -> None:
    """before_request: no path, query or auth header may carry NUL (PostgreSQL cannot store it)."""
    if holds_nul(request.path):
        raise ApiError.plain(NUL_ERROR)
    query = request.query_string
    if b"%00" not in query and b"\x00" not in query:
        return  # nothing in it can decode to NUL: no need to parse it here
    if any(holds_nul(k) or holds_nul(v) for k, v in request.args.items(multi=True)):
        raise ApiError.plain(NUL_ERROR)
