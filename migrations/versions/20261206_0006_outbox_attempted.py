"""outbox_message.attempted_at and lease_token: sends in doubt, and whose lease a row is

`attempted_at` is written before a row's call goes out and kept while its outcome is
unknown (a crash, a lost answer, the database failing before the answer was recorded):
the next attempt first looks in Slack for what the earlier one may have posted.
`lease_token` names the claim that holds a row, so a worker whose lease ran out and was
taken over never sends or settles that row again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.add_column(sa.Column("attempted_at", bot.store.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("lease_token", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_column("lease_token")
        batch.drop_column("attempted_at")
