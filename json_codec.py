"""JSON out to clients and in from the database's JSON columns, encoded and decoded by orjson.

Encoding a cold 50-department list with the standard library's `json` took 0.17 ms of its
~3 ms in-process, orjson 0.01 ms; JSON columns and the change log's row images decode faster
alike (docs/performance.md, "JSON by orjson"). orjson refuses to write lone surrogates and
integers outside 64 bits, and would read such an integer as a float: those go to `json`, so
every value is answered exactly as before. The JSON is the same; only non-ASCII text is sent
as UTF-8 instead of `\\u` escapes, as Rocket.Chat sends it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates and dataclasses go to Flask's `default`, as with `json`, and the body ends with a newline,
# as Flask's own: the same text as before.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_APPEND_NEWLINE
_flask_default = DefaultJSONProvider.default


def loads(text: str | bytes) -> Any:
    """Decode what the JSON columns hold (SQLAlchemy's `json_deserializer`; psycopg hands bytes)
    and the change log's row images, exactly as `json` would, mostly at orjson's speed."""
    if isinstance(text, (str, bytes)):
        with contextlib.suppress(orjson.JSONDecodeError):  # what json reads and orjson does not (NaN)
            value = orjson.loads(text)
            if not _holds_float(value):
                return value
    return json.loads(text)  # SQLite's dialect may also pass a number: json's TypeError, as before


def _holds_float(value: Any) -> bool:
    """Whether a float is anywhere in `value`. orjson reads an integer outside 64 bits as a float
    where `json` keeps it exact; rather than look for such numbers in the text (a regular
    expression cost more than json's decoding), any float sends the text to `json`. Department
    data rarely holds one."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


def encoded(value: Any) -> bytes | None:
    """`value` as the JSON the responses hold it in (a part of one: no newline), or None where
    orjson refuses it (department_routes keeps such a row out of the row cache)."""
    try:
        return orjson.dumps(value, default=_flask_default, option=_OPTIONS & ~orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return None


def dumps(value: Any) -> str:
    """Compact JSON text (a webhook's body)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON responses (`jsonify`, `app.json.response`) in Rocket.Chat's key order."""

    sort_keys = False

    @property
    def embeds_json(self) -> bool:
        """Whether a response may hold parts already encoded (orjson.Fragment): not when it is
        indented (debug), as `json` writes those."""
        return not (self.compact is False or (self.compact is None and self._app.debug))

    def response(self, *args: Any, **kwargs: Any) -> Response:
        data = self._prepare_response_obj(args, kwargs)
        if not self.embeds_json:
            return super().response(data)  # indented, as Flask's debug mode shows it
        try:
            body = orjson.dumps(data, default=self.default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: a value it refuses and `json` takes
            return super().response(data)
        return self._app.response_class(body, mimetype=self.mimetype)
