"""Scheduled job runs claimed per tick, so several replicas run each tick of a job once.

`claim` inserts the `(job id, tick)` row: the primary key lets one replica in. A holder
that crashed never finishes its run; once its claim has expired, another replica firing
for the same tick (a restart catching up a missed run) takes it over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from bot.store.tables import JobRun

JOB_RUN = JobRun.__table__  # type: ignore[attr-defined]


def claim(
    session: Session, *, job_id: str, tick_at: datetime, holder: str, now: datetime, lease: float
) -> bool:
    """Whether this holder runs the job's tick (True once per tick across replicas)."""
    conn = session.connection()
    expires = now + timedelta(seconds=lease)
    taken = conn.execute(
        sa.update(JOB_RUN)
        .where(JOB_RUN.c.job_id == job_id)
        .where(JOB_RUN.c.tick_at == tick_at)
        .where(JOB_RUN.c.finished_at.is_(None))
        .where(JOB_RUN.c.expires_at < now)
        .values(holder=holder, claimed_at=now, expires_at=expires)
    ).rowcount
    if taken:
        return True
    exists = conn.execute(
        sa.select(JOB_RUN.c.holder)
        .where(JOB_RUN.c.job_id == job_id)
        .where(JOB_RUN.c.tick_at == tick_at)
    ).first()
    if exists is not None:
        return False
    # Two replicas inserting at once: one fails on the primary key, and its write is
    # retried (Database.write), then finds this row.
    conn.execute(
        sa.insert(JOB_RUN).values(
            job_id=job_id, tick_at=tick_at, holder=holder, claimed_at=now, expires_at=expires
        )
    )
    return True


def finish(session: Session, *, job_id: str, tick_at: datetime, holder: str, now: datetime) -> None:
    session.connection().execute(
        sa.update(JOB_RUN)
        .where(JOB_RUN.c.job_id == job_id)
        .where(JOB_RUN.c.tick_at == tick_at)
        .where(JOB_RUN.c.holder == holder)
        .values(finished_at=now)
    )


def prune(session: Session, *, before: datetime) -> int:
    """Forget the runs of ticks before `before` (they are never claimed again)."""
    return int(
        session.connection().execute(sa.delete(JOB_RUN).where(JOB_RUN.c.tick_at < before)).rowcount
    )
