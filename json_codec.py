"""JSON out to clients and in from the database's JSON columns, encoded and decoded by orjson.

The standard library's `json` cost a tenth of a cold 50-department list (docs/performance.md,
"JSON"); orjson does the same work several times faster. It refuses a few values `json`
accepts (strings holding lone surrogates, integers past 64 bits, NaN): those go to `json`,
so nothing that was answered before fails now. The JSON is the same; only non-ASCII text
is sent as UTF-8 instead of `\\u` escapes, as Rocket.Chat sends it.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates and dataclasses go to Flask's `default`, as with `json`: the same text as before.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


# From 19 digits on an integer may not fit 64 bits, and orjson would read it as a float.
_LONG_DIGITS = {str: re.compile(r"\d{19}"), bytes: re.compile(rb"\d{19}")}


def loads(text: str | bytes) -> Any:
    """Decode what the JSON columns hold (SQLAlchemy's `json_deserializer`; psycopg hands bytes)."""
    long_digits = _LONG_DIGITS.get(type(text))  # SQLite's dialect may also pass a number: json's TypeError
    if long_digits is not None and long_digits.search(text) is None:
        with contextlib.suppress(orjson.JSONDecodeError):  # NaN, as json.dumps writes it
            return orjson.loads(text)
    return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text (a webhook's body)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON responses (`jsonify`, `app.json.response`) in Rocket.Chat's key order."""

    sort_keys = False

    def response(self, *args: Any, **kwargs: Any) -> Response:
        data = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(data, default=self.default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: a value it refuses and `json` takes
            return super().response(data)
        return self._app.response_class(body, mimetype=self.mimetype)
