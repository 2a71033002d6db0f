"""Per-process read caches: every cache of the service lives here.

Contract:
- What is cached: the callers behind (X-User-Id, X-Auth-Token) pairs with their roles and
  permissions (`callers`), the settings (`settings`), and the bodies of the department API's
  reads (`responses`).
- Keyed by: each entry by what its value depends on besides the data: a caller by the pair, a
  body by the request's path and query string and what the caller may see (department_routes).
- Invalidated by: the version counters (models.DataVersion) it follows. The database's triggers
  move a counter in every transaction that writes its tables, whoever writes (migration 0009);
  each request reads the counters first (db.data_version), and a cache seeing a new value drops
  all its entries. So no entry outlives the data it was computed from, and there is nothing to
  invalidate by hand.
- One exception, for what shows one department only (GET one, its agents, a list's row as JSON):
  when only the data version moved, `responses` asks the change log which departments changed and
  keeps the entries of the others (`DepartmentResponses`). Every other body goes at every write.
- Bounded in entries (and bytes for bodies), the oldest going first.
- `READ_CACHE=off` turns them all off: every lookup builds.

Not here, as nothing they hold depends on the data: memos of pure functions, kept beside them
(compiled statements in department_service.py, loaded query strings in request_input.py).

Each mechanism here was kept because the bench showed it paying (docs/performance.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import orjson
from flask import current_app
from sqlalchemy import bindparam, select

import db
import workspace_service
from models import DepartmentChange

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """Entries of one combination of version counters; a newer one empties the cache.

    Bounded by a number of entries and, for caches of bytes, by their total size: the oldest
    entries go first.
    """

    def __init__(
        self, counters: tuple[int, ...], max_entries: int, max_bytes: int | None = None, *, enabled: bool = True
    ) -> None:
        self.enabled = enabled  # off: every lookup builds (READ_CACHE=off)
        self.counters = counters  # which version counters (db.DATA, db.AUTH, db.SETTINGS) the entries follow
        self.max_entries = max_entries
        self.max_bytes = max_bytes  # only for values that have a len() in bytes
        self.version: tuple[int, ...] | None = None
        self.read_order = 0  # db.versions_read_order() of the request that moved the cache to `version`
        self.entries: dict[Hashable, T] = {}
        self.size = 0  # bytes held, when max_bytes is set
        # Held to move the cache and to store in it: a store checked against the version before a
        # move must not land after it (threaded workers).
        self.lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        """`build()` once per version and key (or every time when the cache is off)."""
        value, version = self.lookup(key)
        if value is None:
            value = build()
            self.store(version, key, value)
        return value

    def lookup(self, key: Hashable) -> tuple[T | None, tuple[int, ...] | None]:
        """The entry for `key` at the current version (None if absent), and that version, for
        `store`. Reading the version first, before any data, keeps an entry from being older
        than the version it is stored under."""
        if not self.enabled:
            return None, None
        version = tuple(db.data_version(counter) for counter in self.counters)
        if version != self.version:
            with self.lock:
                if version != self.version:
                    order = db.versions_read_order()
                    if order < self.read_order:
                        # This request read the counters before the request that moved the cache
                        # (a thread that began before a write): it neither reads nor fills it.
                        return None, None
                    self.move_to(version)
                    self.version, self.read_order = version, order
        return self.entries.get(key), version

    def move_to(self, version: tuple[int, ...]) -> None:
        """Drop what `version` may have changed (here: everything); called under the lock, and
        `version` is set after it."""
        self.entries = {}
        self.size = 0

    def store(self, version: tuple[int, ...] | None, key: Hashable, value: T) -> bool:
        """Keep `value`, built after `lookup` gave `version`; not if the cache moved on meanwhile
        (another thread of a threaded worker saw a newer version). Whether it was kept."""
        with self.lock:
            return self.enabled and version == self.version and self._store(key, value)

    def _store(self, key: Hashable, value: T) -> bool:
        size = self._size(value)
        max_bytes = self.max_bytes if self.max_bytes is not None else math.inf
        if size > max_bytes:
            return False  # larger than the whole cache: served, not kept
        if key in self.entries:  # built by two threads at once
            self._drop(key)
        while self.entries and (len(self.entries) >= self.max_entries or self.size + size > max_bytes):
            self._drop(next(iter(self.entries)))
        self.entries[key] = value
        self.size += size
        return True

    def _drop(self, key: Hashable) -> None:
        self.size -= self._size(self.entries.pop(key))

    def _size(self, value: T) -> int:
        return len(value) if self.max_bytes is not None else 0  # type: ignore[arg-type]


class DepartmentResponses(VersionedCache[bytes]):
    """The bodies of the department API's reads, and the rows of its lists, following (DATA, SETTINGS).

    An entry stored with the one department it shows (GET one, its agents, a list's row as JSON:
    `department`) outlives writes to other departments. When only DATA moved, the change log
    (models.DepartmentChange, written by the database's triggers whoever writes) names the
    departments the versions in between changed; their entries go, with every body of no single
    department (lists, searches). Everything goes instead when the log cannot vouch for the whole
    step: a version in between without its rows (pruned, or a counter moved by hand), the first row
    at the old version gone or different (a restore), a TRUNCATE ("*"), or more than MAX_STEP
    versions or rows at once.
    """

    MAX_STEP = 256  # a longer step (a bulk import) drops everything rather than read its log

    def __init__(self, max_entries: int, max_bytes: int, *, enabled: bool) -> None:
        super().__init__((db.DATA, db.SETTINGS), max_entries, max_bytes, enabled=enabled)
        self.department_of: dict[Hashable, str | None] = {}
        self.keys_of: dict[str | None, set[Hashable]] = {}  # None: bodies of no single department
        self.anchor: tuple[int, int] | None = None  # the first log row at `version`'s DATA: (seq, changed_at)

    def store(
        self, version: tuple[int, ...] | None, key: Hashable, value: bytes, department: str | None = None
    ) -> bool:
        with self.lock:
            if not (self.enabled and version == self.version and self._store(key, value)):
                return False
            self.department_of[key] = department
            self.keys_of.setdefault(department, set()).add(key)
            return True

    def _drop(self, key: Hashable) -> None:
        super()._drop(key)
        self.keys_of[self.department_of.pop(key)].discard(key)

    def move_to(self, version: tuple[int, ...]) -> None:
        changed = self._changed_departments(version)
        if changed is None:
            super().move_to(version)
            self.department_of, self.keys_of = {}, {}
        else:
            for department in (None, *changed):
                for key in self.keys_of.pop(department, ()):  # the set goes whole: no discard per key
                    VersionedCache._drop(self, key)
                    del self.department_of[key]
        self.anchor = _first_log_row(version[0])

    def _changed_departments(self, version: tuple[int, ...]) -> set[str] | None:
        """The departments changed between `self.version` and `version`; None when the step is not
        one the log can vouch for (the class's docstring)."""
        old = self.version
        if old is None or version[1:] != old[1:] or not 0 < version[0] - old[0] <= self.MAX_STEP:
            return None
        if self.anchor is None or _first_log_row(old[0]) != self.anchor:
            return None
        rows = db.read_committed(STEP_ROWS, {"old": old[0], "new": version[0]})
        if len(rows) > self.MAX_STEP or len({v for v, _department in rows}) != version[0] - old[0]:
            return None
        changed = {department for _version, department in rows}
        return None if "*" in changed else changed

    def kept_rows(self, ids: list[str], build: Callable[[list[str]], dict[str, bytes]]) -> list[orjson.Fragment] | None:
        """The rows of a department list, as JSON in `ids`' order: the kept ones, and the others
        from `build(missing)` (id -> JSON), then kept. None when the cache is off or not at this
        request's version, when `build` leaves one out (gone since, or JSON orjson refuses), or when
        a write committed since the request read the counters (the ids and the total, each read in
        its own snapshot, may then be of newer versions than the kept rows or than each other): the
        caller then builds the page whole."""
        version = tuple(db.data_version(counter) for counter in self.counters)
        if not self.enabled or version != self.version:
            return None
        found = [self.entries.get(("row", department)) for department in ids]
        missing = [department for department, row in zip(ids, found, strict=True) if row is None]
        if missing:
            built = build(missing)
            if any(department not in built for department in missing):
                return None
            for department in missing:
                self.store(version, ("row", department), built[department], department)
            found = [built[department] if row is None else row for department, row in zip(ids, found, strict=True)]
        if not db.versions_unchanged():
            return None
        return [orjson.Fragment(row) for row in found]  # type: ignore[arg-type]


_log = DepartmentChange
# The log's rows of the versions after :old through :new (at most MAX_STEP + 1 of them), and the
# first row of a version: small fixed statements, run on the driver outside the request's
# transaction (db.read_committed).
STEP_ROWS = db.DriverStatement(
    select(_log.version, _log.department_id)
    .where(_log.version > bindparam("old"), _log.version <= bindparam("new"))
    .limit(DepartmentResponses.MAX_STEP + 1)
)
FIRST_LOG_ROW = db.DriverStatement(
    select(_log.seq, _log.changed_at).where(_log.version == bindparam("version")).order_by(_log.seq).limit(1)
)


def _first_log_row(version: int) -> tuple[int, int] | None:
    rows = db.read_committed(FIRST_LOG_ROW, {"version": version})
    return tuple(rows[0]) if rows else None  # type: ignore[return-value]


class Caches:
    """The caches of one application (one per gunicorn worker)."""

    def __init__(self, enabled: bool, max_responses: int = 8192, max_response_bytes: int = 16 * 1024 * 1024) -> None:
        self.callers: VersionedCache[object] = VersionedCache((db.AUTH,), 10_000, enabled=enabled)
        self.settings: VersionedCache[dict[str, object]] = VersionedCache((db.SETTINGS,), 1, enabled=enabled)
        # A body of 50 departments weighs ~30 KB and a list's row ~0.6 KB: 16 MiB keep ~500 such
        # pages, or 8,192 smaller entries, per worker (bench/run.py --mode growth checks the memory).
        self.responses = DepartmentResponses(max_responses, max_response_bytes, enabled=enabled)


def caches() -> Caches:
    return current_app.extensions["caches"]


def settings() -> dict[str, object]:
    """Every setting's value, as of this request."""
    return caches().settings.get_or_build("all", lambda: workspace_service.all_settings(db.session()))
