"""Conditional requests (RFC 9110 §8.8.3, §13): ETags on reads, If-None-Match and If-Match.

An ETag is a hash of the exact bytes of the representation it tags, so it changes exactly when
the body would, whoever changed the data (the service, the CLI, a hand edit with sqlite3/psql:
the body is rebuilt from the database whenever the version counters move). A list's ETag covers
its whole page, `total` included. These headers are extensions: a client that sends none of them
sees Rocket.Chat's behaviour (docs/etags-and-idempotency.md).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable

from flask import current_app, request

from errors import ApiError


class Representation(bytes):
    """A response body with its strong ETag, computed once and kept with the body in the
    response cache (cache.py), so a cached read does not hash again."""

    etag: str

    def __new__(cls, body: bytes) -> Representation:
        representation = super().__new__(cls, body)
        digest = hashlib.sha256(body).digest()[:18]  # 144 bits: no collision in practice
        representation.etag = '"' + base64.urlsafe_b64encode(digest).decode() + '"'
        return representation


def _listed_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def not_modified(etag: str) -> bool:
    """Whether the request's If-None-Match lists `etag` (weak comparison: a `W/` prefix counts)."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    tags = _listed_tags(header)
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


Precondition = Callable[[Iterable[str], str], None]


def if_match_precondition() -> Precondition | None:
    """The request's If-Match as a check for a write to run once it holds the row it changes
    (department_service._locked): `check(current_etags, etag_to_send)` raises 412 unless one of
    `current_etags` is listed (strong comparison: a weak tag never matches) or the header is `*`.

    None without If-Match, unless the REQUIRE_IF_MATCH setting asks for one: then 428."""
    header = request.headers.get("If-Match")
    if header is None:
        if current_app.config["REQUIRE_IF_MATCH"]:
            raise ApiError.precondition_required()
        return None
    tags = _listed_tags(header)

    def check(current_etags: Iterable[str], etag_to_send: str) -> None:
        if "*" not in tags and not set(tags).intersection(current_etags):
            raise ApiError.precondition_failed(etag_to_send)

    return check
