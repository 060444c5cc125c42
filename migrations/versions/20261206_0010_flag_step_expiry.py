"""flag_step.expires_at, remind_at, reminded_at, reason: flag steps expire, remind, reject

A flag step waiting for approvals now expires as a deploy gate does (`release.expires_after`,
default 4h), reminds its approvers (`release.remind_after`, `release.remind_every`), and may
be rejected with a reason. Steps stored before this revision have no expiry and are left as
they were.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.store.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at() -> bot.store.types.UTCDateTime:
    return bot.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("flag_step") as batch:
        batch.add_column(sa.Column("expires_at", _at(), nullable=True))
        batch.add_column(sa.Column("remind_at", _at(), nullable=True))
        batch.add_column(sa.Column("reminded_at", _at(), nullable=True))
        batch.add_column(
            sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=3000), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("flag_step") as batch:
        batch.drop_column("reason")
        batch.drop_column("reminded_at")
        batch.drop_column("remind_at")
        batch.drop_column("expires_at")
