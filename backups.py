"""Online backups of a SQLite database (SQLite's backup API: consistent while the service runs).

PostgreSQL is backed up with its own tools (pg_dump); `backup` says so.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import db
from data_transfer import TransferError

# ---------------------------------------------------------------------------
# SQLite online backup
# ---------------------------------------------------------------------------


@dataclass
class Backup:
    path: Path
    size: int
    departments: int
    users: int


def sqlite_path(database_url: str) -> Path:
    """The file of a SQLite database URL, or a TransferError saying what to do instead."""
    url = db.normalise_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise TransferError(
            "backup copies SQLite databases only, and this one is PostgreSQL: back it up with pg_dump, "
            "e.g. `pg_dump --format=custom --file=departments.dump \"$DATABASE_URL\"` "
            "(restore with pg_restore), or use `flask --app app export`"
        )
    if not url.database or url.database == ":memory:":
        raise TransferError("an in-memory SQLite database cannot be backed up")
    path = Path(url.database).resolve()
    if not path.is_file():
        raise TransferError(f"the database file {path} does not exist")
    return path


def backup_sqlite(
    database_url: str, destination: Path, *, overwrite: bool = False, busy_timeout_ms: int = 5000
) -> Backup:
    """Copy a live SQLite database into `destination`, consistently, while the service runs.

    sqlite3's backup API, in one step, reads one snapshot of the database (WAL included) without
    blocking the service's writers; the copy is written beside the destination, checked with
    `PRAGMA integrity_check`, made a self-contained file (no -wal) and then renamed into place.
    """
    source_path = sqlite_path(database_url)
    destination = destination.resolve()
    if destination == source_path:
        raise TransferError("the destination is the database itself")
    if destination.is_dir():
        raise TransferError(f"{destination} is a directory; give the path of the backup file")
    if destination.exists() and not overwrite:
        raise TransferError(f"{destination} already exists (use --force to replace it)")
    if not destination.parent.is_dir():
        raise TransferError(f"the directory {destination.parent} does not exist")
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    source = sqlite3.connect(source_path, timeout=busy_timeout_ms / 1000)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)  # pages=-1: everything in one step, one snapshot
            target.execute("PRAGMA journal_mode = DELETE")
            problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise TransferError(f"the copy failed its integrity check: {'; '.join(problems[:5])}")
            departments = target.execute("SELECT count(*) FROM departments").fetchone()[0]
            users = target.execute("SELECT count(*) FROM users").fetchone()[0]
        finally:
            target.close()
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, destination)
        directory = os.open(destination.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except sqlite3.Error as error:
        raise TransferError(f"backup failed: {error}") from error
    finally:
        source.close()
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm"), Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
    return Backup(destination, destination.stat().st_size, departments, users)
