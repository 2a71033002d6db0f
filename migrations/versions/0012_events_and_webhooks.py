"""Department events and signed webhooks (issue 15), on the change log of migration 0009.

- `department_changes` gets an index on `tx`: a department's history reads the whole transaction
  of each of its events (events.py).
- `event_state`: one row, how far the log was pruned and how far the webhook dispatcher got.
- `webhook_endpoints`, `webhook_deliveries` (the outbox, filled from the log by a cursor, so the
  write path gains nothing), `webhook_attempts` (the delivery log).
- The `view-livechat-department-history` permission (admin and livechat-manager) and
  `manage-livechat-department-webhooks` (admin).

None of these tables move a version counter: no trigger here.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERMISSIONS = {
    "view-livechat-department-history": ["admin", "livechat-manager"],
    "manage-livechat-department-webhooks": ["admin"],
}


def _big_id() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False)


def upgrade() -> None:
    op.create_index(op.f("ix_department_changes_tx"), "department_changes", ["tx"])
    op.create_table(
        "event_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.Column("dispatched", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_state")),
    )
    op.bulk_insert(
        sa.table("event_state", sa.column("id", sa.Integer), sa.column("pruned_through", sa.BigInteger)),
        [{"id": 1, "pruned_through": 0}],
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("department_ids", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("secret", sa.String(length=80), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        _big_id(),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_until", sa.BigInteger(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"])
    op.create_table(
        "webhook_attempts",
        _big_id(),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempted_at", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"])
    permissions = sa.table(
        "permissions",
        sa.column("id", sa.String),
        sa.column("roles", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    existing = set(op.get_bind().scalars(sa.select(permissions.c.id).where(permissions.c.id.in_(PERMISSIONS))))
    op.bulk_insert(
        permissions,
        [
            {"id": name, "roles": roles, "updated_at": datetime.now(UTC)}
            for name, roles in PERMISSIONS.items()
            if name not in existing
        ],
    )


def downgrade() -> None:
    for name in PERMISSIONS:
        op.execute(sa.text("DELETE FROM permissions WHERE id = :id").bindparams(id=name))
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("event_state")
    op.drop_index(op.f("ix_department_changes_tx"), table_name="department_changes")
