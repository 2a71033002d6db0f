"""The database keeps its own books: triggers bump the version counters and log every change to a
department or its agent links, whoever writes (the service, the CLI, sqlite3/psql by hand).

- `department_changes` is rebuilt as the change log: one row per changed department row or agent
  link, with the row before and after (JSON), the data version of the transaction, who wrote it
  (`actor`, NULL when written by hand) and when (`changed_at`, epoch milliseconds).
- Versions follow commit order: the counter row is locked by the writing transaction until it
  commits. On PostgreSQL the counters and the log are written by constraint triggers deferred to
  commit time (the counter row is locked for the last instant only, as before, so writers that
  lock several departments cannot deadlock on it) and a transaction gets one version. On SQLite
  (one writer at a time) triggers run at once and every changed row gets a version of its own.
- `tx` groups the rows of one transaction: PostgreSQL's transaction id; on SQLite the id the
  service writes into `write_context` with its actor (db.py), NULL for a hand edit.
- `name_folded` becomes nullable: a writer that changes `name` without it (a hand edit) leaves
  it NULL, and searches fold such names themselves (department_service.folded_name).

A migration that adds a column to `departments` or `department_agents` must recreate the SQLite
triggers with the new column list (PostgreSQL's take the whole row).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DATA, AUTH, SETTINGS = 1, 2, 3
# Tables whose every write moves a counter without a log row (accounts, permissions, settings).
COUNTED = {
    "users": AUTH, "user_roles": AUTH, "login_tokens": AUTH, "permissions": AUTH, "roles": AUTH, "settings": SETTINGS
}
# Logged tables: (key column naming the department, subject, columns as of this revision).
DEPARTMENT_COLUMNS = (
    "id", "name", "name_folded", "email", "enabled", "show_on_registration", "show_on_offline_form", "description",
    "request_tag_before_closing_chat", "chat_closing_tags", "fallback_forward_department",
    "departments_allowed_to_forward", "allow_receive_forward_offline", "offline_message_channel_name",
    "abandoned_rooms_close_custom_message", "waiting_queue_message", "num_agents", "archived", "type", "extra",
    "updated_at",
)
AGENT_COLUMNS = ("id", "department_id", "agent_id", "username", "department_enabled", "count", "order", "updated_at")
LOGGED = {
    "departments": ("id", "department", DEPARTMENT_COLUMNS),
    "department_agents": ("department_id", "agent", AGENT_COLUMNS),
}
JSON_COLUMNS = {"chat_closing_tags", "departments_allowed_to_forward", "extra"}


def upgrade() -> None:
    op.drop_table("department_changes")
    op.create_table(
        "department_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("operation", sa.String(length=1), nullable=False),
        sa.Column("old_row", sa.JSON(), nullable=True),
        sa.Column("new_row", sa.JSON(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("tx", sa.String(length=64), nullable=True),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_department_changes")),
    )
    op.create_index(op.f("ix_department_changes_version"), "department_changes", ["version"])
    op.create_index(
        op.f("ix_department_changes_department_id_version"), "department_changes", ["department_id", "version"]
    )
    op.create_table(
        "write_context",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("tx", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_context")),
    )
    with op.batch_alter_table("departments") as batch:
        batch.alter_column("name_folded", existing_type=sa.Text(), nullable=True)
    if op.get_bind().dialect.name == "postgresql":
        for statement in postgresql_triggers():
            op.execute(statement)
    else:
        for statement in sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*COUNTED, *LOGGED):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_truncated ON {table}")
        op.execute("DROP TRIGGER IF EXISTS departments_name_folded ON departments")
        for function in ("log_department_change", "bump_counter", "log_truncate", "unfold_hand_renamed", "bump_once"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")
    else:
        for table in COUNTED:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{operation}")
        for table in LOGGED:
            for operation in ("insert", "update", "delete", "moved"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{operation}")
        op.execute("DROP TRIGGER IF EXISTS departments_name_folded")
    op.execute("UPDATE departments SET name_folded = lower(name) WHERE name_folded IS NULL")
    with op.batch_alter_table("departments") as batch:
        batch.alter_column("name_folded", existing_type=sa.Text(), nullable=False)
    op.drop_table("write_context")
    op.drop_table("department_changes")
    op.create_table(
        "department_changes",
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version", "department_id", name=op.f("pk_department_changes")),
    )


# --- SQLite ------------------------------------------------------------------------------------

SQLITE_NOW_MS = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"


def _sqlite_image(row: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(
        f"'{column}', " + (f'json({row}."{column}")' if column in JSON_COLUMNS else f'{row}."{column}"')
        for column in columns
    )
    return f"json_object({values})"


def _sqlite_changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f'OLD."{column}" IS NOT NEW."{column}"' for column in columns)


def sqlite_triggers() -> list[str]:
    statements = []
    bump = f"UPDATE data_version SET version = version + 1 WHERE id = {DATA};"

    def log(department: str, subject: str, operation: str, old: str, new: str) -> str:
        return (
            "INSERT INTO department_changes"
            " (version, department_id, subject, operation, old_row, new_row, actor, tx, changed_at) VALUES"
            f" ((SELECT version FROM data_version WHERE id = {DATA}), {department}, '{subject}', '{operation}',"
            f" {old}, {new}, (SELECT actor FROM write_context), (SELECT tx FROM write_context), {SQLITE_NOW_MS});"
        )

    for table, (key, subject, columns) in LOGGED.items():
        old, new = _sqlite_image("OLD", columns), _sqlite_image("NEW", columns)
        statements += [
            f"CREATE TRIGGER {table}_insert AFTER INSERT ON {table} BEGIN {bump} "
            f"{log(f'NEW.{key}', subject, 'I', 'NULL', new)} END",
            f"CREATE TRIGGER {table}_delete AFTER DELETE ON {table} BEGIN {bump} "
            f"{log(f'OLD.{key}', subject, 'D', old, 'NULL')} END",
            # name_folded alone changing is the unfolding below, part of the change that caused it.
            f"CREATE TRIGGER {table}_update AFTER UPDATE ON {table}"
            f" WHEN ({_sqlite_changed(tuple(c for c in columns if c != 'name_folded'))})"
            f" BEGIN {bump} {log(f'NEW.{key}', subject, 'U', old, new)} END",
            # A row moved to another department leaves the first one: logged for both.
            f"CREATE TRIGGER {table}_moved AFTER UPDATE ON {table} WHEN OLD.{key} IS NOT NEW.{key}"
            f" BEGIN {bump} {log(f'OLD.{key}', subject, 'U', old, new)} END",
        ]
    statements.append(
        "CREATE TRIGGER departments_name_folded AFTER UPDATE OF name ON departments"
        " WHEN NEW.name IS NOT OLD.name AND NEW.name_folded IS OLD.name_folded"
        " BEGIN UPDATE departments SET name_folded = NULL WHERE id = NEW.id; END"
    )
    for table, counter in COUNTED.items():
        for operation in ("insert", "update", "delete"):
            statements.append(
                f"CREATE TRIGGER {table}_{operation} AFTER {operation.upper()} ON {table}"
                f" BEGIN UPDATE data_version SET version = version + 1 WHERE id = {counter}; END"
            )
    return statements


# --- PostgreSQL ---------------------------------------------------------------------------------

POSTGRESQL_NOW_MS = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"


def postgresql_triggers() -> list[str]:
    # The counters are moved once per transaction and counter, at commit time: the first deferred
    # trigger of the transaction bumps and remembers the new version in a transaction-local
    # setting, the later ones reuse it.
    bump = """
    CREATE FUNCTION bump_once(counter integer) RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        setting text := 'departments.version_' || counter;
        bumped bigint := NULLIF(current_setting(setting, true), '')::bigint;
    BEGIN
        IF bumped IS NULL THEN
            UPDATE data_version SET version = version + 1 WHERE id = counter RETURNING version INTO bumped;
            PERFORM set_config(setting, bumped::text, true);
        END IF;
        RETURN bumped;
    END $$"""
    log = f"""
    CREATE FUNCTION log_department_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        key text := TG_ARGV[0];
        old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
        new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
        department text;
    BEGIN
        IF TG_OP = 'UPDATE' AND old_row - 'name_folded' = new_row - 'name_folded' THEN
            RETURN NULL;
        END IF;
        FOR department IN
            SELECT DISTINCT id FROM unnest(ARRAY[old_row ->> key, new_row ->> key]) AS id WHERE id IS NOT NULL
        LOOP
            INSERT INTO department_changes
                (version, department_id, subject, operation, old_row, new_row, actor, tx, changed_at)
            VALUES (bump_once({DATA}), department, TG_ARGV[1], left(TG_OP, 1), old_row, new_row,
                    NULLIF(current_setting('departments.actor', true), ''), txid_current()::text,
                    {POSTGRESQL_NOW_MS});
        END LOOP;
        RETURN NULL;
    END $$"""
    counted = """
    CREATE FUNCTION bump_counter() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM bump_once(TG_ARGV[0]::integer);
        RETURN NULL;
    END $$"""
    # TRUNCATE fires no row trigger: it counts as a change of every department ('*').
    truncated = f"""
    CREATE FUNCTION log_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO department_changes
            (version, department_id, subject, operation, old_row, new_row, actor, tx, changed_at)
        VALUES (bump_once({DATA}), '*', TG_ARGV[0], 'T', NULL, NULL,
                NULLIF(current_setting('departments.actor', true), ''), txid_current()::text, {POSTGRESQL_NOW_MS});
        RETURN NULL;
    END $$"""
    unfold = """
    CREATE FUNCTION unfold_hand_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.name IS DISTINCT FROM OLD.name AND NEW.name_folded IS NOT DISTINCT FROM OLD.name_folded THEN
            NEW.name_folded := NULL;
        END IF;
        RETURN NEW;
    END $$"""
    statements = [bump, log, counted, truncated, unfold]
    for table, (key, subject, _columns) in LOGGED.items():
        statements += [
            f"CREATE CONSTRAINT TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION log_department_change('{key}', '{subject}')",
            f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION log_truncate('{subject}')",
        ]
    statements.append(
        "CREATE TRIGGER departments_name_folded BEFORE UPDATE OF name ON departments"
        " FOR EACH ROW EXECUTE FUNCTION unfold_hand_renamed()"
    )
    for table, counter in COUNTED.items():
        statements += [
            f"CREATE CONSTRAINT TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_counter('{counter}')",
            f"CREATE TRIGGER {table}_truncated AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION bump_counter('{counter}')",
        ]
    return statements
