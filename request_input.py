"""What a request sends: its JSON (or form) body and its query string, loaded and checked.

Every body and query string goes through here before a schema sees it: malformed JSON (bare
`NaN`/`Infinity` included), deep nesting, and characters no database column can hold (NUL, lone
UTF-16 surrogates, a query string that is not UTF-8) are refused with Rocket.Chat-style 400s.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, g, request

from errors import ApiError
from validation import NUL_ERROR, load, query_args, unstorable

log = logging.getLogger(__name__)



def request_query(schema_class: type) -> dict[str, Any]:
    """The query string loaded with `schema_class` (a dict of the caller's own)."""
    return dict(_loaded_query(schema_class, request.query_string))


@lru_cache(maxsize=512)
def _loaded_query(schema_class: type, _query_string: bytes) -> Mapping[str, Any]:
    # Keyed by the raw query string, which request.args is parsed from: loading depends on it
    # alone, and the same ones come back (a list read again after each write), so werkzeug's parse
    # and the schema's load are skipped, a tenth of a list page whose rows are kept
    # (docs/performance.md). Refused ones are not kept.
    return load(schema_class, query_args(request.args))


def init_app(app: Flask) -> None:
    """Before anything else of a request: read its whole body off the socket, then wait for the
    worker's turn (REQUESTS_PER_WORKER at once, default 1), which the request holds until it ends.

    gunicorn's gthread workers give each connection a thread, so a client that trickles its body
    holds one thread, never the worker; reading the body first means it never holds a database
    connection or SQLite's write lock either (a write's session opens with BEGIN IMMEDIATE). The
    turn keeps the work itself as a sync worker did: more requests of one process at once only
    contend for the GIL and SQLite's lock (whose busy handler sleeps up to 100 ms a try), which
    the bench measured as a p99 of ~900 ms in the mixed workload against ~40 ms (docs/performance.md, "Workers").
    """
    turns = threading.BoundedSemaphore(app.config["REQUESTS_PER_WORKER"])

    def read_body_and_take_turn() -> None:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            request.get_data(cache=True)  # b"" at once when there is none; a chunked body is read too
        turns.acquire()
        g.turn_taken = True

    def end_turn(_error: BaseException | None = None) -> None:
        if g.pop("turn_taken", False):
            turns.release()

    app.before_request(read_body_and_take_turn)
    app.teardown_request(end_turn)


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
        # JSON has no NaN or Infinity: Python's parser accepts them unless told not to.
        data = json.loads(request.get_data(cache=True), parse_constant=_refuse_constant)
    except RecursionError:  # the json parser recurses once per level: deep nesting is not a 500
        raise ApiError.plain(TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, an undecodable byte, NaN/Infinity
        raise ApiError.plain(MALFORMED) from None
    if data is None:  # `null`: malformed, as Express's strict JSON parser has it
        raise ApiError.plain(MALFORMED)
    if _deeper_than(data, MAX_JSON_DEPTH):  # before anything walks it recursively
        raise ApiError.plain(TOO_DEEP)
    problem = unstorable(data)
    if problem:
        raise InvalidCharacters(problem)
    return data


MALFORMED = "Malformed JSON body"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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


NOT_UTF8_ERROR = "Invalid input: the query string is not valid UTF-8"


class InvalidCharacters(ApiError):
    """A 400 for characters the databases cannot store (NUL, lone surrogates, bytes that are not
    UTF-8): the request is at fault, so it is logged once at INFO, never as a server error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)
        log.info("request refused: %s (%s %s)", message, request.method, request.path)


def holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


# A percent-escape of a byte >= 0x80, or such a byte sent raw: only then can a query string fail
# to decode as UTF-8 (werkzeug would silently turn it into U+FFFD).
_HIGH_BYTE = re.compile(rb"%[89a-fA-F][0-9a-fA-F]|[\x80-\xff]")


def reject_nul_characters() -> None:
    """before_request: no path, query or auth header may carry NUL (PostgreSQL cannot store it),
    and a query string must be UTF-8 once percent-decoded."""
    if holds_nul(request.path):
        raise InvalidCharacters(NUL_ERROR)
    query = request.query_string
    if _HIGH_BYTE.search(query):
        try:
            unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCharacters(NOT_UTF8_ERROR) from None
    if b"%00" not in query and b"\x00" not in query:
        return  # nothing in it can decode to NUL: no need to parse it here
    if any(holds_nul(k) or holds_nul(v) for k, v in request.args.items(multi=True)):
        raise InvalidCharacters(NUL_ERROR)
