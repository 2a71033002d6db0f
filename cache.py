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
- Bounded in entries (and bytes for bodies), the oldest going first.
- `READ_CACHE=off` turns them all off: every lookup builds.

Each mechanism here was kept because the bench showed it paying (docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from flask import current_app

import db
import workspace_service

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
        self.entries: dict[Hashable, T] = {}
        self.size = 0  # bytes held, when max_bytes is set

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
            self.version = version
            self.entries = {}
            self.size = 0
        return self.entries.get(key), version

    def store(self, version: tuple[int, ...] | None, key: Hashable, value: T) -> None:
        """Keep `value`, built after `lookup` gave `version`; not if the cache moved on meanwhile
        (another thread of a threaded worker saw a newer version)."""
        if self.enabled and version == self.version:
            self._store(key, value)

    def _store(self, key: Hashable, value: T) -> None:
        size = len(value) if self.max_bytes is not None else 0  # type: ignore[arg-type]
        max_bytes = self.max_bytes if self.max_bytes is not None else math.inf
        if size > max_bytes:
            return  # larger than the whole cache: served, not kept
        while self.entries and (len(self.entries) >= self.max_entries or self.size + size > max_bytes):
            oldest = self.entries.pop(next(iter(self.entries)))
            self.size -= len(oldest) if self.max_bytes is not None else 0  # type: ignore[arg-type]
        self.entries[key] = value
        self.size += size


class Caches:
    """The caches of one application (one per gunicorn worker)."""

    def __init__(self, enabled: bool, max_responses: int = 2048, max_response_bytes: int = 16 * 1024 * 1024) -> None:
        self.callers: VersionedCache[object] = VersionedCache((db.AUTH,), 10_000, enabled=enabled)
        self.settings: VersionedCache[dict[str, object]] = VersionedCache((db.SETTINGS,), 1, enabled=enabled)
        # A body of 50 departments weighs ~30 KB: 16 MiB keep ~500 such pages, or 2,048 smaller
        # bodies, per worker (bench/run.py --mode growth checks the memory).
        self.responses: VersionedCache[bytes] = VersionedCache(
            (db.DATA, db.SETTINGS), max_responses, max_response_bytes, enabled=enabled
        )


def caches() -> Caches:
    return current_app.extensions["caches"]


def settings() -> dict[str, object]:
    """Every setting's value, as of this request."""
    return caches().settings.get_or_build("all", lambda: workspace_service.all_settings(db.session()))
