"""Command line (`flask --app app <command>`) and the start-up preparation of the database.

A thin layer: arguments, prompts, progress bars and messages here; the work in account_service.py
(users) and data_transfer.py (export, import, Rocket.Chat import, backup). Every failure is a
one-line message on stderr and exit status 1 (click.ClickException).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

import account_service
import backups
import data_transfer
import db
import events
import rocketchat_import
import schemas
import validation
import webhooks
from errors import ApiError
from models import Role

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read "%" in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str) -> None:
    """Apply every pending migration (safe to run from several processes at once)."""
    command.upgrade(alembic_config(database_url), "head")


def prepare_database(app: Flask) -> None:
    """Migrate, then create the admin on an empty database. Running it twice changes nothing."""
    upgrade_database(app.config["DATABASE_URL"])
    with app.app_context():
        session = current_app.extensions["db.sessionmaker"]()
        with session:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            generated = account_service.bootstrap_admin(
                session, app.config["ADMIN_USERNAME"], app.config["ADMIN_PASS"], app.config["ADMIN_EMAIL"]
            )
    if generated:
        # Printed once, on the start that created the admin; it is stored only as a hash.
        log.warning(
            "created admin user %r with generated password: %s (set ADMIN_PASS to choose one)",
            app.config["ADMIN_USERNAME"],
            generated,
        )


F = TypeVar("F", bound=Callable[..., Any])


def clear_errors(command_function: F) -> F:
    """Known failures become a message and exit status 1, never a traceback."""

    @functools.wraps(command_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command_function(*args, **kwargs)
        except data_transfer.TransferError as error:
            raise click.ClickException(str(error)) from error
        except ApiError as error:
            raise click.ClickException(str(error.error or "invalid input")) from error
        except (OperationalError, ProgrammingError) as error:
            detail = str(error.orig or error).strip().splitlines()[0]
            if "no such table" in detail or "does not exist" in detail:
                detail += " (is the database migrated? run `flask --app app upgrade-db`)"
            raise click.ClickException(f"database error: {detail}") from error

    return wrapper  # type: ignore[return-value]


@contextmanager
def database_session(*, write: bool = False) -> Iterator[Session]:
    """A session of its own (commands run outside requests); `write` takes SQLite's write lock first."""
    session: Session = current_app.extensions["db.sessionmaker"]()
    with session:
        if write:
            db.begin_write(session)
            db.record_actor(session, {"type": "cli"})
        yield session


class ProgressBar:
    """click.progressbar on stderr (stdout may carry an export), opened once the size is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def start(self, total: int) -> None:
        self.finish()
        self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
        self.bar.__enter__()

    def advance(self, count: int) -> None:
        if self.bar is not None and count:
            self.bar.update(count)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt. Never from argv."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password must not be empty")
    return str(password)


def check_roles(session: Session, roles: tuple[str, ...]) -> None:
    known = sorted(session.scalars(select(Role.id)))
    unknown = [role for role in roles if role not in known]
    if unknown:
        raise click.ClickException(f"unknown role(s) {', '.join(unknown)} (known: {', '.join(known)})")


def echo_report(report: data_transfer.Report, *, dry_run: bool) -> None:
    for line in report.lines():
        click.echo(line)
    click.echo("dry run: nothing was written" if dry_run else "import committed")


def register(app: Flask) -> None:
    @app.cli.command("upgrade-db")
    def upgrade_db() -> None:
        """Apply database migrations and create the admin user if there is none."""
        prepare_database(current_app._get_current_object())  # type: ignore[attr-defined]
        click.echo("database is at the latest revision")

    @app.cli.command("check-db")
    def check_db() -> None:
        """Fail when the models and the migrations disagree."""
        command.check(alembic_config(current_app.config["DATABASE_URL"]))
        click.echo("models and migrations agree")

    @app.cli.command("create-user")
    @click.argument("username")
    @click.argument("email")
    @click.argument("name", required=False)
    @click.option("--role", "roles", multiple=True, metavar="ROLE", help="A role to give (repeatable; default: user).")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @clear_errors
    def create_user(username: str, email: str, name: str | None, roles: tuple[str, ...], password_stdin: bool) -> None:
        """Create a user. NAME defaults to USERNAME.

        The password is asked twice at a hidden prompt, or read from stdin with
        --password-stdin (e.g. `printf '%s\\n' "$PASS" | flask --app app create-user ...`);
        it is never taken from the command line, where other users could see it.
        """
        body: dict[str, Any] = {"username": username, "email": email, "name": name or username, "password": "-"}
        if roles:
            body["roles"] = list(roles)
        try:
            schemas.UserCreateSchema().load(body)  # the same rules as users.create, checked before the prompt
        except ValidationError as error:
            problems = "; ".join(f"{key}: {' '.join(map(str, messages))}" for key, messages in error.messages.items())
            raise click.ClickException(f"invalid user: {problems}") from error
        with database_session() as session:
            check_roles(session, roles)
            for key, value in (("username", username), ("email", email.lower())):
                if account_service.taken(session, key, value):
                    raise click.ClickException(f"{key} {value!r} is already in use")
        body["password"] = read_password(password_stdin)
        data = validation.load(schemas.UserCreateSchema, body)
        with database_session(write=True) as session:
            user = account_service.create_user(session, data)
            click.echo(f"created user {user.username!r} (id {user.id}) with roles {', '.join(user.roles)}")

    @app.cli.command("set-password")
    @click.argument("username")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @clear_errors
    def set_password(username: str, password_stdin: bool) -> None:
        """Set a user's password and log them out everywhere (their login tokens are revoked)."""
        with database_session() as session:
            if account_service.find_user(session, username=username) is None:
                raise click.ClickException(f"no user named {username!r}")
        password = read_password(password_stdin)
        with database_session(write=True) as session:
            user = account_service.find_user(session, username=username)
            if user is None:
                raise click.ClickException(f"no user named {username!r}")
            ended = account_service.set_password(session, user, password)
        click.echo(f"password of {username!r} changed; {ended} login token(s) revoked")

    @app.cli.command("list-users")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON array (the users.list user shape).")
    @clear_errors
    def list_users(as_json: bool) -> None:
        """List every user: id, username, name, email, roles, active."""
        with database_session() as session:
            users, _total = account_service.list_users(session, 0, None)
            if as_json:
                click.echo(json.dumps([validation.dump(schemas.UserSchema, user) for user in users], indent=2))
                return
            rows = [("ID", "USERNAME", "NAME", "EMAIL", "ROLES", "ACTIVE")]
            rows += [
                (u.id, u.username, u.name, u.email or "", ",".join(u.roles), "yes" if u.active else "no") for u in users
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            for row in rows:
                click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    @app.cli.command("backup")
    @click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--force", is_flag=True, help="Replace DEST if it exists.")
    @clear_errors
    def backup(dest: Path, force: bool) -> None:
        """Copy the SQLite database to DEST, consistently, while the service keeps running.

        Uses SQLite's online backup API (one snapshot; writers are not blocked) and checks the
        copy with PRAGMA integrity_check. On PostgreSQL use pg_dump instead. Restore: stop the
        service, replace the database file with the copy, delete its stale -wal and -shm files,
        start the service.
        """
        result = backups.backup_sqlite(
            current_app.config["DATABASE_URL"], dest, overwrite=force,
            busy_timeout_ms=current_app.config["SQLITE_BUSY_TIMEOUT_MS"],
        )
        click.echo(
            f"backup written to {result.path} ({result.size} bytes, integrity ok, "
            f"{result.departments} departments, {result.users} users)"
        )

    @app.cli.command("export")
    @click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
    @click.option(
        "--with-password-hashes", is_flag=True, help="Include the users' password hashes (keep the file secret)."
    )
    @clear_errors
    def export(file: str, with_password_hashes: bool) -> None:
        """Write everything as one JSON document to FILE (default -, stdout).

        Departments (every column, custom fields included), agent links, users with their roles
        (without password hashes unless --with-password-hashes), permissions and settings, read
        in one consistent snapshot. `import` reads it back.
        """
        bar = ProgressBar("Exporting")
        with database_session() as session:
            try:
                document = data_transfer.export_document(
                    session,
                    with_password_hashes=with_password_hashes,
                    progress=bar,
                )
            finally:
                bar.finish()
        text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        if file == "-":
            click.echo(text, nl=False)
        else:
            # Written beside the target, then renamed: a failed export never leaves half a file.
            partial = f"{file}.{os.getpid()}.partial"
            try:
                descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(partial, file)
            except OSError as error:
                Path(partial).unlink(missing_ok=True)
                raise click.ClickException(f"cannot write {file}: {error.strerror or error}") from error
        counts = ", ".join(f"{len(document[key])} {label}" for key, label in data_transfer.LABELS.items())
        click.echo(f"exported {counts}" + ("" if file == "-" else f" to {file}"), err=True)

    @app.cli.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
    @click.option("--dry-run", is_flag=True, help="Check and count everything, then roll back.")
    @clear_errors
    def import_(file: str, dry_run: bool) -> None:
        """Import a document written by `export` (FILE or - for stdin), in one transaction.

        Rows are matched by id: existing ones are updated, new ones added, nothing is deleted
        (except a local user holding the username or email of an imported user under another
        id, which the imported user replaces); a field missing from a row keeps its value here.
        numAgents is recomputed from the links. Importing the same file twice changes nothing.
        Any error (invalid data, a link to an unknown user or department) changes nothing.
        """
        try:
            with click.open_file(file, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, UnicodeDecodeError) as error:
            raise click.ClickException(f"cannot read {file}: {error}") from error
        except json.JSONDecodeError as error:
            raise click.ClickException(f"{file} is not valid JSON: {error}") from error
        bar = ProgressBar("Importing")
        with database_session() as session:
            try:
                report = data_transfer.import_document(session, document, progress=bar, dry_run=dry_run)
            finally:
                bar.finish()
        echo_report(report, dry_run=dry_run)

    @app.cli.command("import-rocketchat")
    @click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--dry-run", is_flag=True, help="Check and count everything, then roll back.")
    @clear_errors
    def import_rocketchat(directory: Path, dry_run: bool) -> None:
        """Import departments, agent links and users from Rocket.Chat's mongoexport files in DIRECTORY.

        Reads rocketchat_livechat_department.json, rocketchat_livechat_department_agents.json
        and users.json (one document per line, as mongoexport writes them), keeping Rocket.Chat's
        ids. Units (type "u"), roles that do not exist here and fields that are not strings,
        numbers or booleans are skipped and reported. Users keep their Rocket.Chat passwords
        (moved to argon2id at their first login). One transaction; running it twice changes nothing.
        """
        bar = ProgressBar("Importing")
        with database_session() as session:
            try:
                report = rocketchat_import.import_rocketchat(session, directory, progress=bar, dry_run=dry_run)
            finally:
                bar.finish()
        echo_report(report, dry_run=dry_run)


    @app.cli.command("prune-events")
    @click.option(
        "--days",
        type=click.FloatRange(min=0),
        default=None,
        help="Keep this many days (default: EVENT_RETENTION_DAYS, 365).",
    )
    @clear_errors
    def prune_events(days: float | None) -> None:
        """Forget department events older than the retention (their history and feed entries).

        A feed cursor from before them is then refused (410): its client lists again."""
        keep = current_app.config["EVENT_RETENTION_DAYS"] if days is None else days
        with database_session(write=True) as session:
            removed = events.prune(db.connection_of(session), events.now_ms() - int(keep * 86_400_000))
            session.commit()
        click.echo(f"{removed} change log rows older than {keep:g} days removed")

    @app.cli.command("add-webhook")
    @click.argument("url")
    @click.option(
        "--kind",
        "kinds",
        multiple=True,
        required=True,
        metavar="KIND",
        help=f"An event kind to send (repeatable): {', '.join(events.KINDS)}.",
    )
    @click.option(
        "--department",
        "departments",
        multiple=True,
        metavar="ID",
        help="Only this department's events (repeatable; default: all).",
    )
    @clear_errors
    def add_webhook(url: str, kinds: tuple[str, ...], departments: tuple[str, ...]) -> None:
        """Register a webhook endpoint; prints its id and its signing secret (shown this once)."""
        body: dict[str, Any] = {"url": url, "kinds": list(kinds)}
        if departments:
            body["departmentIds"] = list(departments)
        data = validation.load(schemas.WebhookCreateSchema, body)
        allowed = webhooks.parse_networks(current_app.config["WEBHOOK_ALLOWED_NETWORKS"])
        with database_session(write=True) as session:
            endpoint = webhooks.create_endpoint(session, data, allowed)
        click.echo(f"webhook {endpoint.id} registered for {url}")
        click.echo(f"secret (shown once): {endpoint.secret}")

    @app.cli.command("list-webhooks")
    @clear_errors
    def list_webhooks() -> None:
        """The registered webhook endpoints, one a line: id, state, kinds, URL."""
        with database_session() as session:
            for endpoint in webhooks.endpoints(session):
                state = "enabled" if endpoint.enabled else f"disabled ({endpoint.disabled_reason})"
                click.echo(f"{endpoint.id}\t{state}\t{','.join(endpoint.kinds)}\t{endpoint.url}")
