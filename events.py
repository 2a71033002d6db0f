"""Department events, derived from the change log the database keeps (migration 0009).

There is one log: `department_changes`, written by triggers in the writing transaction, whoever
writes. An event is what one committed transaction did to one department: its rows of the log
grouped by transaction, then by department (docs/history-and-webhooks.md). Nothing here writes
an event; prune() only forgets old log rows.

A transaction's rows are contiguous in version order on both databases (PostgreSQL gives a
transaction one version; SQLite writes one transaction at a time), and versions follow commit
order. So an event's cursor is "<key>.<index>": `key` the first version of its transaction,
`index` its place among that transaction's events. Cursors compare as (key, index) pairs, and a
reader that has seen a version has seen every transaction before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from marshmallow import fields
from sqlalchemy import Connection, Select, String, Text, cast, delete, func, select, update

import json_codec
from errors import ApiError
from models import EVENT_KINDS, DataVersion, DepartmentChange, EventState
from schemas import DepartmentSchema

KINDS = EVENT_KINDS
DATA = 1  # db.DATA: the counter the change log's triggers move
LOG = DepartmentChange.__table__
BOOKKEEPING = {"id", "name_folded", "updated_at", "extra"}  # not fields of the diff (extra is spread)


def _wire_fields() -> tuple[dict[str, str], frozenset[str]]:
    """Column -> wire key, and the boolean columns (stored 0/1 on SQLite), from the schema that
    answers departments: an event names fields as GET livechat/department/:id does."""
    keys, booleans = {}, set()
    for name, field in DepartmentSchema._declared_fields.items():
        column = field.attribute or name
        if column in BOOKKEEPING:
            continue
        keys[column] = name
        if isinstance(field, fields.Boolean):
            booleans.add(column)
    return keys, frozenset(booleans)


WIRE_KEYS, BOOLEAN_COLUMNS = _wire_fields()


@dataclass(frozen=True)
class Cursor:
    """A position in the feed: after transaction `key`'s event `index` (index None: after all of it)."""

    key: int
    index: int | None = None

    @classmethod
    def parse(cls, raw: str) -> Cursor:
        key, dot, index = raw.partition(".")
        if not key.isdigit() or len(key) > 18 or (dot and (not index.isdigit() or len(index) > 9)):
            raise ApiError.plain("error-invalid-cursor")
        return cls(int(key), int(index) if dot else None)

    def __str__(self) -> str:
        return str(self.key) if self.index is None else f"{self.key}.{self.index}"


# --- from log rows to events --------------------------------------------------------------------


def _department_image(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    image = {}
    for column, key in WIRE_KEYS.items():
        value = row.get(column)
        if value is None:
            continue
        image[key] = bool(value) if column in BOOLEAN_COLUMNS else value
    for key, value in (row.get("extra") or {}).items():
        image.setdefault(key, value)  # custom fields, spread as the API spreads them
    return image


def _image(raw: str | None) -> dict[str, Any] | None:
    """A row image of the log (see COLUMNS), decoded."""
    return None if raw is None else json_codec.loads(raw)


def _agent_image(row: dict[str, Any]) -> dict[str, Any]:
    return {"agentId": row["agent_id"], "username": row["username"], "count": row["count"], "order": row["order"]}


def _actor(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {"type": "database"}  # no writer said who it was: a hand edit
    actor = json_codec.loads(raw)
    return actor if isinstance(actor, dict) else {"type": "database"}


def _time(milliseconds: int) -> str:
    """`2016-12-13T17:22:19.109Z`; the events of a transaction, and often of a page, share the second."""
    seconds, millis = divmod(milliseconds, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()[:19]


def _department_event(department_id: str, rows: list[Any]) -> dict[str, Any] | None:
    """The net change of one department in one transaction, or None when nothing is left of it."""
    seen, first_old, last_new = False, None, None
    links: dict[str, list[dict[str, Any] | None]] = {}
    for row in rows:
        if row.subject == "department":
            if not seen:
                seen, first_old = True, row.old_row
            last_new = row.new_row
        elif row.subject == "agent":
            # A link moved to another department left this one: each side keeps its own half.
            old, new = _image(row.old_row), _image(row.new_row)
            old = old if old and old["department_id"] == department_id else None
            new = new if new and new["department_id"] == department_id else None
            agent_id = (old or new or {}).get("agent_id")
            if agent_id is None:
                continue
            links.setdefault(agent_id, [old, None])[1] = new
    added, removed, changed = [], [], []
    for old, new in links.values():
        if old is None and new is not None:
            added.append(_agent_image(new))
        elif new is None and old is not None:
            removed.append(_agent_image(old))
        elif old is not None and new is not None and (old["count"], old["order"]) != (new["count"], new["order"]):
            before, after = _agent_image(old), _agent_image(new)
            changed.append({
                "agentId": after["agentId"], "username": after["username"],
                "before": {"count": before["count"], "order": before["order"]},
                "after": {"count": after["count"], "order": after["order"]},
            })
    before, after = (_department_image(_image(first_old)), _department_image(_image(last_new))) if seen else ({}, {})
    if before is None and after is None:
        return None  # created and deleted by the same transaction
    if before is None:
        kind, before, after = "created", {}, after
    elif after is None:
        kind, before, after = "deleted", before, {}
    else:
        keys = [key for key in {**before, **after} if before.get(key) != after.get(key)]
        before = {key: before.get(key) for key in keys}
        after = {key: after.get(key) for key in keys}
        if "archived" in keys:
            kind = "archived" if after["archived"] else "unarchived"
        elif set(keys) - {"numAgents"}:
            kind = "updated"
        elif added or removed or changed or keys:
            kind = "agents-changed"
        else:
            return None  # only bookkeeping columns moved
    event: dict[str, Any] = {
        "cursor": "",
        "time": _time(max(row.changed_at for row in rows)),
        "departmentId": department_id,
        "kind": kind,
        "before": before,
        "after": after,
        "agents": {"added": added, "removed": removed, "changed": changed},
        "actor": _actor(rows[0].actor),
    }
    return event


def _transaction_events(key: int, rows: list[Any]) -> list[dict[str, Any]]:
    """The events of one transaction's rows, departments in the order they were first changed."""
    by_department: dict[str, list[Any]] = {}
    for row in rows:
        if row.operation == "T":
            continue  # a PostgreSQL TRUNCATE: no rows to diff (docs: clients re-list)
        by_department.setdefault(row.department_id, []).append(row)
    built = (
        _department_event(department_id, department_rows)
        for department_id, department_rows in by_department.items()
    )
    events = [event for event in built if event is not None]
    for index, event in enumerate(events):
        event["cursor"] = f"{key}.{index}"
    return events


def _transactions(rows: Sequence[Any]) -> Iterator[tuple[int, list[Any]]]:
    """(key, rows) per transaction of rows in (version, seq) order. Hand edits on SQLite carry no
    transaction id: each of their rows stands alone."""
    group: list[Any] = []
    for row in rows:
        if group and not (row.tx is not None and row.tx == group[0].tx) and row.version != group[0].version:
            yield group[0].version, group
            group = []
        group.append(row)
    if group:
        yield group[0].version, group


# The row images are read as their JSON text and decoded only for the events made (_image): a page
# of the feed reads more rows than it uses, and decoding them all took a third of its time.
COLUMNS = (LOG.c.version, LOG.c.seq, LOG.c.department_id, LOG.c.subject, LOG.c.operation,
           cast(LOG.c.old_row, Text).label("old_row"), cast(LOG.c.new_row, Text).label("new_row"),
           LOG.c.actor, LOG.c.tx, LOG.c.changed_at)


# --- the feed ------------------------------------------------------------------------------------


def head(connection: Connection) -> Cursor:
    """The cursor after every committed event."""
    return Cursor(connection.scalar(select(DataVersion.version).where(DataVersion.id == DATA)) or 0)


def pruned_through(connection: Connection) -> int:
    return connection.scalar(select(EventState.pruned_through).where(EventState.id == 1)) or 0


def check_not_pruned(connection: Connection, after: Cursor) -> None:
    """A cursor from before the retention window would skip events silently: refuse it."""
    through = pruned_through(connection)
    if after.key < through or (after.key == through and after.index is not None):
        raise ApiError(
            "The cursor is older than the events kept (retention): list the departments again, then "
            "follow the feed from the `cursor` given here [error-cursor-expired]",
            410,
            error_type="error-cursor-expired",
            extra={"cursor": str(head(connection))},
        )


def log_rows_after(version: int, inclusive: bool, limit: int) -> Select[Any]:
    """The log's rows from `version` on (or after it), in the feed's order: read in the order of
    the (version, seq) index, a page stops after `limit` rows (migration 0013)."""
    condition = LOG.c.version >= version if inclusive else LOG.c.version > version
    return select(*COLUMNS).where(condition).order_by(LOG.c.version, LOG.c.seq).limit(limit)


def feed(connection: Connection, after: Cursor, limit: int) -> tuple[list[dict[str, Any]], Cursor]:
    """Up to `limit` events after `after`, oldest first, and the cursor to continue from."""
    events: list[dict[str, Any]] = []
    # Rows a read: an event is often one row; when events are larger (agent links), the reads grow.
    start, batch = after.key, limit + 64
    inclusive = after.index is not None  # the transaction `key` itself still has events to give
    position = after
    while len(events) < limit:
        rows = connection.execute(log_rows_after(start, inclusive, batch)).all()
        groups = list(_transactions(rows))
        if len(rows) == batch:  # the last transaction may go on past the batch
            if len(groups) == 1:
                batch *= 2
                continue
            groups.pop()
        for key, group in groups:
            skip = after.index + 1 if key == after.key and after.index is not None else 0
            for event in _transaction_events(key, group)[skip:]:
                if len(events) == limit:
                    return events, position
                events.append(event)
                position = Cursor.parse(event["cursor"])
            position = Cursor(group[-1].version)  # past every event of the transaction
        if len(rows) < batch:
            break
        start, inclusive, batch = groups[-1][1][-1].version, False, batch * 2
    return events, position


# --- one department's history --------------------------------------------------------------------


# A transaction: its id, or a lone hand-written row on SQLite (PostgreSQL always has the id).
TRANSACTION = func.coalesce(LOG.c.tx, cast(LOG.c.version, String))


def history(
    connection: Connection,
    department_id: str,
    offset: int,
    limit: int | None,
) -> tuple[list[dict[str, Any]], int]:
    """The events of one department, newest first, and how many transactions changed it."""
    mine = LOG.c.department_id == department_id
    group = TRANSACTION.label("grp")
    groups = (
        select(group, func.max(LOG.c.tx).label("tx"), func.max(LOG.c.version).label("last"))
        .where(mine).group_by(group).order_by(func.max(LOG.c.version).desc()).offset(offset)
    )
    if limit is not None:
        groups = groups.limit(limit)
    total = connection.scalar(select(func.count(func.distinct(TRANSACTION))).where(mine)) or 0
    events = []
    for _group, tx, last in connection.execute(groups).all():
        rows = _transaction_rows(connection, tx, last)
        events += [
            event for event in _transaction_events(rows[0].version, rows) if event["departmentId"] == department_id
        ]
    return events, total


def _transaction_rows(connection: Connection, tx: str | None, last: int) -> list[Any]:
    """Every row of one transaction (its events' cursors count the other departments too): by
    its id (index ix_department_changes_tx), or the lone hand-written row it is."""
    same = LOG.c.tx == tx if tx is not None else (LOG.c.version == last) & LOG.c.tx.is_(None)
    return list(connection.execute(select(*COLUMNS).where(same).order_by(LOG.c.version, LOG.c.seq)).all())


# --- retention ------------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def prune(connection: Connection, older_than_ms: int) -> int:
    """Forget the log rows written before `older_than_ms` (epoch ms); the feed then refuses
    cursors from before them. Returns how many rows went."""
    last = connection.scalar(select(func.max(LOG.c.version)).where(LOG.c.changed_at < older_than_ms))
    if last is None:
        return 0
    # By version: PostgreSQL's transactions go whole; a SQLite transaction spans versions and
    # may lose its first rows, as the feed's cursors from before `last` are refused anyway.
    removed = connection.execute(delete(LOG).where(LOG.c.version <= last)).rowcount
    if last > pruned_through(connection):
        connection.execute(update(EventState).where(EventState.id == 1).values(pruned_through=last))
    return removed


def matches(event: dict[str, Any], kinds: Iterable[str], departments: Iterable[str] | None) -> bool:
    """Whether an endpoint that asked for `kinds` (and `departments`, None: all) wants `event`."""
    return event["kind"] in kinds and (departments is None or event["departmentId"] in departments)
