"""Store, answer, then apply: webhook deliveries wait for the applier; job runs are claimed

`webhook_delivery` gains what the applier needs: the parsed work to apply, the service and
environment it is applied in order with, when it was applied, its last error, attempts and
next attempt. Deliveries stored before this revision were applied when they were stored.
`job_run` holds one row per scheduled job and tick: the replica that inserts it runs it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.store.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.add_column(
            sa.Column("apply_key", sqlmodel.sql.sqltypes.AutoString(length=201), nullable=True)
        )
        batch.add_column(sa.Column("work", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("applied_at", bot.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True)
        )
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("next_attempt_at", bot.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_webhook_delivery_outcome_id", ["outcome", "id"], unique=False)
        batch.create_index(
            "ix_webhook_delivery_outcome_key", ["outcome", "apply_key", "id"], unique=False
        )
    op.create_table(
        "job_run",
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("tick_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("claimed_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", bot.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "tick_at"),
    )


def downgrade() -> None:
    op.drop_table("job_run")
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.drop_index("ix_webhook_delivery_outcome_key")
        batch.drop_index("ix_webhook_delivery_outcome_id")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("error")
        batch.drop_column("applied_at")
        batch.drop_column("work")
        batch.drop_column("apply_key")
