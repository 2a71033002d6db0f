"""Signed webhooks: endpoints, the outbox and its delivery (issue 15; docs/history-and-webhooks.md).

The outbox is filled from the change log by a cursor (`event_state.dispatched`), after commit, so
a write pays nothing for webhooks; the log row is in the change's transaction, so an event
committed is an event delivered, whenever the server dies. Each gunicorn worker runs one
Deliverer thread (gunicorn.conf.py). Two claims keep the workers apart on both databases: the
dispatcher's (the `event_state` row, FOR UPDATE SKIP LOCKED; SQLite's BEGIN IMMEDIATE) and a
delivery's (`claimed_until`, taken in a transaction, so one attempt at a time per delivery).
Deliveries are signed as Standard Webhooks say: `webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">` under the endpoint's "whsec_" secret.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import http.client
import ipaddress
import logging
import os
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, Connection, Engine, bindparam, column, func, insert, select, update
from sqlalchemy.orm import Session

import db
import events
import json_codec
from errors import ApiError
from models import EventState, WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

# Standard Webhooks' suggested schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
# 10 h (27.6 h in all); then the delivery fails and its endpoint is disabled.
RETRY_SCHEDULE_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)
REQUEST_TIMEOUT_SECONDS = 10
# A worker claims a batch of due deliveries for CLAIM_MS and starts no attempt that could outlast
# the claim: never two attempts of one delivery at once; a dead worker's claims expire.
CLAIM_MS = 60_000
CLAIM_BATCH = 50
# New events are looked for every WEBHOOK_POLL_MS; retries due (and claims released by other
# workers) at most this often: a retry waits 5 s at least, and each look costs a query a worker.
RETRY_CHECK_SECONDS = 1.0
DISPATCH_BATCH = 500
URL_MAX = 2000
DEPARTMENTS_MAX = 100
USER_AGENT = "departments-service-webhooks/1"


def now_ms() -> int:
    return int(time.time() * 1000)


# --- where deliveries may go (SSRF) ----------------------------------------------------------------


def parse_networks(raw: str) -> tuple[Any, ...]:
    """WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDRs that are allowed although not public."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())


def destination(url: str, allowed: Sequence[Any]) -> tuple[str, int, list[str]]:
    """(host, port, addresses) of an endpoint URL, or an ApiError: http(s) only, and every
    address the name resolves to public, unless inside `allowed` (the SSRF rule)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError.plain("error-invalid-webhook-url: an http:// or https:// URL with a host is required")
    if parts.username or parts.password:
        raise ApiError.plain("error-invalid-webhook-url: credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (ValueError, OSError, UnicodeError):
        raise ApiError.plain("error-invalid-webhook-url: the host does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            if not any(ip in network for network in allowed):
                raise ApiError.plain(
                    "error-webhook-url-not-allowed: the host resolves to a loopback, private or link-local address "
                    "(WEBHOOK_ALLOWED_NETWORKS lists the networks allowed anyway)"
                )
    return parts.hostname, port, addresses


# --- endpoints ----------------------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(session: Session, data: dict[str, Any], allowed: Sequence[Any]) -> WebhookEndpoint:
    destination(data["url"], allowed)
    endpoint = WebhookEndpoint(
        url=data["url"], kinds=list(dict.fromkeys(data["kinds"])), department_ids=data.get("departmentIds"),
        secret=new_secret(), enabled=True,
    )
    session.add(endpoint)
    session.flush()
    _start_dispatch_at_head(session.connection())
    session.commit()
    return endpoint


def _start_dispatch_at_head(connection: Connection) -> None:
    # The first endpoint gets what happens from now on, not the whole log.
    if connection.scalar(select(EventState.dispatched).where(EventState.id == 1)) is None:
        connection.execute(update(EventState).where(EventState.id == 1).values(dispatched=str(events.head(connection))))


def endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint:
    found = session.get(WebhookEndpoint, endpoint_id)
    if found is None:
        raise ApiError.plain("error-webhook-not-found")
    return found


def set_enabled(session: Session, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
    found = endpoint(session, endpoint_id)
    found.enabled, found.disabled_reason = enabled, None if enabled else "disabled by an admin"
    session.commit()
    return found


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    session.delete(endpoint(session, endpoint_id))
    session.flush()
    if session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0:
        # Nobody listens: the deliverers stop following the log (no write a round for nothing);
        # the next endpoint starts at the end of the log again.
        session.execute(update(EventState).where(EventState.id == 1).values(dispatched=None))
    session.commit()


def deliveries(session: Session, endpoint_id: str, offset: int, limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """An endpoint's delivery log, newest first, each delivery with its attempts."""
    endpoint(session, endpoint_id)
    mine = WebhookDelivery.endpoint_id == endpoint_id
    total = session.scalar(select(func.count()).select_from(WebhookDelivery).where(mine)) or 0
    page = select(WebhookDelivery).where(mine).order_by(WebhookDelivery.id.desc()).offset(offset)
    rows = list(session.scalars(page.limit(limit) if limit is not None else page))
    attempts: dict[int, list[WebhookAttempt]] = {}
    if rows:
        found = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_([row.id for row in rows]))
            .order_by(WebhookAttempt.id)
        )
        for attempt in session.scalars(found):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [{"delivery": row, "attempts": attempts.get(row.id, [])} for row in rows], total


def redeliver(session: Session, endpoint_id: str, delivery_id: str) -> None:
    """Send a delivery again now (its retries start over), whatever became of it."""
    # An id is a positive 64-bit integer; anything else names no delivery (never an overflow).
    well_formed = delivery_id.isascii() and delivery_id.isdigit() and len(delivery_id) <= 18
    found = session.get(WebhookDelivery, int(delivery_id)) if well_formed else None
    if found is None or found.endpoint_id != endpoint_id:
        raise ApiError.plain("error-webhook-delivery-not-found")
    found.status, found.next_attempt_at, found.attempts = "pending", now_ms(), 0
    session.commit()


# --- signing --------------------------------------------------------------------------------------


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(cursor: str) -> str:
    return "msg_" + cursor.replace(".", "_")


# --- the outbox: events to deliveries -------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds the claim of, with what it takes to send it."""

    id: int
    message_id: str
    payload: str
    attempts: int
    endpoint_id: str
    url: str
    secret: str


def dispatch(engine: Engine, done: list[Batch], schedule: Sequence[int]) -> tuple[int, list[Claimed], bool]:
    """Turn the events after `event_state.dispatched` into deliveries for the enabled endpoints
    they match, claimed by this worker, which sends them at once. The events are read before the
    lock, which is then held only to check that no other worker moved the cursor meanwhile and
    to write (SQLite has one writer at a time: the API's writes wait for it). Returns how many
    events were read, the claimed deliveries, and whether the cursor was found at the head of the
    log (nothing to dispatch; not when another worker was dispatching). The batches in `done`
    are written down in the same transaction (and `done` emptied) when there is one: one write a
    round under load."""
    with engine.connect() as plain:
        head = events.head(plain)
        dispatched = plain.scalar(select(EventState.dispatched).where(EventState.id == 1))
        if dispatched is None or dispatched == str(head):
            return 0, [], True  # no endpoint yet, or nothing new: no lock taken
        active = plain.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.kinds, WebhookEndpoint.department_ids,
                   WebhookEndpoint.url, WebhookEndpoint.secret).where(WebhookEndpoint.enabled)
        ).all()
        found, position = events.feed(plain, events.Cursor.parse(dispatched), DISPATCH_BATCH) if active else ([], head)
    now = now_ms()
    pairs = [
        (event, endpoint)
        for event in found
        for endpoint in active
        if events.matches(event, endpoint.kinds, endpoint.department_ids)
    ]
    rows = [
        {
            "endpoint_id": endpoint.id, "message_id": message_id(event["cursor"]), "cursor": event["cursor"],
            "kind": event["kind"], "department_id": event["departmentId"], "payload": payload(event),
        }
        for event, endpoint in pairs
    ]
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection, connection.begin():
        record_in(connection, done, schedule)
        done.clear()
        current = connection.scalar(
            select(EventState.dispatched).where(EventState.id == 1).with_for_update(skip_locked=True)
        )
        if current != dispatched:
            return 0, [], False  # another worker holds the row or moved the cursor: its deliveries, not ours
        ids = insert_outbox(connection, rows, now) if rows else []
        connection.execute(update(EventState).where(EventState.id == 1).values(dispatched=str(position)))
    claimed = [
        Claimed(delivery_id, row["message_id"], row["payload"], 0, endpoint.id, endpoint.url, endpoint.secret)
        for delivery_id, row, (_event, endpoint) in zip(ids, rows, pairs, strict=True)
    ]
    return len(found), claimed, False


# --- statements on a batch of rows ---------------------------------------------------------------
# Each takes the whole batch as one JSON document bound as `rows`, unpacked by the database: one
# short statement a batch. A multi-row VALUES as long as the batch is parsed again by psycopg
# every round (it caches short statements only), and executemany pays SQLAlchemy's per-row work
# (on SQLite while holding the write lock); each cost about a tenth of a millisecond an event.


def _rows_postgresql(columns: dict[str, Any]) -> Any:
    return (
        func.json_to_recordset(bindparam("rows", type_=JSON))
        .table_valued(*(column(name, type_) for name, type_ in columns.items()))
        .render_derived(with_types=True)
    )


def _rows_sqlite(columns: dict[str, Any]) -> Any:
    each = func.json_each(bindparam("rows", type_=JSON)).table_valued("value")
    return select(*(func.json_extract(each.c.value, f"$.{name}").label(name) for name in columns)).subquery()


@dataclass(frozen=True)
class BatchStatements:
    insert_outbox: Any  # new deliveries (OUTBOX_COLUMNS and _new_deliveries): their ids
    insert_attempts: Any  # attempts made (ATTEMPT_COLUMNS)
    record_outcomes: Any  # each attempt's outcome on its delivery (`delivery_id`, OUTCOME_COLUMNS)


OUTBOX_COLUMNS = ("endpoint_id", "message_id", "cursor", "kind", "department_id", "payload")
ATTEMPT_COLUMNS = ("delivery_id", "attempted_at", "status_code", "error", "duration_ms")
OUTCOME_COLUMNS = ("attempts", "claimed_until", "last_status_code", "last_error", "status", "next_attempt_at")


def _new_deliveries(now: int) -> dict[str, Any]:
    """What every new delivery of a batch starts with: due now, claimed by this worker."""
    return {
        "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now, "claimed_until": now + CLAIM_MS,
    }


def _batch_statements(rows: Callable[[dict[str, Any]], Any]) -> BatchStatements:
    deliveries, attempts = WebhookDelivery.__table__, WebhookAttempt.__table__
    outbox = rows({name: deliveries.c[name].type for name in OUTBOX_COLUMNS})
    new = tuple(_new_deliveries(0))
    made = rows({name: attempts.c[name].type for name in ATTEMPT_COLUMNS})
    outcome_types = {name: deliveries.c[name].type for name in OUTCOME_COLUMNS}
    outcomes = rows({"delivery_id": deliveries.c.id.type, **outcome_types})
    return BatchStatements(
        insert_outbox=insert(deliveries).from_select(
            [*OUTBOX_COLUMNS, *new],
            select(*outbox.c, *(bindparam(name, type_=deliveries.c[name].type) for name in new)),
        ).returning(deliveries.c.id, deliveries.c.endpoint_id, deliveries.c.message_id),
        insert_attempts=insert(attempts).from_select(ATTEMPT_COLUMNS, select(*made.c)),
        record_outcomes=update(deliveries).where(deliveries.c.id == outcomes.c.delivery_id).values(
            {name: outcomes.c[name] for name in OUTCOME_COLUMNS}
        ),
    )


BATCH_STATEMENTS = {"postgresql": _batch_statements(_rows_postgresql), "sqlite": _batch_statements(_rows_sqlite)}


def batch_statements(connection: Connection) -> BatchStatements:
    return BATCH_STATEMENTS[connection.dialect.name]


def insert_outbox(connection: Connection, rows: list[dict[str, Any]], now: int) -> list[int]:
    """Insert new deliveries (OUTBOX_COLUMNS); their ids, in the order of `rows`."""
    found = connection.execute(batch_statements(connection).insert_outbox, {"rows": rows, **_new_deliveries(now)})
    ids = {(endpoint_id, message): delivery_id for delivery_id, endpoint_id, message in found}
    return [ids[row["endpoint_id"], row["message_id"]] for row in rows]


def payload(event: dict[str, Any]) -> str:
    """The body sent: Standard Webhooks' envelope around the event."""
    return json_codec.dumps({"type": f"department.{event['kind']}", "timestamp": event["time"], "data": event})


# --- delivery -------------------------------------------------------------------------------------


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the address that was checked, with the certificate checked for the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class Connections:
    """Keep-alive connections of one batch, one per checked address: a batch of deliveries to
    one receiver pays one TCP (and TLS) handshake and one name lookup, not one each."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str, int, str], http.client.HTTPConnection] = {}
        self.checked: dict[str, tuple[str, int, list[str]]] = {}

    def destination(self, url: str, allowed: Sequence[Any]) -> tuple[str, int, list[str]]:
        """`destination(url)`, checked once per batch (a refusal is not kept: it is asked again)."""
        if url not in self.checked:
            self.checked[url] = destination(url, allowed)
        return self.checked[url]

    def get(self, scheme: str, host: str, port: int, address: str) -> http.client.HTTPConnection:
        key = (scheme, host, port, address)
        if key not in self.open:
            if scheme == "https":
                self.open[key] = PinnedHTTPSConnection(host, port, address, REQUEST_TIMEOUT_SECONDS)
            else:
                self.open[key] = http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT_SECONDS)
        return self.open[key]

    def drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self.open = {key: kept for key, kept in self.open.items() if kept is not connection}

    def close(self) -> None:
        for connection in self.open.values():
            connection.close()
        self.open.clear()


def post(url: str, body: bytes, headers: dict[str, str], allowed: Sequence[Any], connections: Connections) -> int:
    """POST to `url` at an address checked for this batch (a name may have changed what it
    resolves to since registration). Returns the status code; raises OSError/ApiError on failure."""
    host, port, addresses = connections.destination(url, allowed)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = connections.get(parts.scheme, host, port, addresses[0])
    try:
        connection.request("POST", target, body, {**headers, "Host": parts.netloc})
        response = connection.getresponse()
        response.read(65536)  # the answer's content is not used; a little is read to end the exchange cleanly
        if response.will_close or not response.isclosed():
            connections.drop(connection)  # closed by the receiver, or more left unread: not reusable
        return response.status
    except BaseException:
        connections.drop(connection)
        raise


def claim_due(engine: Engine, limit: int = CLAIM_BATCH) -> list[Any]:
    """Claim up to `limit` due deliveries of enabled endpoints for this worker (claimed_until)."""
    now = now_ms()
    due = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
               WebhookDelivery.claimed_until <= now, WebhookEndpoint.enabled)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    with engine.connect() as plain:
        if plain.execute(due.limit(1)).first() is None:
            return []  # nothing due: no lock taken
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection, connection.begin():
        ids = list(connection.scalars(due.with_for_update(of=WebhookDelivery, skip_locked=True)))
        if not ids:
            return []
        connection.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(claimed_until=now + CLAIM_MS)
        )
        return connection.execute(
            select(WebhookDelivery.id, WebhookDelivery.message_id, WebhookDelivery.payload, WebhookDelivery.attempts,
                   WebhookEndpoint.id.label("endpoint_id"), WebhookEndpoint.url, WebhookEndpoint.secret)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)
        ).all()


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or the error that stopped it."""

    delivery: Any
    attempted_at: int
    status_code: int | None
    error: str | None
    duration_ms: int


def send(delivery: Any, allowed: Sequence[Any], connections: Connections) -> Outcome:
    """One signed attempt of a claimed delivery."""
    timestamp = int(time.time())
    body = delivery.payload.encode()
    headers = {
        "content-type": "application/json", "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(delivery.secret, delivery.message_id, timestamp, body),
    }
    attempted_at, started, status, error = now_ms(), time.monotonic(), None, None
    try:
        status = post(delivery.url, body, headers, allowed, connections)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except ApiError as refused:
        error = str(refused.error)
    except (OSError, http.client.HTTPException) as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
    return Outcome(delivery, attempted_at, status, error, int((time.monotonic() - started) * 1000))


@dataclass(frozen=True)
class Batch:
    """Attempts made and not yet written down, and the claimed deliveries left unsent."""

    outcomes: Sequence[Outcome]
    unsent: Sequence[int]


def record(engine: Engine, batches: Sequence[Batch], schedule: Sequence[int]) -> None:
    """Write batches down in a transaction of their own (dispatch writes them with its own when it can)."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection, connection.begin():
        record_in(connection, batches, schedule)


def record_in(connection: Connection, batches: Sequence[Batch], schedule: Sequence[int]) -> None:
    """Log the attempts and schedule what comes next: delivered, retried later, or failed for
    good (its endpoint disabled with the reason). Claims of deliveries left unsent are released."""
    now = now_ms()
    outcomes = [outcome for batch in batches for outcome in batch.outcomes]
    unsent = [delivery_id for batch in batches for delivery_id in batch.unsent]
    if outcomes:
        statements = batch_statements(connection)
        connection.execute(statements.insert_attempts, {"rows": [
            {"delivery_id": o.delivery.id, "attempted_at": o.attempted_at, "status_code": o.status_code,
             "error": o.error, "duration_ms": o.duration_ms}
            for o in outcomes
        ]})
        changes = []
        for outcome in outcomes:
            attempts = outcome.delivery.attempts + 1
            gave_up = outcome.error is not None and attempts > len(schedule)
            changes.append({
                "delivery_id": outcome.delivery.id, "attempts": attempts, "claimed_until": 0,
                "last_status_code": outcome.status_code, "last_error": outcome.error,
                "status": "delivered" if outcome.error is None else "failed" if gave_up else "pending",
                "next_attempt_at": (
                    now + (schedule[attempts - 1] * 1000 if outcome.error is not None and not gave_up else 0)
                ),
            })
            if gave_up:
                reason = (
                    f"delivery {outcome.delivery.message_id} failed {attempts} times over {sum(schedule)} s; "
                    f"last: {outcome.error}"
                )
                connection.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == outcome.delivery.endpoint_id)
                                   .values(enabled=False, disabled_reason=reason))
                log.warning("webhook endpoint %s disabled: %s", outcome.delivery.endpoint_id, reason)
        connection.execute(statements.record_outcomes, {"rows": changes})
    if unsent:
        connection.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(unsent)).values(claimed_until=0))


class Deliverer:
    """The background loop of one worker: dispatch new events, then attempt what is due."""

    def __init__(self, engine: Engine, config: dict[str, Any], versions: db.VersionReader) -> None:
        self.engine = engine
        url = engine.url.render_as_string(hide_password=True)
        url_hash = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.lock_path = os.path.join(tempfile.gettempdir(), f"departments-webhooks-{url_hash}.lock")
        self.poll = config["WEBHOOK_POLL_MS"] / 1000
        self.allowed = parse_networks(config["WEBHOOK_ALLOWED_NETWORKS"])
        self.schedule = tuple(config["WEBHOOK_RETRY_SCHEDULE"])
        self.stopping = threading.Event()
        self.unrecorded: list[Batch] = []  # attempts made, written down with this worker's next round (run_once)
        self.thread: threading.Thread | None = None
        # Every committed change moves the data version (the change log's triggers): while it
        # stays where this worker last found nothing to dispatch, a round reads it and nothing
        # else. An idle service polled with 4 queries a worker a round, ~90 ms of CPU a second
        # on PostgreSQL with 4 workers.
        self.versions = versions  # the app's (db.version_reader): no connection of its own
        self.caught_up_at: int | None = None
        self.retries_checked_at = float("-inf")

    def run_once(self, *, flush: bool = True, paced: bool = False) -> int:
        """One round: new events first (sent at once by the worker that dispatched them), then
        the retries that are due. Returns how many attempts were made. Without `flush` the last
        batch of new events is written down with this worker's next dispatch, or on its own in
        its next round that does not dispatch (the loop does that: under a steady stream of
        writes the deliverer then adds about one write transaction a round).
        `paced` (the loop): no dispatch if a worker of this host dispatched less than a poll
        interval ago, so the host dispatches once a poll interval, not once per worker."""
        made, dispatched = 0, False
        head = self.versions.read()[db.DATA]
        if head != self.caught_up_at:  # else nothing was committed since this worker found nothing new
            with self.dispatching(paced) as mine:
                while mine:
                    dispatched = True
                    read, claimed, caught_up = dispatch(self.engine, self.unrecorded, self.schedule)
                    if self.unrecorded:  # nothing new to dispatch: written down on their own
                        record(self.engine, self.unrecorded, self.schedule)
                        self.unrecorded.clear()
                    if caught_up:
                        self.caught_up_at = head  # read before dispatch looked: never past what it saw
                    batch = self._send(claimed)
                    if batch is not None:
                        self.unrecorded.append(batch)
                        made += len(batch.outcomes)
                    if read < DISPATCH_BATCH or self.stopping.is_set():
                        break
        if flush or not dispatched or self.stopping.is_set():
            self.flush()  # not left for a dispatch of this worker's that may not come soon
        if time.monotonic() - self.retries_checked_at >= RETRY_CHECK_SECONDS:
            self.retries_checked_at = time.monotonic()
            while (claimed := claim_due(self.engine)) and not self.stopping.is_set():
                batch = self._send(claimed)
                if batch is not None:
                    record(self.engine, [batch], self.schedule)
                    made += len(batch.outcomes)
        return made

    def flush(self) -> None:
        if self.unrecorded:
            record(self.engine, self.unrecorded, self.schedule)
            self.unrecorded.clear()

    @contextlib.contextmanager
    def dispatching(self, paced: bool = False) -> Iterator[bool]:
        """Whether this worker may dispatch now: one worker of this host at a time (a file lock),
        so the others do not each read the same new events only to lose the database's check
        (which alone keeps dispatch correct, also across hosts). The lock file's time is when a
        worker last dispatched: `paced`, a worker leaves a dispatch made less than a poll interval
        ago to stand (each round costs a dozen statements; with 4 workers polling every 200 ms,
        20 rounds a second cost more than the events they carried)."""
        with open(self.lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                if paced and time.time() - os.fstat(lock.fileno()).st_mtime < self.poll:
                    yield False
                    return
                yield True
                os.utime(lock.fileno())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _send(self, claimed: Sequence[Any]) -> Batch | None:
        """Attempt a claimed batch, starting attempts only while the claim still covers one."""
        if not claimed:
            return None
        last_start = time.monotonic() + (CLAIM_MS / 1000) - REQUEST_TIMEOUT_SECONDS - 5
        outcomes = []
        connections = Connections()
        try:
            for delivery in claimed:
                if time.monotonic() > last_start or self.stopping.is_set():
                    break
                outcomes.append(send(delivery, self.allowed, connections))
        finally:
            connections.close()
        return Batch(outcomes, [delivery.id for delivery in claimed[len(outcomes):]])

    def _loop(self) -> None:
        while not self.stopping.wait(self.poll):
            try:
                self.run_once(flush=False, paced=True)
            except Exception:  # the loop must outlive a database restart or an odd row
                log.exception("webhook delivery round failed; retrying")
        with contextlib.suppress(Exception):
            self.flush()

    def start(self) -> Deliverer:
        self.thread = threading.Thread(target=self._loop, name="webhook-deliverer", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)


def config_from_env(environ: dict[str, str]) -> dict[str, Any]:
    schedule = environ.get("WEBHOOK_RETRY_SCHEDULE")
    return {
        "WEBHOOKS": environ.get("WEBHOOKS", "on").lower() not in ("0", "off", "false", "no"),
        "WEBHOOK_POLL_MS": int(environ.get("WEBHOOK_POLL_MS") or 200),
        "WEBHOOK_ALLOWED_NETWORKS": environ.get("WEBHOOK_ALLOWED_NETWORKS", ""),
        "WEBHOOK_RETRY_SCHEDULE": (
            [int(part) for part in schedule.split(",")] if schedule else list(RETRY_SCHEDULE_SECONDS)
        ),
    }


def kinds_known(kinds: Iterable[str]) -> bool:
    return all(kind in events.KINDS for kind in kinds)
