"""commit_lead_time and commit_lead_count: each commit's lead time, stored

The DORA lead time was computed at report time by joining every commit of the window's
releases to the release's first production deployment. From this revision it is written
once, when a release first runs in production, and the reports read the stored rows.

The upgrade fills both tables from the history already stored: each release's
`release_commit` rows with an authored time, timed from its first run in each environment
it ran in. A migration has no config to say which environments are production, so each is
kept and the reports count those their production scope names. The lead bin below is a
frozen copy of `bot.services.lead_times.lead_bin`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import bot.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
CHUNK = 500  # releases per read of their commits


def _lead_bin(lead_us: int) -> int:
    seconds = max(lead_us, 0) // 1_000_000
    if seconds < 16:
        return seconds
    doublings = seconds.bit_length()
    top = seconds >> (doublings - 4)
    return 16 + (doublings - 5) * 8 + (top - 8)


def _row(release_id: int, first: Any, sha: str, authored_us: int) -> dict[str, Any]:
    deployed_us = (first.deployed_at - EPOCH) // timedelta(microseconds=1)
    lead = max(deployed_us - authored_us, 0)
    return {
        "release_id": release_id,
        "deployment_id": first.id,
        "service": first.service,
        "environment": first.environment,
        "sha": sha,
        "committed_at": EPOCH + timedelta(microseconds=authored_us),
        "deployed_at": first.deployed_at,
        "lead_us": lead,
        "lead_bin": _lead_bin(lead),
    }


def _create() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "commit_lead_time",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("service", text(length=100), nullable=False),
        sa.Column("environment", text(length=100), nullable=False),
        sa.Column("sha", text(length=64), nullable=False),
        sa.Column("committed_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deployed_at", bot.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lead_us", sa.BigInteger(), nullable=False),
        sa.Column("lead_bin", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["release.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_commit_lead_time_release_id", "commit_lead_time", ["release_id"], unique=False
    )
    op.create_index(
        "ix_commit_lead_time_service_deployed",
        "commit_lead_time",
        ["service", "deployed_at", "environment", "lead_bin"],
    )
    op.create_index(
        "ix_commit_lead_time_deployed",
        "commit_lead_time",
        ["deployed_at", "service", "environment", "lead_bin"],
    )
    op.create_index(
        "ix_commit_lead_time_bin",
        "commit_lead_time",
        ["lead_bin", "lead_us", "deployed_at", "service", "environment"],
    )
    op.create_index(
        "ix_commit_lead_time_service_bin",
        "commit_lead_time",
        ["service", "lead_bin", "lead_us", "deployed_at", "environment"],
    )
    op.create_table(
        "commit_lead_count",
        sa.Column("service", text(length=100), nullable=False),
        sa.Column("environment", text(length=100), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("lead_bin", sa.Integer(), nullable=False),
        sa.Column("commits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service", "environment", "day", "lead_bin"),
    )
    op.create_index(
        "ix_commit_lead_count_day",
        "commit_lead_count",
        ["day", "environment", "service", "lead_bin", "commits"],
    )


def _backfill(conn: sa.engine.Connection) -> None:
    at = bot.store.types.UTCDateTime(timezone=True)
    deployment = sa.table(
        "deployment",
        sa.column("id", sa.Integer),
        sa.column("release_id", sa.Integer),
        sa.column("service", sa.String),
        sa.column("environment", sa.String),
        sa.column("deployed_at", at),
    )
    commit = sa.table(
        "release_commit",
        sa.column("release_id", sa.Integer),
        sa.column("sha", sa.String),
        sa.column("authored_us", sa.BigInteger),
    )
    leads = sa.table(
        "commit_lead_time",
        *(sa.column(name) for name in ("release_id", "deployment_id", "service", "environment")),
        sa.column("sha"),
        sa.column("committed_at", at),
        sa.column("deployed_at", at),
        sa.column("lead_us"),
        sa.column("lead_bin"),
    )
    names = ("service", "environment", "day", "lead_bin", "commits")
    counts = sa.table("commit_lead_count", *(sa.column(n) for n in names))
    d = deployment.c
    firsts: dict[int, dict[str, Any]] = {}  # release -> environment -> its first run there
    for row in conn.execute(
        sa.select(d.release_id, d.id, d.service, d.environment, d.deployed_at)
        .where(d.deployed_at.is_not(None))
        .order_by(d.release_id, d.environment, d.deployed_at, d.id)
    ):
        firsts.setdefault(row.release_id, {}).setdefault(row.environment, row)
    tally: Counter[tuple[str, str, int, int]] = Counter()
    ids = sorted(firsts)
    for i in range(0, len(ids), CHUNK):
        part = ids[i : i + CHUNK]
        rows: list[dict[str, Any]] = []
        for release_id, sha, authored_us in conn.execute(
            sa.select(commit.c.release_id, commit.c.sha, commit.c.authored_us).where(
                commit.c.release_id.in_(part), commit.c.authored_us.is_not(None)
            )
        ):
            for first in firsts[release_id].values():
                rows.append(_row(release_id, first, sha, int(authored_us)))
                lead = rows[-1]["lead_us"]
                day = (first.deployed_at - EPOCH) // timedelta(days=1)
                tally[(first.service, first.environment, day, _lead_bin(lead))] += 1
        if rows:
            conn.execute(sa.insert(leads), rows)
    found = [
        {"service": s, "environment": e, "day": day, "lead_bin": b, "commits": n}
        for (s, e, day, b), n in sorted(tally.items())
    ]
    for i in range(0, len(found), 5000):
        conn.execute(sa.insert(counts), found[i : i + 5000])


def upgrade() -> None:
    _create()
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_commit_lead_count_day", table_name="commit_lead_count")
    op.drop_table("commit_lead_count")
    for name in (
        "ix_commit_lead_time_service_bin",
        "ix_commit_lead_time_bin",
        "ix_commit_lead_time_deployed",
        "ix_commit_lead_time_service_deployed",
        "ix_commit_lead_time_release_id",
    ):
        op.drop_index(name, table_name="commit_lead_time")
    op.drop_table("commit_lead_time")
