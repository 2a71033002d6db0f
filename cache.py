"""Per-process read caches, each valid for one value of a committed version counter.

A request reads the version counters first (models.DataVersion), then looks up what it needs
here. A committed write increments the counter of the tables it wrote (db.VERSIONED_TABLES),
so every worker drops the affected entries at its next request: no entry outlives the data it
was computed from, and there is nothing to invalidate by hand.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flask import current_app

import db
import department_service as service
import workspace_service

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """Entries of the current data version only; a newer version empties the cache.

    Bounded by a number of entries and, for caches of bytes, by their total size: the oldest
    entries go first.
    """

    def __init__(self, counter: int, max_entries: int, max_bytes: int | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled  # off: every lookup builds (READ_CACHE=off)
        self.counter = counter  # which version counter (db.DATA, db.AUTH, db.SETTINGS) the entries follow
        self.max_entries = max_entries
        self.max_bytes = max_bytes  # only for values that have a len() in bytes
        self.version: int | None = None
        self.entries: dict[Hashable, T] = {}
        self.size = 0  # bytes held, when max_bytes is set

    def get_or_build(self, version: int, key: Hashable, build: Callable[[], T]) -> T:
        if version != self.version:
            self.version = version
            self.entries = {}
            self.size = 0
        try:
            return self.entries[key]
        except KeyError:
            value = build()
            if self.version == version:  # not if another thread moved the cache on meanwhile
                self._store(key, value)
            return value

    def _store(self, key: Hashable, value: T) -> None:
        size = self._size(value)
        max_bytes = self.max_bytes if self.max_bytes is not None else math.inf
        if size > max_bytes:
            return  # larger than the whole cache: served, not kept
        while self.entries and (len(self.entries) >= self.max_entries or self.size + size > max_bytes):
            self.size -= self._size(self.entries.pop(next(iter(self.entries))))  # the oldest goes
        self.entries[key] = value
        self.size += size

    def _size(self, value: T) -> int:
        return len(value) if self.max_bytes is not None else 0  # type: ignore[arg-type]


class ContentCache(VersionedCache[T]):
    """Entries keyed by everything they were computed from, so no write can make one stale and
    no version empties them: only the bounds evict (oldest first)."""

    def __init__(self, max_entries: int, *, enabled: bool = True) -> None:
        super().__init__(db.DATA, max_entries, enabled=enabled)  # the counter is never read

    def get(self, key: Hashable) -> T | None:
        return self.entries.get(key)

    def put(self, key: Hashable, value: T) -> None:
        if self.enabled and key not in self.entries:
            self._store(key, value)


@dataclass
class FilterKey:
    """A department's content key as the log was last read, shared by its consecutive changes
    that leave every column a list filter reads as it was (department_service.FILTER_COLUMNS):
    for those columns it holds the department's values after any of these changes. None once a
    later change may have changed them."""

    key: tuple[Any, ...] | None


@dataclass
class Change:
    """One department's change in one data version, from the change log (db.py)."""

    version: int
    department_id: str
    fields: frozenset[str] | str | None  # db.CREATED, db.DELETED, the changed columns, or None: unknown
    # The department's content key after this change, while this is its latest change (its
    # values as the log was read; they no longer tell once it changes again). None if deleted.
    key: tuple[Any, ...] | None = None
    filter_key: FilterKey | None = None

    @property
    def filtered_key(self) -> tuple[Any, ...] | None:
        """The department's content key after this change, for the columns list filters read."""
        return None if self.filter_key is None else self.filter_key.key


class ChangeFeed:
    """The change log as this worker has read it: the changes of the recent data versions, read
    once per new version and shared by the caches that outlive writes (bounded: the oldest
    versions go first, and a cache entry older than what is held is dropped)."""

    def __init__(self, max_changes: int = 4096) -> None:
        self.max_changes = max_changes
        self.start: int | None = None  # every change after `start` and up to `upto` is held
        self.upto: int | None = None
        self.changes: list[Change] = []
        self.versions: list[int] = []  # of `changes`, for bisect
        self.latest: dict[str, Change] = {}  # each department's latest change, whose key still tells
        self.lock = threading.Lock()  # threaded servers: one thread reads the log, the others wait

    def catch_up(self, version: int) -> None:
        """Hold every change up to `version`: a cache calls it when it keeps its first entry."""
        with self.lock:
            self._catch_up(version)

    def between(self, since: int, upto: int) -> list[Change] | None:
        """The changes of versions `since` (excluded) to `upto`, or None when they are not all held."""
        with self.lock:
            self._catch_up(upto)
            if self.start is None or since < self.start:
                return None
            return self.changes[bisect_right(self.versions, since) : bisect_right(self.versions, upto)]

    def _catch_up(self, version: int) -> None:
        if self.upto is not None and version <= self.upto:
            return
        rows = None
        if self.upto is not None:
            rows = db.logged_changes(service.changes_query(db.engine().dialect), self.upto, version)
        if rows is None:  # first read, or further behind than the log: start afresh
            self.start = self.upto = version
            self.changes, self.versions, self.latest = [], [], {}
            return
        # The rows run up to the snapshot they were read in: `version`, maybe newer ones.
        for logged_version, department_id, fields, *key in rows:
            change = Change(int(logged_version), department_id, fields)
            if fields not in (None, db.CREATED, db.DELETED):
                change.fields = frozenset(fields.split(",")) - {""}
            shared = None
            earlier = self.latest.pop(department_id, None)
            if earlier is not None:  # changed again: that key no longer tells
                earlier.key = None
                if isinstance(change.fields, frozenset) and not change.fields & service.FILTER_COLUMNS:
                    shared = earlier.filter_key  # but what filters read is as it was
                elif earlier.filter_key is not None:
                    earlier.filter_key.key = None
            if key[0] is not None:  # the department exists in the snapshot the log was read in
                change.key = tuple(key)
                if shared is None:
                    shared = FilterKey(change.key)
                else:  # newer values, the same in the columns filters read
                    shared.key = change.key
                change.filter_key = shared
                self.latest[department_id] = change
            self.changes.append(change)
            self.versions.append(change.version)
            self.upto = max(self.upto, change.version)
        if len(self.changes) > self.max_changes:  # drop the oldest versions whole
            drop = bisect_right(self.versions, self.versions[len(self.changes) - self.max_changes])
            self.start = self.versions[drop - 1]
            del self.changes[:drop], self.versions[:drop]
            self.latest = {d: c for d, c in self.latest.items() if c.version > self.start}


class DepartmentCache:
    """Answers about one department (GET one, its agents), keyed (department id, …).

    A new data version drops only the answers of the departments it changed, as the change log
    says (ChangeFeed; all of them when the log cannot say), so a write to one department leaves
    every other department's answers cached. Bounded like VersionedCache: the oldest
    department's answers go first.
    """

    def __init__(self, feed: ChangeFeed, max_entries: int, max_bytes: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.counter = db.DATA
        self.feed = feed
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.version: int | None = None
        self.departments: dict[str, dict[Hashable, bytes]] = {}
        self.count = 0
        self.size = 0

    def get_or_build(self, version: int, key: tuple[str, Hashable], build: Callable[[], bytes]) -> bytes:
        if version != self.version:
            self._catch_up(version)
        department_id, rest = key
        answers = self.departments.get(department_id)
        if answers is not None and rest in answers:
            return answers[rest]
        value = build()
        if self.version == version:  # not if another thread moved the cache on meanwhile
            self._store(department_id, rest, value)
        return value

    def _catch_up(self, version: int) -> None:
        if self.version is None:  # nothing kept yet: the feed starts here
            self.feed.catch_up(version)
            changes = None
        else:
            changes = self.feed.between(self.version, version)
        changed = None if changes is None else {change.department_id for change in changes}
        if changed is None or db.ANY_DEPARTMENT in changed:
            self.departments, self.count, self.size = {}, 0, 0
        else:
            for department_id in changed:
                self._drop(department_id)
        self.version = version

    def _drop(self, department_id: str) -> None:
        answers = self.departments.pop(department_id, {})
        self.count -= len(answers)
        self.size -= sum(len(value) for value in answers.values())

    def _store(self, department_id: str, rest: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        while self.departments and (self.count >= self.max_entries or self.size + len(value) > self.max_bytes):
            self._drop(next(iter(self.departments)))
        self.departments.setdefault(department_id, {})[rest] = value
        self.count += 1
        self.size += len(value)


@dataclass
class ListEntry:
    """A list page's body, what it showed (to judge later changes), and what a new total needs."""

    version: int
    body: bytes
    departments: slice  # where the body holds its departments, to write it again around a new total
    page: service.ListedPage
    count: int
    offset: int
    limit: int | None
    total: int


class ListCache:
    """Department list pages kept across the writes that cannot change their rows.

    A newer data version does not drop a page: when it is read again, the changes since it was
    built (ChangeFeed) are checked against what it showed (ListedPage.unchanged_by), and it is
    built again only if one of them could alter it. Its total is taken afresh each time
    (TotalCache, or the page's own). Bounded in entries and bytes, oldest first.
    """

    def __init__(self, feed: ChangeFeed, max_entries: int, max_bytes: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.feed = feed
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: dict[Hashable, ListEntry] = {}
        self.size = 0
        self.kept = 0  # pages served again at a newer data version (tests, bench)

    def get(self, version: int, key: Hashable) -> ListEntry | None:
        entry = self.entries.get(key)
        if entry is None or entry.version >= version:  # (newer, from another thread: as good)
            return entry
        changes = self.feed.between(entry.version, version)
        page = entry.page
        if changes is None or not all(page.unchanged_by(change) for change in changes):
            self._drop(key)
            return None
        entry.version = version
        self.kept += 1
        return entry

    def put(self, key: Hashable, entry: ListEntry) -> None:
        if len(entry.body) > self.max_bytes:
            return
        self.feed.catch_up(entry.version)
        self._drop(key)
        while self.entries and (len(self.entries) >= self.max_entries or self.size + len(entry.body) > self.max_bytes):
            self._drop(next(iter(self.entries)))
        self.entries[key] = entry
        self.size += len(entry.body)

    def rewrite(self, entry: ListEntry, body: bytes, departments: slice, total: int) -> None:
        """The same page with a new total."""
        self.size += len(body) - len(entry.body)
        entry.body, entry.departments, entry.total = body, departments, total

    def _drop(self, key: Hashable) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)


class TotalCache:
    """The totals of the department lists, by filter, kept across the writes that cannot change
    them and moved by the creations the change log tells (ListFilter.total_change); counted
    again otherwise. Bounded in entries, oldest first."""

    def __init__(self, feed: ChangeFeed, max_entries: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.feed = feed
        self.max_entries = max_entries
        self.entries: dict[service.ListFilter, tuple[int, int]] = {}  # filter -> (version, total)

    def get_or_count(self, version: int, where: service.ListFilter, count: Callable[[], tuple[int, int]]) -> int:
        """The total at data `version` or newer. `count()` gives (data version, total) as of one
        snapshot: a total is moved only by the changes it does not hold already."""
        if not self.enabled:
            return count()[1]
        known = self.entries.get(where)
        if known is not None and known[0] < version:
            changes = self.feed.between(known[0], version)
            moved = None if changes is None else where.total_change(changes)
            known = None if moved is None else (version, known[1] + moved)
        if known is None:
            known = count()
            self.feed.catch_up(known[0])
        self.entries.pop(where, None)
        while len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]
        self.entries[where] = known
        return known[1]


class Caches:
    """The caches of one application (one per gunicorn worker)."""

    def __init__(
        self,
        enabled: bool,
        max_responses: int = 2048,
        max_list_bytes: int = 7 * 1024 * 1024,
        max_response_bytes: int = 2 * 1024 * 1024,
        max_department_response_bytes: int = 3 * 1024 * 1024,
        max_department_dumps: int = 2048,
    ) -> None:
        self.callers: VersionedCache[object] = VersionedCache(db.AUTH, 10_000, enabled=enabled)
        self.permissions: VersionedCache[dict[str, frozenset[str]]] = VersionedCache(db.AUTH, 1, enabled=enabled)
        self.settings: VersionedCache[dict[str, object]] = VersionedCache(db.SETTINGS, 1, enabled=enabled)
        # The bounds keep a worker's memory flat (a body of 50 departments weighs ~30 KB, a kept
        # department dump ~2 KB with its key, the change feed ~1 KB per kept creation): ~17 MiB in
        # all (7 MiB of list pages, 2 of other bodies, 3 of one-department answers, the dumps),
        # checked by bench/run.py --mode growth.
        self.changes = ChangeFeed()
        self.lists = ListCache(self.changes, max_responses, max_list_bytes, enabled=enabled)
        self.responses: VersionedCache[bytes] = VersionedCache(db.DATA, max_responses, max_response_bytes, enabled=enabled)
        self.department_responses = DepartmentCache(
            self.changes, max_responses, max_department_response_bytes, enabled=enabled
        )
        self.totals = TotalCache(self.changes, 1024, enabled=enabled)
        self.department_dumps: ContentCache[dict[str, object]] = ContentCache(max_department_dumps, enabled=enabled)
        # Query strings loaded by their schema (auth.request_query): clients send the same few.
        self.queries: ContentCache[Mapping[str, object]] = ContentCache(1024, enabled=enabled)


def caches() -> Caches:
    return current_app.extensions["caches"]


def cached(cache: VersionedCache[T] | DepartmentCache, key: Hashable, build: Callable[[], T]) -> T:
    """`build()` once per data version and key (or every time when caching is off)."""
    if not cache.enabled:
        return build()
    return cache.get_or_build(db.data_version(cache.counter), key, build)


def settings() -> dict[str, object]:
    """Every setting's value, as of this request's data version."""
    return cached(caches().settings, "all", lambda: workspace_service.all_settings(db.session()))
