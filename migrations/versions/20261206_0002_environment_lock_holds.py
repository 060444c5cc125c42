"""environment_lock.holds: what a lock stops

A rollback's lock stops automatic promotion only ("automatic", every lock stored before
this revision); `/release lock` stops every promotion and gate approval ("all").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 08:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment_lock") as batch:
        batch.add_column(
            sa.Column(
                "holds",
                sqlmodel.sql.sqltypes.AutoString(length=20),
                nullable=False,
                server_default="automatic",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("environment_lock") as batch:
        batch.drop_column("holds")
