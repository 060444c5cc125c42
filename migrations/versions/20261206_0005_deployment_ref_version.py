"""deployment.version and deployment.ref: what each deployment shipped as

One sha may be deployed to staging from `main` and to production from tag `v1.2.0`; the
version and ref were stored once per release (service and sha), so production showed
`main`. Each deployment now keeps its own. Deployments stored before this revision take
their release's values.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(
            sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch.add_column(
            sa.Column("ref", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
    release = sa.table("release", sa.column("id"), sa.column("version"), sa.column("ref"))
    deployment = sa.table(
        "deployment",
        sa.column("release_id"),
        sa.column("version"),
        sa.column("ref"),
    )
    of_release = release.c.id == deployment.c.release_id
    op.execute(
        deployment.update().values(
            version=sa.select(release.c.version).where(of_release).scalar_subquery(),
            ref=sa.select(release.c.ref).where(of_release).scalar_subquery(),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("ref")
        batch.drop_column("version")
