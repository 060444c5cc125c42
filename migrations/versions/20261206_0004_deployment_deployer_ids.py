"""deployment.deployer_ids: the deployer's login and e-mail

The generic webhook may name the deployer's code-host login and e-mail beside its name
(`actor_login`, `actor_email`); the self-approval ban matches them. Deployments stored
before this revision have none (NULL): their deployer is matched by name, as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("deployer_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("deployer_ids")
