"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) on the POSTs that create things.

A request carrying the header runs once per caller and key: its answer is stored in the same
transaction as its writes (db.commit_held), so either both are committed or neither, and a
repeat with the same method, path and body gets the stored answer again, from any worker, after
a restart, for IDEMPOTENCY_KEY_TTL_SECONDS. The same key with another request answers 422; a
repeat while the first still runs answers 409 (PostgreSQL; on SQLite the repeat waits for the
write lock the first holds, then gets the replay). Only answers that committed are stored: a
refused request wrote nothing, so its repeat simply runs again. The design and its figures:
docs/etags-and-idempotency.md. Without the header nothing here runs.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import (
    BigInteger,
    Connection,
    Executable,
    String,
    bindparam,
    cast,
    delete,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

import db
from access import current_user
from errors import ApiError
from models import IDEMPOTENCY_KEY_MAX, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII: the draft's key is a Structured Field string, which allows nothing else.
VALID_KEY = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")
PRUNE_EVERY_SECONDS = 300  # per process; expired rows are also reused in place by a new claim

KEYS = IdempotencyKey.__table__
CLAIMED = {"fingerprint", "status", "body", "expires_at"}


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Make a POST view honour Idempotency-Key (documented by openapi.py)."""

    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        key = request_key()
        if key is None:
            return view(*args, **kwargs)
        return _once(key, lambda: current_app.make_response(view(*args, **kwargs)))

    run.idempotent = True  # type: ignore[attr-defined]
    run.records_actor = _claim_records_actor  # type: ignore[attr-defined]
    return run


def _claim_records_actor() -> bool:
    """access.authenticate asks: on PostgreSQL the claim statement also sets the change log's actor
    (db.record_actor's setting), saving that statement's round trip; SQLite's is in-process."""
    return request.headers.get(HEADER) is not None and not db.is_sqlite(db.engine())


def request_key() -> str | None:
    """The request's key, None without the header; 400 for an empty, too long or non-ASCII one.
    The draft's quoted form (`"abc"`) and a bare token name the same key (`""` is a key of two quotes)."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if len(value) > 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not VALID_KEY.fullmatch(value):
        raise ApiError.invalid_idempotency_key()
    return value


def _fingerprint() -> str:
    """What "the same request" means: the method, the path and the body's bytes."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _advisory_lock_id(caller: str, key: str) -> int:
    digest = hashlib.sha256(f"{caller}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _once(key: str, answer: Callable[[], Response]) -> Response:
    caller = current_user().id
    fingerprint = _fingerprint()
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=current_app.config["IDEMPOTENCY_KEY_TTL_SECONDS"])
    with db.commit_held() as connection:
        _prune_now_and_then(connection, now)
        params = claim_parameters(caller, key, fingerprint, now, expires_at, g.actor)
        if not _claim_statement(connection).execute(connection, params):
            return _repeat(connection, caller, key, fingerprint, now)
        response = answer()
        stored = {
            "the_caller": caller,
            "the_key": key,
            "the_status": response.status_code,
            "the_body": response.get_data(as_text=True),
        }
        STORE.execute(connection, stored)
        return response


def claim_parameters(
    caller: str, key: str, fingerprint: str, now: datetime, expires_at: datetime, actor: dict[str, Any]
) -> dict[str, Any]:
    return {
        "the_caller": caller, "the_key": key, "the_fingerprint": fingerprint, "now": now, "the_expires_at": expires_at,
        "lock": _advisory_lock_id(caller, key), "actor": db.encoded_actor(actor),
    }


def _repeat(connection: Connection, caller: str, key: str, fingerprint: str, now: datetime) -> Response:
    """The key is taken: replay its answer, or say why not."""
    stored = connection.execute(STORED, {"the_caller": caller, "the_key": key}).first()
    if stored is None or stored.status is None or stored.expires_at <= now:
        # Not committed yet (PostgreSQL: another transaction holds the key's advisory lock).
        raise ApiError.idempotency_key_in_use()
    if stored.fingerprint != fingerprint:
        raise ApiError.idempotency_key_reused()
    return current_app.response_class(
        stored.body, status=stored.status, mimetype="application/json", headers={REPLAYED_HEADER: "true"}
    )


# --- the statements, built once ---

_TIMESTAMP = KEYS.c.expires_at.type


def _claim(insert: Any, rows: Any) -> Executable:
    """Take the key, in the request's transaction and one round trip: insert it, or take over an
    expired row of it; RETURNING tells whether it was taken (no row: already in use)."""
    statement = rows(insert(KEYS))
    return statement.on_conflict_do_update(
        index_elements=[KEYS.c.caller, KEYS.c.key],
        set_={name: (None if name in ("status", "body") else statement.excluded[name]) for name in CLAIMED},
        where=KEYS.c.expires_at <= bindparam("now", type_=_TIMESTAMP),
    ).returning(literal(1))


_VALUES = {
    "caller": bindparam("the_caller", type_=String),
    "key": bindparam("the_key", type_=String),
    "fingerprint": bindparam("the_fingerprint", type_=String),
    "expires_at": bindparam("the_expires_at", type_=_TIMESTAMP),
}
CLAIM_SQLITE = db.DriverStatement(_claim(sqlite.insert, lambda statement: statement.values(**_VALUES)))
# PostgreSQL: the row is inserted only if the key's advisory lock is free (never waited for),
# so a repeat arriving while the first request runs finds no row and answers 409, where a plain
# INSERT would wait on the first one's uncommitted row. The same statement sets the change log's
# actor (what db.record_actor does otherwise, _claim_records_actor): one round trip for both.
_ACTOR = select(
    func.set_config(db.WRITE_CONTEXT_SETTING, bindparam("actor", type_=String), true()).label("actor")
).cte("actor")
CLAIM_POSTGRESQL = db.DriverStatement(_claim(
    postgresql.insert,
    lambda statement: statement.from_select(
        list(_VALUES),
        select(*(cast(value, value.type) for value in _VALUES.values())).select_from(_ACTOR).where(
            func.pg_try_advisory_xact_lock(cast(bindparam("lock"), BigInteger))
        ),
    ),
))
_THIS_KEY = (KEYS.c.caller == bindparam("the_caller"), KEYS.c.key == bindparam("the_key"))
STORE = db.DriverStatement(
    update(KEYS).where(*_THIS_KEY).values(status=bindparam("the_status"), body=bindparam("the_body"))
)
STORED = select(KEYS).where(*_THIS_KEY)
EXPIRED = delete(KEYS).where(KEYS.c.expires_at <= bindparam("now", type_=_TIMESTAMP))


def _claim_statement(connection: Connection) -> db.DriverStatement:
    return CLAIM_SQLITE if db.is_sqlite(connection.engine) else CLAIM_POSTGRESQL


def _prune_now_and_then(connection: Connection, now: datetime) -> None:
    """Delete expired keys, at most every PRUNE_EVERY_SECONDS per process."""
    extensions = current_app.extensions
    if time.monotonic() - extensions.get("idempotency.pruned_at", float("-inf")) >= PRUNE_EVERY_SECONDS:
        extensions["idempotency.pruned_at"] = time.monotonic()
        prune(connection, now)


def prune(connection: Connection, now: datetime) -> int:
    """Delete the keys expired at `now`; how many went."""
    return connection.execute(EXPIRED, {"now": now}).rowcount
