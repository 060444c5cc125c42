"""Readiness: the database answers, migrations are current, nothing is stuck in the outbox."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext

from bot.metrics import Metrics
from bot.services import outbox
from bot.store.db import Database


def readiness(db: Database, *, expected_head: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"ready": False}
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        report["reason"] = f"database unreachable: {type(exc).__name__}"
        return report
    report["migration"] = current
    if current != expected_head:
        report["reason"] = (
            f"database schema is at {current or 'nothing'}, expected {expected_head}: "
            "run `releasebot db upgrade`"
        )
        return report
    with db.read() as session:
        backlog = outbox.backlog(session)
    report["outbox"] = {
        "pending": backlog.pending,
        "dead": backlog.dead,
        "oldest_pending": backlog.oldest_pending.isoformat() if backlog.oldest_pending else None,
    }
    report["ready"] = True
    return report


def refresh_gauges(db: Database, metrics: Metrics) -> None:
    with db.read() as session:
        backlog = outbox.backlog(session)
    metrics.outbox_backlog.set(backlog.pending)
    metrics.outbox_dead.set(backlog.dead)
