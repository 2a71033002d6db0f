"""Per-process read caches, each valid for one value of a committed version counter.

A request reads the version counters first (models.DataVersion), then looks up what it needs
here. A committed write increments the counter of the tables it wrote (db.VERSIONED_TABLES),
so every worker drops the affected entries at its next request: no entry outlives the data it
was computed from, and there is nothing to invalidate by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from flask import current_app

import db
import services

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


class DepartmentCache:
    """Answers about one department (GET one, its agents), keyed (department id, …).

    A new data version drops only the answers of the departments it changed, as the change log
    says (db.changed_departments; all of them when the log cannot say), so a write to one
    department leaves every other department's answers cached. Bounded like VersionedCache:
    the oldest department's answers go first.
    """

    def __init__(self, max_entries: int, max_bytes: int, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.counter = db.DATA
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
        changed = None if self.version is None else db.changed_departments(self.version, version)
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


class Caches:
    """The caches of one application (one per gunicorn worker)."""

    def __init__(
        self,
        enabled: bool,
        max_responses: int = 2048,
        max_response_bytes: int = 10 * 1024 * 1024,
        max_department_response_bytes: int = 3 * 1024 * 1024,
        max_department_dumps: int = 2048,
    ) -> None:
        self.callers: VersionedCache[object] = VersionedCache(db.AUTH, 10_000, enabled=enabled)
        self.permissions: VersionedCache[dict[str, frozenset[str]]] = VersionedCache(db.AUTH, 1, enabled=enabled)
        self.settings: VersionedCache[dict[str, object]] = VersionedCache(db.SETTINGS, 1, enabled=enabled)
        # The bounds keep a worker's memory flat (a body of 50 departments weighs ~30 KB, a kept
        # department dump ~2 KB with its key): ~17 MiB in all, checked by bench/run.py --mode growth.
        self.responses: VersionedCache[bytes] = VersionedCache(db.DATA, max_responses, max_response_bytes, enabled=enabled)
        self.department_responses = DepartmentCache(max_responses, max_department_response_bytes, enabled=enabled)
        self.totals: VersionedCache[int] = VersionedCache(db.DATA, 1024, enabled=enabled)
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
    return cached(caches().settings, "all", lambda: services.all_settings(db.session()))
