"""Account use cases: passwords, login tokens, login throttling, users and their omnichannel
roles, and the first admin. Each one transaction, raising ApiError.

No Flask request objects here: views hand in plain values and a Session. Write use cases
commit at their end; a failure before that leaves the database as it was (the request's
session is rolled back when it closes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, case, delete, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

import db
from department_service import recount_agents
from errors import ApiError
from models import (
    LOGIN_KEY_MAX,
    Department,
    DepartmentAgent,
    LoginFailure,
    LoginToken,
    Permission,
    Role,
    User,
    UserRole,
)

log = logging.getLogger(__name__)

ROLES = ("admin", "livechat-manager", "livechat-monitor", "livechat-agent", "user")
LIVECHAT_ROLES = {"agent": "livechat-agent", "manager": "livechat-manager"}
USER_SORT_FIELDS = {"name": 1, "username": 1, "_id": 1, "status": 1}  # `sort` of livechat/users/:type

# ---------------------------------------------------------------------------
# Passwords and tokens
# ---------------------------------------------------------------------------

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def configure_password_hashing(time_cost: int, memory_cost: int, parallelism: int) -> None:
    """argon2id parameters (tests use cheap ones)."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    _dummy_hash = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# Passwords imported from Rocket.Chat (data_transfer.py): Meteor's accounts-password stores
# bcrypt(hex(sha256(password))); we keep that hash behind this prefix until the first login.
RC_BCRYPT_PREFIX = "rcbcrypt$"


def _verify_password(stored_hash: str | None, password: str, *, prehashed: bool = False) -> bool:
    """`prehashed`: the client sent Meteor's `{digest, algorithm: "sha-256"}` form."""
    global _dummy_hash
    if stored_hash is None:
        # Spend the same time as a real check, so timing does not reveal unknown users.
        _dummy_hash = _dummy_hash or _hasher.hash(secrets.token_hex(8))
        stored_hash = _dummy_hash
        password = ""
    if stored_hash.startswith(RC_BCRYPT_PREFIX):
        digest = password.lower() if prehashed else hashlib.sha256(password.encode()).hexdigest()
        try:
            return bcrypt.checkpw(digest.encode(), stored_hash[len(RC_BCRYPT_PREFIX) :].encode())
        except ValueError:  # a malformed hash
            return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _needs_rehash(stored_hash: str, *, prehashed: bool) -> bool:
    if stored_hash.startswith(RC_BCRYPT_PREFIX):
        return not prehashed  # argon2id needs the password itself, not its digest
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return False


def hash_token(token: str) -> str:
    """Meteor's `Accounts._hashLoginToken`: standard base64 of the SHA-256 of the token."""
    return base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()


def new_token() -> str:
    # 43 characters of [A-Za-z0-9_-], the shape of Meteor's Random.secret().
    return secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------


def now() -> datetime:
    """The clock of token expiry and login throttling (tests move it)."""
    return datetime.now(UTC)


def _valid_token(token: str, ttl: timedelta | None) -> Any:
    """The condition on login_tokens for a presented token that has not expired."""
    condition = LoginToken.hashed_token == hash_token(token)
    if ttl is not None:
        condition = condition & (LoginToken.created_at > now() - ttl)
    return condition


@dataclass(frozen=True)
class Authenticated:
    """The user behind a login token, with what their roles grant."""

    id: str
    username: str
    roles: frozenset[str]
    permissions: frozenset[str]
    expires_at: datetime | None  # None: never


@lru_cache(maxsize=2)
def _caller_statement(dialect_name: str) -> db.DriverStatement:
    """The token's user, their roles and the permissions those roles hold: one statement, so
    authenticating a request and checking its permissions cost one round trip."""
    if dialect_name == "postgresql":
        aggregate, elements = func.string_agg, func.json_array_elements_text
    else:
        aggregate, elements = func.group_concat, func.json_each
    granted_role = elements(Permission.roles).table_valued("value").alias("granted_role")
    roles = select(aggregate(UserRole.role_id, " ")).where(UserRole.user_id == User.id).scalar_subquery()
    holds = (
        select(literal(1))
        .select_from(granted_role)
        .join(UserRole, UserRole.role_id == granted_role.c.value)
        .where(UserRole.user_id == User.id)
        .correlate(User, Permission)
    )
    permissions = select(aggregate(Permission.id, " ")).where(holds.exists()).correlate(User).scalar_subquery()
    return db.DriverStatement(
        select(User.id, User.username, LoginToken.created_at, roles, permissions)
        .join(LoginToken, LoginToken.user_id == User.id)
        .where(
            LoginToken.hashed_token == bindparam("hashed_token"),
            LoginToken.created_at > bindparam("oldest", type_=LoginToken.__table__.c.created_at.type),
            User.active.is_(True),
        )
    )


def authenticated_caller(
    session: Session, user_id: str, token: str, ttl: timedelta | None = None
) -> Authenticated | None:
    """The active user owning this `X-User-Id` + `X-Auth-Token` pair, if the token exists and
    has not expired. Callers that keep the answer (cache.py) must compare its expiry with the
    clock each time they use it."""
    connection = db.connection_of(session)
    oldest = now() - ttl if ttl is not None else datetime(1970, 1, 1, tzinfo=UTC)
    rows = _caller_statement(connection.dialect.name).execute(
        connection, {"hashed_token": hash_token(token), "oldest": oldest}
    )
    if not rows or not hmac.compare_digest(rows[0][0], user_id):
        return None
    found_id, username, created_at, roles, permissions = rows[0]
    return Authenticated(
        found_id,
        username,
        frozenset((roles or "").split()),
        frozenset((permissions or "").split()),
        created_at + ttl if ttl is not None else None,
    )


# ---------------------------------------------------------------------------
# Login throttling: failed logins counted per client address and per account
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginThrottle:
    """At most `max_failures` failed logins per client address and `account_max_failures` per
    account in `window` (0 failures: no throttling; 0 per account: no account cap).

    The address limit stops one client; the account limit only caps an attack spread over many
    addresses, and is high so that locking an account out takes many addresses, not two
    (docs/compatibility.md, login throttling)."""

    max_failures: int
    window: timedelta
    account_max_failures: int = 0

    def limit(self, key: str) -> int:
        return self.max_failures if key.startswith("ip:") else self.account_max_failures


def _address_key(client_address: str | None) -> str | None:
    """`ip:<address>`; an IPv6 client counts as its /64 network, which one host usually holds whole."""
    if not client_address:
        return None
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        return f"ip:{client_address}"[:LOGIN_KEY_MAX]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"ip:{address}"


def _identity_key(identifier: dict[str, str], user: User | None) -> str:
    # One counter per account, whether it is named by username or email; a name that is no
    # account is counted as typed (lowercased), and answered exactly like a real one.
    if user is not None:
        return f"user:{user.id}"
    (_kind, value), = identifier.items()
    return f"name:{value.lower()}"[:LOGIN_KEY_MAX]


def _check_throttle(session: Session, keys: list[str], throttle: LoginThrottle, at: datetime) -> None:
    """429 with Retry-After when any key reached its limit in its current window."""
    rows = session.execute(
        select(LoginFailure.key, LoginFailure.failures, LoginFailure.window_start).where(
            LoginFailure.key.in_(keys), LoginFailure.window_start > at - throttle.window
        )
    ).all()
    window_starts = [start for key, failures, start in rows if 0 < throttle.limit(key) <= failures]
    if window_starts:
        wait = max(start + throttle.window for start in window_starts) - at
        raise ApiError.too_many_requests(max(1, math.ceil(wait.total_seconds())))


def _record_failure(session: Session, keys: list[str], throttle: LoginThrottle, at: datetime) -> None:
    """Count one failure per key, atomically (an upsert); a window that has ended starts again.

    Core statements on the session's connection: part of the transaction, but not a change of
    anything the read caches hold, so the data version (db.py) is left alone.
    """
    connection = db.connection_of(session)
    insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    ended = LoginFailure.window_start <= at - throttle.window
    # The window has ended for stale rows: drop them (keeps the table small under a spray).
    connection.execute(delete(LoginFailure).where(ended))
    for key in keys:
        statement = insert(LoginFailure).values(key=key, failures=1, window_start=at)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[LoginFailure.key],
                set_={
                    "failures": case((ended, 1), else_=LoginFailure.failures + 1),
                    "window_start": case(
                        (ended, literal(at, LoginFailure.window_start.type)), else_=LoginFailure.window_start
                    ),
                },
            )
        )


def _clear_failures(session: Session, keys: Iterable[str]) -> None:
    db.connection_of(session).execute(delete(LoginFailure).where(LoginFailure.key.in_(list(keys))))


def _active_throttle(throttle: LoginThrottle | None) -> LoginThrottle | None:
    return throttle if throttle is not None and throttle.max_failures > 0 else None


def login(
    session: Session,
    identifier: dict[str, str],
    password: Any,
    *,
    client_address: str | None = None,
    throttle: LoginThrottle | None = None,
    token_ttl: timedelta | None = None,
) -> tuple[User, str]:
    """Check a password and open a new login token. Wrong user and wrong password look alike.

    With `throttle`, a client address or an account with too many recent failures gets 429
    before any password check (the same for unknown users), and each 401 is counted first.
    """
    throttle = _active_throttle(throttle)
    user = _find_login_user(session, identifier)
    identity = _identity_key(identifier, user)
    keys = [key for key in (_address_key(client_address), identity) if key]
    at = now()
    if throttle:
        _check_throttle(session, keys, throttle, at)
    try:
        _check_password(user, password)
    except ApiError:
        if throttle:
            _record_failure(session, keys, throttle, at)
            session.commit()
        raise
    assert user is not None
    if throttle:
        _clear_failures(session, [identity])  # the account's counter, not the address's
    return user, _open_token(session, user, token_ttl)


def refuse_login_body(session: Session, client_address: str | None, throttle: LoginThrottle | None) -> None:
    """A login whose body could not even be read (characters no column holds) is a failed login
    of its address: 429 once the address is stopped, else counted (the caller answers 400)."""
    throttle = _active_throttle(throttle)
    key = _address_key(client_address)
    if throttle is None or key is None:
        return
    at = now()
    _check_throttle(session, [key], throttle, at)
    _record_failure(session, [key], throttle, at)
    session.commit()


def _find_login_user(session: Session, identifier: dict[str, str]) -> User | None:
    """The user a login names, by username or email, regardless of case (both are unique
    regardless of case, migration 0010), as Meteor's accounts-password finds them."""
    (kind, value), = identifier.items()
    column = User.email if kind == "email" else User.username
    return session.scalars(select(User).where(func.lower(column) == value.lower())).one_or_none()


def _check_password(user: User | None, password: Any) -> None:
    """401 unless `user` is active and `password` is theirs, in the same time either way."""
    prehashed = isinstance(password, dict) and password.get("algorithm") == "sha-256"
    if prehashed:
        password = password.get("digest")  # Meteor's pre-hashed form; we verify it as given
    if not isinstance(password, str):
        raise ApiError.unauthorized_login()
    valid = _verify_password(user.password_hash if user else None, password, prehashed=prehashed)
    if user is None or not valid or not user.active:
        raise ApiError.unauthorized_login()
    if _needs_rehash(user.password_hash or "", prehashed=prehashed):
        # Also moves a Rocket.Chat bcrypt hash to argon2id on the first login with the password.
        user.password_hash = hash_password(password)


def login_with_token(session: Session, token: str, token_ttl: timedelta | None = None) -> tuple[User, str]:
    """`{resume: token}`: a new token for the holder of a valid (unexpired) one."""
    user = session.scalars(
        select(User)
        .join(LoginToken, LoginToken.user_id == User.id)
        .where(_valid_token(token, token_ttl), User.active.is_(True))
    ).one_or_none()
    if user is None:
        raise ApiError.unauthorized_login()
    return user, _open_token(session, user, token_ttl)


def _open_token(session: Session, user: User, ttl: timedelta | None = None) -> str:
    token = new_token()
    session.add(LoginToken(hashed_token=hash_token(token), user_id=user.id, created_at=now()))
    if ttl is not None:
        # The user's expired tokens are useless: drop them while we write anyway.
        session.execute(delete(LoginToken).where(LoginToken.user_id == user.id, LoginToken.created_at <= now() - ttl))
    session.commit()
    return token


def logout(session: Session, token: str) -> None:
    session.execute(delete(LoginToken).where(LoginToken.hashed_token == hash_token(token)))
    session.commit()


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


def find_user(session: Session, *, user_id: str | None = None, username: str | None = None) -> User | None:
    if user_id is not None:
        return session.get(User, user_id)
    if username is not None:
        return session.scalars(select(User).where(User.username == username)).one_or_none()
    return None


# Rocket.Chat's "basic" email check (lib/emailValidator.ts): something, @, a domain with a dot,
# and a top-level domain of at least two letters.
VALID_EMAIL = re.compile(r"^[^@]+@[^@]+\.[a-zA-Z]{2,}$")


def taken(session: Session, column: str, value: str) -> bool:
    """Whether a user has this username or email, regardless of case (Rocket.Chat's rule; the
    database's unique indexes of migration 0010 back it up)."""
    attribute = getattr(User, column)
    return session.scalars(select(User.id).where(func.lower(attribute) == value.lower())).first() is not None


def create_user(session: Session, data: dict[str, Any]) -> User:
    """users.create: unique username and email, roles that exist, password hashed."""
    username, email = data["username"], data["email"].lower()
    if taken(session, "username", username):
        raise ApiError.meteor(
            "error-field-unavailable", f"{username} is already in use :(", method="insertOrUpdateUser"
        )
    if taken(session, "email", email):
        raise ApiError.meteor("error-field-unavailable", f"{email} is already in use :(", method="insertOrUpdateUser")
    roles = data.get("roles") or ["user"]
    unknown = set(roles) - set(session.scalars(select(Role.id)))
    if unknown:
        raise ApiError.meteor("error-invalid-role", "Invalid role", method="insertOrUpdateUser")
    if not VALID_EMAIL.match(data["email"].strip()):
        # Rocket.Chat's saveNewUser → validateEmailDomain, after the checks above.
        raise ApiError(
            f"Invalid email {data['email']} [error-invalid-email]",
            error_type="error-invalid-email",
            details={"function": "RocketChat.validateEmailDomain", "email": data["email"]},
        )
    user = User(
        username=username,
        name=data["name"],
        email=email,
        email_verified=bool(data.get("verified", False)),
        password_hash=hash_password(data["password"]),
        active=data.get("active", True),
    )
    user.role_links = [UserRole(role_id=r) for r in dict.fromkeys(roles)]
    session.add(user)
    session.commit()
    return user


def set_password(session: Session, user: User, password: str) -> int:
    """Replace a user's password and end all their sessions; returns how many were ended."""
    user.password_hash = hash_password(password)
    ended = session.execute(delete(LoginToken).where(LoginToken.user_id == user.id)).rowcount
    session.commit()
    return ended or 0


def list_users(session: Session, offset: int, count: int | None) -> tuple[list[User], int]:
    total = session.scalar(select(func.count()).select_from(User)) or 0
    query = select(User).order_by(User.username, User.id).offset(offset)
    if count is not None:
        query = query.limit(count)
    return list(session.scalars(query)), total


def delete_user(session: Session, user: User) -> None:
    """Remove a user with their tokens and department links (numAgents stays exact)."""
    _unlink_agent(session, user.id)
    # Explicit rather than left to the foreign key's ON DELETE CASCADE: gone even where keys are not enforced.
    session.execute(delete(LoginToken).where(LoginToken.user_id == user.id))
    session.delete(user)
    session.commit()


def _unlink_agent(session: Session, user_id: str) -> None:
    """Delete every department link of a user and recount those departments' agents."""
    department_ids = list(
        session.scalars(select(DepartmentAgent.department_id).where(DepartmentAgent.agent_id == user_id))
    )
    if not department_ids:
        return
    # Lock the departments first (same order as department writes) so numAgents stays exact.
    session.execute(
        select(Department.id).where(Department.id.in_(department_ids)).order_by(Department.id).with_for_update()
    )
    session.execute(delete(DepartmentAgent).where(DepartmentAgent.agent_id == user_id))
    recount_agents(session, department_ids)


# ---------------------------------------------------------------------------
# Omnichannel roles (livechat/users/:type)
# ---------------------------------------------------------------------------


def livechat_role(user_type: str) -> str:
    role = LIVECHAT_ROLES.get(user_type)
    if role is None:
        raise ApiError.plain("Invalid type")
    return role


def list_role_members(
    session: Session, role: str, *, text: str | None, exclude_id: str | None, only_available: bool,
    offset: int, count: int | None, sort: list[tuple[str, int]], hide_idle: bool = False,
) -> tuple[list[User], int]:
    """`hide_idle`: leave out offline users, bots excepted (Rocket.Chat's showIdleAgents=false)."""
    query = select(User).join(UserRole, UserRole.user_id == User.id).where(UserRole.role_id == role)
    if hide_idle:
        bot = aliased(UserRole)
        query = query.where(or_(User.status != "offline", exists().where(bot.user_id == User.id, bot.role_id == "bot")))
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                func.lower(User.username).like(pattern, escape="\\"),
                func.lower(User.name).like(pattern, escape="\\"),
                func.lower(User.email).like(pattern, escape="\\"),
            )
        )
    if exclude_id:
        query = query.where(User.id != exclude_id)
    if only_available:
        query = query.where(User.status_livechat == "available")
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    columns = {"name": User.name, "username": User.username, "_id": User.id, "status": User.status}
    order = [
        columns[field].desc() if direction < 0 else columns[field] for field, direction in sort if field in columns
    ]
    query = query.order_by(*order, User.id).offset(offset)
    if count is not None:
        query = query.limit(count)
    return list(session.scalars(query)), total


def add_role(session: Session, username: str, role: str) -> User:
    user = find_user(session, username=username)
    if user is None:
        raise ApiError.plain("error-invalid-user")
    if not user.has_role(role):
        user.role_links.append(UserRole(role_id=role))
    if role == "livechat-agent":
        user.status_livechat = "not-available" if user.status == "offline" else "available"
    session.commit()
    return user


def remove_role(session: Session, user_id: str, role: str) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise ApiError.plain(None)  # Rocket.Chat: 400 {"success": false}
    user.role_links = [link for link in user.role_links if link.role_id != role]
    if role == "livechat-agent":
        # Rocket.Chat's afterAgentRemoved hook: the agent leaves every department.
        _unlink_agent(session, user.id)
    session.commit()


# ---------------------------------------------------------------------------
# First start
# ---------------------------------------------------------------------------


def bootstrap_admin(session: Session, username: str, password: str | None, email: str) -> str | None:
    """Create the admin on an empty user base. Returns a generated password, if one was made."""
    has_admin = session.scalars(select(UserRole.user_id).where(UserRole.role_id == "admin")).first()
    if has_admin is not None or find_user(session, username=username) is not None:
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(18)
    user = User(
        username=username,
        name=username,
        email=email.lower(),
        password_hash=hash_password(password),
        status="online",
        status_livechat="available",
    )
    # Rocket.Chat's test admin is also an agent; we only give the admin role.
    user.role_links = [UserRole(role_id="admin")]
    session.add(user)
    session.commit()
    return generated
