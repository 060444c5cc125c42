"""flag_step, flag_approval, flag_step_check: feature flags released behind their own gates

Each step of a flag's release (a rollout to a percentage, or the kill switch) is a row with
its requirement, approvals and the platform's receipt; the verify checks planned again after
a step are linked to it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _at() -> bot.store.types.UTCDateTime:
    return bot.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "flag_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("service", _text(100), nullable=False),
        sa.Column("environment", _text(100), nullable=False),
        sa.Column("flag", _text(200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", _text(16), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("provider", _text(32), nullable=False),
        sa.Column("status", _text(32), nullable=False),
        sa.Column("requirement", sa.JSON(), nullable=False),
        sa.Column("progress", _text(1000), nullable=True),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.Column("requested_by", _text(200), nullable=True),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("decided_at", _at(), nullable=True),
        sa.Column("decided_by", _text(200), nullable=True),
        sa.Column("delivered_at", _at(), nullable=True),
        sa.Column("receipt", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service", "environment", "flag", "seq", name="uq_flag_step_seq"),
    )
    with op.batch_alter_table("flag_step") as batch:
        batch.create_index(batch.f("ix_flag_step_deployment_id"), ["deployment_id"], unique=False)
    op.create_table(
        "flag_approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("user_id", _text(32), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["flag_step.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("step_id", "user_id", name="uq_flag_approval_step_user"),
    )
    with op.batch_alter_table("flag_approval") as batch:
        batch.create_index(batch.f("ix_flag_approval_step_id"), ["step_id"], unique=False)
    op.create_table(
        "flag_step_check",
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["deploy_check.id"]),
        sa.ForeignKeyConstraint(["step_id"], ["flag_step.id"]),
        sa.PrimaryKeyConstraint("check_id"),
    )
    with op.batch_alter_table("flag_step_check") as batch:
        batch.create_index(batch.f("ix_flag_step_check_step_id"), ["step_id"], unique=False)


def downgrade() -> None:
    op.drop_table("flag_step_check")
    op.drop_table("flag_approval")
    op.drop_table("flag_step")
