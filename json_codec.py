"""JSON out to clients and in from the database's JSON columns, encoded and decoded by orjson.

Encoding a cold 50-department list with the standard library's `json` took 0.17 ms of its
~3 ms in-process, orjson 0.01 ms; short JSON columns decode faster alike (docs/performance.md,
"JSON by orjson"). orjson refuses to write lone surrogates and integers outside 64 bits, and
would read such an integer as a float: those go to `json`, so every value is answered exactly as
before. The JSON is the same; only non-ASCII text is sent as UTF-8 instead of `\\u` escapes, as
Rocket.Chat sends it.
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


# orjson reads an integer outside 64 bits as a float, where json keeps it exact; the shortest such
# number, -9223372036854775809, takes 20 characters. Longer texts go to json: looking for such a
# number first (a regular expression) cost more than json's whole decoding of a 600-character
# row image of the change log.
SHORT = 20


def loads(text: str | bytes) -> Any:
    """Decode what the JSON columns hold (SQLAlchemy's `json_deserializer`; psycopg hands bytes).
    Most are short (`{}`, a few tags, a setting's value): those orjson decodes several times faster."""
    if isinstance(text, (str, bytes)) and len(text) < SHORT:
        with contextlib.suppress(orjson.JSONDecodeError):  # what json reads and orjson does not (NaN)
            return orjson.loads(text)
    return json.loads(text)  # SQLite's dialect may also pass a number: json's TypeError, as before


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
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(data)  # indented, as Flask's debug mode shows it
        try:
            body = orjson.dumps(data, default=self.default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: a value it refuses and `json` takes
            return super().response(data)
        return self._app.response_class(body, mimetype=self.mimetype)
