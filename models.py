"""The data: typed SQLAlchemy models. No Flask here, so scripts and migrations import it freely.

A NULL column means "the key is absent" on the wire: Rocket.Chat departments are schemaless
documents that hold exactly the keys a client sent (docs/compatibility.md §1.1), and absent keys are
omitted from responses rather than sent as null.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    literal_column,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

# Column sizes; schemas.py validates the same limits so PostgreSQL never sees a longer value.
ID_MAX = 64
NAME_MAX = 256
EMAIL_MAX = 254
USERNAME_MAX = 120
TEXT_MAX = 10_000
LOGIN_KEY_MAX = 300  # "user:" + an email (254), or "ip:" + an address
IDEMPOTENCY_KEY_MAX = 255

METEOR_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def meteor_id() -> str:
    """A 17-character id like Meteor's `Random.id()`: Rocket.Chat's format for user ids."""
    return "".join(secrets.choice(METEOR_ID_ALPHABET) for _ in range(17))


def object_id() -> str:
    """A 24-hex id like Mongo's ObjectId (time prefix + random): Rocket.Chat's department ids."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


def utcnow() -> datetime:
    # Millisecond precision: the wire format has milliseconds, and a stored value must
    # round-trip to exactly what the client was shown.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns an aware UTC datetime (SQLite would return naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints from day one: Alembic batch mode can only alter what has a name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class DataVersion(Base):
    """Version counters, moved by database triggers in every writing transaction (migration 0009):
    row 1 (data) by departments and agent links, row 2 (accounts) by users, roles, tokens and
    permissions, row 3 (settings) by settings.

    Caches read them first and keep entries for one version only (cache.py), so a write committed
    by anyone, anywhere, is seen by the next read in every worker.
    """

    __tablename__ = "data_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class DepartmentChange(Base):
    """The change log: one row per change of a department row or agent link, written by database
    triggers in the writing transaction (migration 0009), whoever writes: the service, the CLI, or
    a person with sqlite3/psql. Never written by the service's code.

    `version` is the data version of the transaction (DataVersion row 1; commit order), `tx`
    groups the rows of one transaction, `old_row`/`new_row` are the row before and after as JSON
    (column names as keys), `actor` is what the writer said of itself (db.py; NULL: a hand edit).
    A TRUNCATE on PostgreSQL logs one row for department "*": every department may have changed.
    """

    __tablename__ = "department_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    department_id: Mapped[str] = mapped_column(String(ID_MAX))
    subject: Mapped[str] = mapped_column(String(16))  # "department" or "agent" (a link)
    operation: Mapped[str] = mapped_column(String(1))  # I(nsert), U(pdate), D(elete), T(runcate)
    old_row: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new_row: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(Text)
    tx: Mapped[str | None] = mapped_column(String(64))
    changed_at: Mapped[int] = mapped_column(BigInteger)  # epoch milliseconds

    __table_args__ = (
        # The feed's order (events.feed): a page reads its rows in the index and stops (migration 0013).
        Index("ix_department_changes_version_seq", "version", "seq"),
        Index("ix_department_changes_department_id_version", "department_id", "version"),
        Index("ix_department_changes_tx", "tx"),  # a transaction's rows, for a department's history (events.py)
    )


# What an event can say happened to a department (events.py).
EVENT_KINDS = ("created", "updated", "archived", "unarchived", "deleted", "agents-changed")


class EventState(Base):
    """One row: how far the change log was pruned (the feed refuses older cursors) and how far the
    webhook dispatcher has turned events into deliveries (events.py, webhooks.py)."""

    __tablename__ = "event_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)
    dispatched: Mapped[str | None] = mapped_column(String(40))  # a feed cursor; NULL: start at the head


class WebhookEndpoint(Base):
    """A URL that receives signed events (Standard Webhooks), registered by an admin."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True, default=object_id)
    url: Mapped[str] = mapped_column(Text)
    kinds: Mapped[list[str]] = mapped_column(JSON)
    department_ids: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))  # NULL: every department
    secret: Mapped[str] = mapped_column(String(80))  # "whsec_" + base64; shown once, kept to sign
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row, sent until it is delivered or given up.

    `claimed_until` (epoch ms) is the claim of the worker attempting it: at most one attempt at
    a time; a worker killed mid-attempt leaves a claim that expires, and the event is sent again."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))  # webhook-id: the same on every attempt
    cursor: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[str] = mapped_column(String(ID_MAX))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)  # epoch ms: when it entered the outbox
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    claimed_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class WebhookAttempt(Base):
    """The delivery log: one row per attempt, with what the receiver answered and how fast."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[int] = mapped_column(BigInteger)  # epoch ms
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class WriteContext(Base):
    """Who is writing, for the change log's triggers, on SQLite: the service writes its one row
    when a write transaction begins and deletes it before committing (db.py). PostgreSQL's
    triggers read a transaction-local setting instead, and leave this table empty."""

    __tablename__ = "write_context"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str | None] = mapped_column(Text)
    tx: Mapped[str] = mapped_column(String(64))


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    description: Mapped[str] = mapped_column(String(NAME_MAX), default="")


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[str] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


# Usernames and emails are unique regardless of case through these indexes of migration 0010:
# `lower(…)` on PostgreSQL, `COLLATE NOCASE` on SQLite. No model can declare an expression index
# for both, so autogenerate leaves them alone (migrations/env.py, include_in_autogenerate).
CASE_INSENSITIVE_INDEXES = frozenset({"uq_users_username_ci", "uq_users_email_ci"})


def include_in_autogenerate(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic's `include_name`: everything but the indexes the models cannot declare."""
    return not (type_ == "index" and name in CASE_INSENSITIVE_INDEXES)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True, default=meteor_id)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(512))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(32), default="offline")
    status_livechat: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    role_links: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def roles(self) -> list[str]:
        return sorted(link.role_id for link in self.role_links)

    def has_role(self, role: str) -> bool:
        return any(link.role_id == role for link in self.role_links)


class LoginToken(Base):
    """A login session. Only base64(sha256(token)) is stored, like Meteor's `hashedToken`."""

    __tablename__ = "login_tokens"

    hashed_token: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginFailure(Base):
    """Failed logins of one throttling key in its current window, shared by every worker.

    `key` is `user:<username or email, lowercased>` or `ip:<client address>`; the window
    starts at the first failure and lasts LOGIN_FAILURE_WINDOW_SECONDS (account_service.py).
    """

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(LOGIN_KEY_MAX), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Permission(Base):
    __tablename__ = "permissions"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    # Role ids in the order they were set (Rocket.Chat returns them as stored).
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Setting(Base):
    __tablename__ = "settings"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True, default=object_id)
    # Byte-wise order like Mongo's (docs/compatibility.md §2.1): "C" collation on PostgreSQL,
    # SQLite's default BINARY already is.
    name: Mapped[str] = mapped_column(String(NAME_MAX).with_variant(String(NAME_MAX, collation="C"), "postgresql"))
    # casefold(name): `text` search is case-insensitive across Unicode on both databases,
    # which SQLite's lower()/LIKE (ASCII only) cannot do by themselves. NULL after a writer
    # changed `name` without it (a hand edit, migration 0009): searches then fold the name.
    name_folded: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    enabled: Mapped[bool] = mapped_column(Boolean)
    show_on_registration: Mapped[bool] = mapped_column(Boolean)
    show_on_offline_form: Mapped[bool | None] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text)
    request_tag_before_closing_chat: Mapped[bool | None] = mapped_column(Boolean)
    # none_as_null: an absent list is SQL NULL, not the JSON text 'null' (decoded on every read).
    chat_closing_tags: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    fallback_forward_department: Mapped[str | None] = mapped_column(String(ID_MAX))
    departments_allowed_to_forward: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    allow_receive_forward_offline: Mapped[bool | None] = mapped_column(Boolean)
    offline_message_channel_name: Mapped[str | None] = mapped_column(Text)
    abandoned_rooms_close_custom_message: Mapped[str | None] = mapped_column(Text)
    waiting_queue_message: Mapped[str | None] = mapped_column(Text)
    num_agents: Mapped[int | None] = mapped_column(Integer)
    archived: Mapped[bool | None] = mapped_column(Boolean)
    # 'd' for departments; Rocket.Chat EE stores units ('u') in the same collection.
    type: Mapped[str | None] = mapped_column(String(8))
    # Client-defined primitive keys ("custom fields", docs/compatibility.md §1.1), kept as sent.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("name")
    def _fold_name(self, _key: str, name: str) -> str:
        self.name_folded = name.casefold()
        return name

    __table_args__ = (
        # The lists that show archived departments too: their pages, totals and `text` searches
        # read this index alone, filters included; no table row while skipping `offset` entries.
        # The default lists have their own, ix_departments_listed below. No index of `enabled`
        # alone: nearly every department is, and SQLite, keeping no statistics, chose such an
        # index over these (migration 0015).
        Index("ix_departments_with_archived", "name", "id", "archived", "type", "name_folded", "enabled"),
        Index("ix_departments_archived_name_id", "archived", "name", "id"),
    )


# Departments, not units (Rocket.Chat EE keeps units, type 'u', in the same collection): every
# department list shows only these. 'd' is written into the statement, not bound, so that the
# statements carry ix_departments_listed's predicate (below) verbatim.
NOT_A_UNIT = or_(Department.type.is_(None), Department.type == literal_column("'d'"))
# `IS NOT` (not `IS NULL OR = false`): the planner walks a name index in order and filters
# inside it, instead of sorting every row.
NOT_ARCHIVED = Department.archived.is_not(True)
# What the department lists show unless asked for archived ones (department_service.ListFilter).
LISTED = and_(NOT_A_UNIT, NOT_ARCHIVED)
# Just the listed rows, with every column their default lists, `text` searches and `enabled`
# filter read: a page, its total and a search scan this index alone, and SQLite leaves out the
# predicate's terms instead of testing them on each entry (a third of the time of a page or a
# count; docs/performance.md).
Index(
    "ix_departments_listed",
    Department.name, Department.id, Department.name_folded, Department.type, Department.archived, Department.enabled,
    sqlite_where=LISTED, postgresql_where=LISTED,
)


class DepartmentAgent(Base):
    """The link of an agent (a user) to a department, with its routing counters."""

    __tablename__ = "department_agents"

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True, default=object_id)
    department_id: Mapped[str] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE")
    )
    # No cascade from users: removing a user must also fix numAgents, which the service does.
    agent_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), default="")
    department_enabled: Mapped[bool] = mapped_column(Boolean)
    count: Mapped[int] = mapped_column(Integer, default=0)
    order: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("department_id", "agent_id"),
        Index("ix_department_agents_department_id_username", "department_id", "username"),
    )


class IdempotencyKey(Base):
    """A request made with an Idempotency-Key, and the answer to replay for its repeats
    (idempotency.py). Written in the request's own transaction, so a stored row always holds
    the committed answer; `expires_at` (IDEMPOTENCY_KEY_TTL_SECONDS after) lets it be pruned."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)  # the user id: keys are per caller
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
